"""Several datasets as one table (`data.sources`): each entry's rows, ids namespaced.

An entry is `{source, name, options, label_map}` (config.py checks and completes them):
`source` a source name (SOURCES), `options` that source's options, `name` a short name
(default: the source name; two entries of one source need distinct names). In the merged
table:

- `image_id` and `group_id` become `<name>:<id>`: two sources' "P001" are two patients,
  and an image id says where it came from;
- `source` holds the entry's name (a subgroup of the evaluation report; `data.stratify:
  [label, source]` stratifies the split on it; `data.source_as_metadata` makes it a feature);
- `label_map` maps the source's labels to the run's classes; a value `drop` leaves that
  label's rows out. With a map, every label the source's rows carry must be in it (one line
  names those that are not); without one, labels are taken as they are;
- the classes are the entries' classes in order (the first entry's, then any new ones);
- metadata columns are the union: a column one source lacks is missing (NaN) for its rows,
  which the metadata encoder reads as unknown. A column two sources give different kinds
  (numeric in one, categorical in the other) is refused.

Pictures repeated across sources (the same image re-encoded in two collections) are the
split's business: data/split/near_duplicates.py.
"""

from __future__ import annotations

import warnings

import pandas as pd

from multimodal.config_sources import DROP_LABEL
from multimodal.data.table import DatasetTable
from multimodal.errors import ConfigError

SEPARATOR = ":"  # <name>:<id>


def namespaced(name: str, ids: pd.Series) -> pd.Series:
    return name + SEPARATOR + ids.astype(str)


def map_labels(table: DatasetTable, label_map: dict | None, where: str,
               name: str) -> DatasetTable:
    """The table with `label_map` applied (rows mapped to `drop` left out, with a warning)
    and its classes in the run's names; unmapped labels and unknown keys are ConfigErrors."""
    if label_map is None:
        return table
    frame = table.frame
    present = list(dict.fromkeys(frame["label"]))
    unmapped = [label for label in present if label not in label_map]
    if unmapped:
        counts = frame["label"].value_counts()
        listed = ", ".join(f"{label!r} ({int(counts[label])} rows)" for label in unmapped)
        raise ConfigError(f"{where}.label_map: label(s) {listed} of {name} are not mapped; "
                          f"map each to a run class or to {DROP_LABEL}",
                          f"e.g. --set \"{where.replace('[', '.').replace(']', '')}.label_map."
                          f"{unmapped[0]}={DROP_LABEL}\"")
    known = set(table.classes) | set(present)
    unknown = sorted(k for k in label_map if k not in known)
    if unknown:
        raise ConfigError(f"{where}.label_map: {unknown} are not labels of {name} "
                          f"(its labels: {sorted(known)})", "check the spelling and case")
    dropped = frame["label"].map(label_map) == DROP_LABEL
    if dropped.any():
        gone = sorted(frame.loc[dropped, "label"].unique())
        warnings.warn(f"{where} ({name}): label_map drops {int(dropped.sum())} row(s) "
                      f"labelled {gone}", stacklevel=3)
    frame = frame[~dropped].copy()
    if frame.empty:
        raise ConfigError(f"{where}.label_map drops every row of {name}")
    frame["label"] = frame["label"].map(label_map)
    classes = [label_map[c] for c in (*table.classes, *present) if c in label_map]
    classes = tuple(dict.fromkeys(c for c in classes if c != DROP_LABEL))
    table.frame, table.classes = frame.reset_index(drop=True), classes
    return table


def merge(tables: list[tuple[dict, DatasetTable]]) -> DatasetTable:
    """One table from (entry, loaded table) pairs, in entry order (module docstring)."""
    frames, classes, metadata, owner = [], [], {}, {}
    for i, (entry, table) in enumerate(tables):
        name, where = entry["name"], f"data.sources[{i}]"
        table = map_labels(table, entry.get("label_map"), where, name)
        frame = table.frame.copy()
        frame["image_id"] = namespaced(name, frame["image_id"])
        frame["group_id"] = namespaced(name, frame["group_id"])
        frame["source"] = name
        frame["_file"] = table.file  # `_line` numbers refer to this source's file
        frames.append(frame)
        classes += [c for c in table.classes if c not in classes]
        for column, kind in table.metadata.items():
            if column in metadata and metadata[column] != kind:
                raise ConfigError(f"{where}: metadata column {column!r} is {kind} in "
                                  f"{name} but {metadata[column]} in {owner[column]}",
                                  "rename it in one source (a csv source names its "
                                  "columns in options.metadata)")
            metadata.setdefault(column, kind)
            owner.setdefault(column, name)
    frame = pd.concat(frames, ignore_index=True, sort=False)
    names = [entry["name"] for entry, _ in tables]
    return DatasetTable(frame, tuple(classes), metadata, "+".join(names), None)
