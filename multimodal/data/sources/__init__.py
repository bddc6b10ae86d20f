"""Dataset sources by name: each returns the standard `DatasetTable`."""

from __future__ import annotations

import inspect

from multimodal.data.sources import chestxray, fitzpatrick17k, generic, ham10000, isic2018, merged
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
    params = inspect.signature(SOURCES[name]).parameters
    unknown = sorted(set(options) - set(params))
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        own = sorted(p for p in params if p not in ("on_missing", "verify", "masks"))
        raise ConfigError(f"data.options: {unknown} not among the options of {name} {own}")
    missing = [p.name for p in params.values() if p.default is p.empty and
               p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in options]
    if missing:
        raise ConfigError(f"data.options: {name} needs {missing}",
                          f"--set data.options.{missing[0]}=...")
    return SOURCES[name](**options)


def load_sources(entries: list[dict], /, masks: bool = False, **common) -> DatasetTable:
    """`data.sources`: each entry loaded with its own options (and the common `on_missing`,
    `verify`), then merged into one table with namespaced ids (merged.py)."""
    tables = []
    for i, entry in enumerate(entries):
        where = f"data.sources[{i}] ({entry['name']})"
        options = {**common, **entry.get("options", {})}
        try:
            tables.append((entry, load_source(entry["source"], masks=masks, **options)))
        except ConfigError as exc:  # a source's own message says data.source / data.options
            raise ConfigError(f"{where}: {exc.problem}", exc.hint) from None
    return merged.merge(tables)
