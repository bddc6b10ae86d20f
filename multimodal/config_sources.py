"""The `data.sources` entries of a config (several datasets merged into one table,
multimodal/data/sources/merged.py): exactly one of data.source / data.sources, and each
entry checked and completed in place, so that a run's saved config says all of it."""

from __future__ import annotations

from multimodal.errors import ConfigError

# the keys of one entry, and the label_map value that leaves a label's rows out
SOURCE_KEYS = ("source", "name", "options", "label_map")
DROP_LABEL = "drop"


def one_source(given, merged: dict) -> None:
    """Exactly one of data.source and data.sources. With `sources` the single-source keys
    (the default source and options) are cleared, so a saved merged config reads back."""
    given = given if isinstance(given, dict) else {}
    data = merged.get("data")
    if not isinstance(data, dict):
        return  # _build reports it
    if given.get("sources") is not None:
        if given.get("source") is not None:
            raise ConfigError(f"data: both data.source ({given['source']!r}) and data.sources "
                              "are set; give one (data.sources merges several datasets)",
                              "remove one: --set data.source=null or --set data.sources=null")
        if given.get("options"):
            raise ConfigError("data.options belongs to data.source; with data.sources each "
                              "entry has its own options",
                              "move them into the entries: data.sources: [{source: ..., "
                              "options: {...}}, ...]")
        data["source"], data["options"] = None, {}
    elif data.get("source") is None:
        raise ConfigError("data: neither data.source nor data.sources is set",
                          "--set data.source=ham10000, or list datasets in data.sources")


def check_sources(data) -> None:
    """The entries of data.sources, checked and completed in place (each gets its name,
    options and label_map, so the saved config says them)."""
    if data.sources is None:
        if data.source_as_metadata:
            raise ConfigError("data.source_as_metadata needs data.sources (one source would "
                              "be one constant value)", "--set data.source_as_metadata=false")
        return
    if not data.sources:
        raise ConfigError("data.sources: an empty list; list one mapping per dataset",
                          "e.g. [{source: ham10000, options: {root: ...}}, {source: csv, ...}]")
    names: dict = {}
    for i, entry in enumerate(data.sources):
        where = f"data.sources[{i}]"
        if isinstance(entry, str):
            entry = {"source": entry}
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping {{source, name, options, "
                              f"label_map}}, got {entry!r}")
        unknown = sorted(str(k) for k in entry if k not in SOURCE_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: "
                              f"{list(SOURCE_KEYS)}")
        source = entry.get("source")
        if not isinstance(source, str) or not source:
            raise ConfigError(f"{where}: 'source' (the dataset's source name) is required",
                              "e.g. {source: csv, name: clinic, options: {...}}")
        name = entry.get("name") or source
        if not isinstance(name, str) or not all(c.isalnum() or c in "_-." for c in name):
            raise ConfigError(f"{where}: name {name!r} must be letters, digits, '_', '-' or "
                              "'.' (it prefixes the source's ids: <name>:<id>)")
        if name in names:
            same = names[name]
            raise ConfigError(f"{where}: name {name!r} is also data.sources[{same}]'s; two "
                              "entries need distinct names (they namespace ids and groups)",
                              f"--set data.sources.{i}.name={name}_2")
        names[name] = i
        options = entry.get("options") or {}
        if not isinstance(options, dict):
            raise ConfigError(f"{where}.options: expected a mapping, got {options!r}")
        label_map = entry.get("label_map")
        if label_map is not None:
            if not isinstance(label_map, dict) or not label_map:
                raise ConfigError(f"{where}.label_map: expected a mapping of the source's "
                                  f"labels to run classes (or {DROP_LABEL}), got {label_map!r}")
            fixed = {}
            for key, value in label_map.items():
                if isinstance(key, bool) or isinstance(value, bool) or \
                        not isinstance(value, str) or not isinstance(key, (str, int)):
                    raise ConfigError(f"{where}.label_map: {key!r}: {value!r} must map a "
                                      f"label to a class name or {DROP_LABEL}",
                                      "quote labels such as yes/no/on/off: 'no': benign")
                fixed[str(key)] = value
            label_map = fixed
        data.sources[i] = {"source": source, "name": name, "options": options,
                           "label_map": label_map}
