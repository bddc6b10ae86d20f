"""Dataset sources by name: each returns the standard `DatasetTable`."""

from __future__ import annotations

import inspect

from multimodal.data.sources import chestxray, fitzpatrick17k, generic, ham10000, isic2018
from multimodal.data.table import DatasetTable
from multimodal.errors import ConfigError

SOURCES = {
    "ham10000": ham10000.load,
    "isic2018": isic2018.load,
    "fitzpatrick17k": fitzpatrick17k.load,
    "covid_chestxray": chestxray.load_covid,
    "siim_covid": chestxray.load_siim,
    "csv": generic.load,
}


def load_source(source: str, /, masks: bool = False, **options) -> DatasetTable:
    """Load a dataset by source name with that source's options (see each loader).
    `masks`: the table gets each image's lesion mask (`mask_path`; segmentation runs),
    from the sources that have masks. (`source` is positional only: the csv source has a
    `name` option of its own.)"""
    name = source
    if name not in SOURCES:
        raise ConfigError(f"data.source: unknown dataset source {name!r}; known: {sorted(SOURCES)}")
    if masks:
        with_masks = sorted(n for n, f in SOURCES.items()
                            if "masks" in inspect.signature(f).parameters)
        if name not in with_masks:
            raise ConfigError(f"data.source: {name} has no segmentation masks; sources with "
                              f"masks: {with_masks}", "use task: classification, or the csv "
                              "source with data.options.mask_column")
        options["masks"] = True
    return SOURCES[name](**options)
