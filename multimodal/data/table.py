"""The standard dataset table every source produces, and the checks it must pass.

A table is one row per image with columns `image_id`, `image_path`, `label`
(string), `group_id` (what must never cross splits: lesion or patient),
`source`, plus the metadata columns the dataset has. `_line` keeps the line
of the source file the row came from, so every later error can point at it.
For segmentation a source adds `mask_path`: one binary lesion mask per image (0 and 255,
or 0 and 1; single channel, or RGB with equal channels), the image's size (`check_masks`).
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

from multimodal.data.images.dicom import image_size, open_image
from multimodal.errors import DataError
from multimodal.errors import ConfigError

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
    file: str | None = None  # the file rows came from (`_line` numbers refer to it)

    def __len__(self) -> int:
        return len(self.frame)

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
    frame = parse_csv(path, dtype=str, keep_default_na=False, **kwargs)
    if frame.empty:
        raise DataError("no rows below the header", path)
    frame["_line"] = np.arange(len(frame)) + 2  # header is line 1
    return frame


def parse_csv(path, **kwargs) -> pd.DataFrame:
    """`pd.read_csv`, with a missing, empty, non-UTF-8 or malformed file a DataError naming it."""
    if not os.path.exists(path):
        raise DataError("file not found", path)
    try:
        return pd.read_csv(path, **kwargs)
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text (byte {exc.start}: {exc.reason})", path,
                        hint="save the file as UTF-8 CSV") from None
    except pd.errors.EmptyDataError:
        raise DataError("empty file (no header, no rows)", path) from None
    except pd.errors.ParserError as exc:
        raise DataError(f"not a readable CSV ({' '.join(str(exc).split())})", path) from None


def _drop_or_raise(frame, bad: pd.Series, problem, file, on_missing: OnMissing):
    """Rows flagged `bad` either raise (naming the first) or are dropped with a count."""
    if not bad.any():
        return frame
    first = frame[bad].iloc[0]
    if on_missing == "error":
        detail = problem(first) if callable(problem) else problem
        raise DataError(
            f"{detail} ({int(bad.sum())} row(s) affected)",
            file,
            int(first["_line"]),
            "set data.on_missing=drop (--set data.on_missing=drop) to drop such rows with a "
            "warning",
        )
    label = problem(first) if callable(problem) else problem
    warnings.warn(f"{file}: dropped {int(bad.sum())} row(s): e.g. {label}", stacklevel=3)
    return frame[~bad].copy()


def _image_problem(path: str, verify: Verify) -> str | None:
    """`exists`: present, not empty, with an image header (cheap); `decode`: a full decode
    (the only check that sees a truncated file; preparation catches those too)."""
    if not os.path.isfile(path):
        return "image file not found"
    if os.path.getsize(path) == 0:
        return "empty image file (0 bytes)"
    try:
        if verify == "decode":
            with open_image(path) as im:
                im.load()  # a full decode: verify() alone misses truncated JPEGs
        else:
            image_size(path)  # the header (DICOM: one frame, a decoder for its compression)
    except DataError as exc:  # a DICOM file of a kind not read, or damaged
        return exc.problem
    except Exception as exc:  # noqa: BLE001 - any decoder failure makes the file unusable
        return f"unreadable image ({type(exc).__name__}: {exc})"
    return None


def _mask_problem(mask_path: str, image_path: str) -> str | None:
    """Missing, unreadable, not the image's size, or not binary: what is wrong, else None."""
    if not os.path.isfile(mask_path):
        return f"mask file not found: {mask_path}"
    try:
        with Image.open(mask_path) as im:
            im.load()
            mask = np.asarray(im.convert("L") if im.mode not in ("L", "1", "RGB") else im)
            size = im.size
    except Exception as exc:  # noqa: BLE001 - any decoder failure makes the file unusable
        return f"unreadable mask ({type(exc).__name__}: {exc}): {mask_path}"
    try:
        size_of_image = image_size(image_path)
    except Exception:  # noqa: BLE001 - the image check reports unreadable images
        size_of_image = size
    if size != size_of_image:
        return (f"mask size {size[0]}x{size[1]} differs from its image's "
                f"{size_of_image[0]}x{size_of_image[1]}: {mask_path} (image {image_path})")
    if mask.ndim == 3:
        if (mask != mask[..., :1]).any():
            return f"mask is not binary (colour, channels differ): {mask_path}"
        mask = mask[..., 0]
    values = np.unique(mask)
    if not (set(values.tolist()) <= {0, 255} or set(values.tolist()) <= {0, 1}):
        odd = [int(v) for v in values if v not in (0, 1, 255)][:3]
        return (f"mask is not binary ({len(values)} distinct values, e.g. {odd}; expected "
                f"0 and 255): {mask_path}")
    return None


def check_masks(frame: pd.DataFrame, file, on_missing: OnMissing,
                workers: int = 8) -> pd.DataFrame:
    """Each row's `mask_path` must be a binary mask of its image's size; rows whose mask is
    missing, unreadable, of another size or not binary raise a `DataError` naming the mask
    file and the row, or are dropped with `on_missing='drop'`."""
    with ThreadPoolExecutor(workers) as pool:
        found = list(pool.map(_mask_problem, frame["mask_path"], frame["image_path"]))
    problems = pd.Series(found, index=frame.index)
    return _drop_or_raise(frame, problems.notna(), lambda r: problems[r.name], file, on_missing)


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
        raise ConfigError(f"data.on_missing must be 'error' or 'drop', not {on_missing!r}")
    classes = tuple(classes)
    require_columns(frame, [c for c in REQUIRED if c != "source"], file)
    if "source" not in metadata or "source" not in frame.columns:
        frame = frame.assign(source=name)  # else a merged table's copy keeps each row's source
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
    if "mask_path" in frame.columns and not frame.empty:  # segmentation: one mask per image
        frame = check_masks(frame, file, on_missing)
    if frame.empty:
        raise DataError("no usable rows left", file)
    for column in metadata:
        require_columns(frame, [column], file)
    frame["label"] = frame["label"].astype(str)
    frame["group_id"] = frame["group_id"].astype(str)
    return DatasetTable(frame.reset_index(drop=True), classes, dict(metadata), name,
                        str(file) if file is not None else None)
