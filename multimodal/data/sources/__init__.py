"""Dataset sources by name: each returns the standard `DatasetTable`."""

from __future__ import annotations

from multimodal.data.sources import chestxray, fitzpatrick17k, generic, ham10000, isic2018
from multimodal.data.table import DatasetTable

SOURCES = {
    "ham10000": ham10000.load,
    "isic2018": isic2018.load,
    "fitzpatrick17k": fitzpatrick17k.load,
    "covid_chestxray": chestxray.load_covid,
    "siim_covid": chestxray.load_siim,
    "csv": generic.load,
}


def load_source(name: str, **options) -> DatasetTable:
    """Load a dataset by source name with that source's options (see each loader)."""
    if name not in SOURCES:
        raise ValueError(f"unknown dataset source {name!r}; known: {sorted(SOURCES)}")
    return SOURCES[name](**options)
