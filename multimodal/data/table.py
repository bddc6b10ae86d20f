"""The standard dataset table every source produces, and the checks it must pass.

A table is one row per image with columns `image_id`, `image_path`, `label`
(string), `group_id` (what must never cross splits: lesion or patient),
`source`, plus the metadata columns the dataset has. `_line` keeps the line
of the source file the row came from, so every later error can point at it.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
import pandas as pd
from PIL import Image

from multimodal.data.errors import DataError

REQUIRED = ("image_id", "image_path", "label", "group_id", "source")
OnMissing = Literal["error", "drop"]
Verify = Literal["decode", "exists", "none"]
AGE_RANGE = (0.0, 120.0)

# Kinds tell the metadata encoder how to encode each column.
MetaKind = Literal["numeric", "categorical", "ordinal"]


@dataclasses.dataclass
class DatasetTable:
    frame: pd.DataFrame
    classes: tuple[str, ...]
    metadata: dict[str, MetaKind]  # feature columns only (never label proxies)
    name: str = ""

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def label_index(self) -> np.ndarray:
        lookup = {c: i for i, c in enumerate(self.classes)}
        return self.frame["label"].map(lookup).to_numpy(np.int32)

    def subset(self, image_ids) -> DatasetTable:
        frame = self.frame.set_index("image_id").loc[list(image_ids)].reset_index()
        return dataclasses.replace(self, frame=frame)


def require_columns(frame: pd.DataFrame, columns, file) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"missing required column(s) {missing}; found {list(frame.columns)}", file
        )


def read_csv(path, **kwargs) -> pd.DataFrame:
    """Read a CSV keeping every field as text and recording each row's file line."""
    if not os.path.exists(path):
        raise DataError("file not found", path)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, **kwargs)
    frame["_line"] = np.arange(len(frame)) + 2  # header is line 1
    return frame


def _drop_or_raise(frame, bad: pd.Series, problem, file, on_missing: OnMissing):
    """Rows flagged `bad` either raise (naming the first) or are dropped with a count."""
    if not bad.any():
        return frame
    first = frame[bad].iloc[0]
    if on_missing == "error":
        detail = problem(first) if callable(problem) else problem
        raise DataError(
            f"{detail} ({int(bad.sum())} row(s) affected; pass on_missing='drop' "
            "(--on-missing drop) to drop them with a warning)",
            file,
            int(first["_line"]),
        )
    label = problem(first) if callable(problem) else problem
    warnings.warn(f"{file}: dropped {int(bad.sum())} row(s): e.g. {label}", stacklevel=3)
    return frame[~bad].copy()


def _image_problem(path: str, verify: Verify) -> str | None:
    if not os.path.isfile(path):
        return "image file not found"
    if verify != "decode":
        return None
    try:
        with Image.open(path) as im:
            im.load()  # a full decode: verify() alone misses truncated JPEGs
    except Exception as exc:  # noqa: BLE001 - any decoder failure makes the file unusable
        return f"unreadable image ({type(exc).__name__}: {exc})"
    return None


def check_images(paths, verify: Verify, workers: int = 8) -> list[str | None]:
    if verify == "none":
        return [None] * len(paths)
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda p: _image_problem(p, verify), paths))


def parse_age(frame: pd.DataFrame, column: str, file, on_missing: OnMissing):
    """Ages become floats; blanks are missing; text or out-of-range ages are errors."""
    text = frame[column].astype(str).str.strip()
    blank = text.isin(["", "nan", "NaN", "unknown", "None"])
    values = pd.to_numeric(text.where(~blank), errors="coerce")
    bad = (~blank & values.isna()) | (values < AGE_RANGE[0]) | (values > AGE_RANGE[1])
    frame = frame.assign(**{column: values})
    return _drop_or_raise(
        frame,
        bad,
        lambda r: f"impossible {column} {text[r.name]!r} (expected {AGE_RANGE[0]:g}-"
        f"{AGE_RANGE[1]:g} or blank)",
        file,
        on_missing,
    )


def finalize(
    frame: pd.DataFrame,
    classes,
    metadata: dict[str, MetaKind],
    *,
    file,
    name: str,
    on_missing: OnMissing = "error",
    verify: Verify = "exists",
) -> DatasetTable:
    """Check a source's rows and return the standard table.

    Duplicated ids, labels outside `classes` and missing or unreadable images
    raise a `DataError` naming the file and line; with `on_missing='drop'` the
    bad rows are dropped and a warning counts them. Duplicated ids always raise:
    which copy to keep is not ours to guess.
    """
    if on_missing not in ("error", "drop"):
        raise ValueError(f"on_missing must be 'error' or 'drop', not {on_missing!r}")
    classes = tuple(classes)
    require_columns(frame, [c for c in REQUIRED if c != "source"], file)
    frame = frame.assign(source=name)
    dup = frame["image_id"].duplicated(keep=False)
    if dup.any():
        first = frame[dup].iloc[0]
        raise DataError(
            f"duplicated image id {first['image_id']!r} ({int(dup.sum())} rows share "
            "an id with another row)",
            file,
            int(first["_line"]),
        )
    unknown = ~frame["label"].isin(classes)
    frame = _drop_or_raise(
        frame,
        unknown,
        lambda r: f"label {r['label']!r} is not in the class list {list(classes)}",
        file,
        on_missing,
    )
    problems = pd.Series(check_images(frame["image_path"].tolist(), verify), index=frame.index)
    frame = _drop_or_raise(
        frame,
        problems.notna(),
        lambda r: f"{problems[r.name]}: {r['image_path']}",
        file,
        on_missing,
    )
    if frame.empty:
        raise DataError("no usable rows left", file)
    for column in metadata:
        require_columns(frame, [column], file)
    frame["label"] = frame["label"].astype(str)
    frame["group_id"] = frame["group_id"].astype(str)
    return DatasetTable(frame.reset_index(drop=True), classes, dict(metadata), name)
