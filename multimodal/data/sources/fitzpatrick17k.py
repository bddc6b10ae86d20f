"""Fitzpatrick17k (Groh et al. 2021): clinical photos, 114 / 9 / 3 classes, skin type I-VI."""

from __future__ import annotations

import os

import pandas as pd

from multimodal.errors import DataError
from multimodal.data.table import DatasetTable, finalize, read_csv, require_columns
from multimodal.errors import ConfigError

GRANULARITIES = ("label", "nine_partition_label", "three_partition_label")


def _skin_type(frame, column, csv):
    """Fitzpatrick types are 1-6; -1 (and blank) mean 'could not be determined'."""
    values = pd.to_numeric(frame[column].str.strip().replace("", "-1"), errors="coerce")
    bad = values.isna() | ~values.isin([-1, 1, 2, 3, 4, 5, 6])
    if bad.any():
        line = int(frame.loc[bad, "_line"].iloc[0])
        raise DataError(f"{column} must be 1-6 or -1 (unknown)", csv, line)
    return values.where(values > 0)


def load(
    csv: str,
    image_dir: str,
    label_column: str = "label",
    on_missing: str = "error",
    verify: str = "exists",
) -> DatasetTable:
    """Load Fitzpatrick17k at a label granularity; images are `<image_dir>/<md5hash>.jpg`.

    The dataset has no patient or lesion ids, so each image is its own group.
    """
    if label_column not in GRANULARITIES:
        raise ConfigError(f"data.options.label_column must be one of {GRANULARITIES}, not {label_column!r}")
    frame = read_csv(csv)
    require_columns(frame, ["md5hash", "fitzpatrick_scale", label_column], csv)
    frame["image_id"] = frame["md5hash"]
    frame["group_id"] = frame["md5hash"]
    frame["label"] = frame[label_column].str.strip()
    frame["image_path"] = [os.path.join(image_dir, h + ".jpg") for h in frame["md5hash"]]
    frame["fitzpatrick"] = _skin_type(frame, "fitzpatrick_scale", csv)
    if "fitzpatrick_centaur" in frame.columns:
        frame["fitzpatrick_centaur"] = _skin_type(frame, "fitzpatrick_centaur", csv)
    classes = sorted(frame["label"].unique())
    return finalize(
        frame,
        classes,
        {"fitzpatrick": "ordinal"},
        file=csv,
        name="fitzpatrick17k",
        on_missing=on_missing,
        verify=verify,
    )
