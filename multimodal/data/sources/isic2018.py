"""ISIC 2018 Task 3 test set: one-hot ground truth in HAM10000's 7 classes."""

from __future__ import annotations

import os

from multimodal.data.errors import DataError
from multimodal.data.sources.ham10000 import CLASSES, index_images
from multimodal.data.table import DatasetTable, finalize, parse_age, read_csv, require_columns

ONE_HOT = {"MEL": "mel", "NV": "nv", "BCC": "bcc", "AKIEC": "akiec", "BKL": "bkl", "DF": "df",
           "VASC": "vasc"}
# ISIC archive metadata names for the HAM10000 fields.
META_ALIASES = {"age_approx": "age", "anatom_site_general": "localization"}


def load(
    ground_truth_csv: str,
    image_dir: str,
    metadata_csv: str | None = None,
    on_missing: str = "error",
    verify: str = "exists",
) -> DatasetTable:
    """Load the ISIC 2018 Task 3 test set, mapping the one-hot columns to class names.

    Without a metadata CSV the metadata columns are blank (the encoder marks
    them missing); a lesion_id column there becomes the group, else each image
    is its own group.
    """
    frame = read_csv(ground_truth_csv)
    require_columns(frame, ["image"] + list(ONE_HOT), ground_truth_csv)
    onehot = frame[list(ONE_HOT)].apply(lambda c: c.astype(float))
    hot = (onehot > 0.5).sum(axis=1)
    if (hot != 1).any():
        line = int(frame.loc[hot != 1, "_line"].iloc[0])
        raise DataError("expected exactly one positive class column", ground_truth_csv, line)
    frame["label"] = onehot.idxmax(axis=1).map(ONE_HOT)
    frame["image_id"] = frame["image"]
    for column in ("age", "sex", "localization"):
        frame[column] = ""
    frame["group_id"] = frame["image_id"]
    if metadata_csv:
        meta = read_csv(metadata_csv).drop(columns="_line").rename(columns=META_ALIASES)
        key = "image_id" if "image_id" in meta.columns else "image"
        require_columns(meta, [key], metadata_csv)
        meta = meta.set_index(key)
        for column in ("age", "sex", "localization"):
            if column in meta.columns:
                frame[column] = frame["image_id"].map(meta[column]).fillna("")
        if "lesion_id" in meta.columns:
            frame["group_id"] = frame["image_id"].map(meta["lesion_id"]).fillna(frame["image_id"])
    for column in ("sex", "localization"):
        frame[column] = frame[column].str.strip().replace("", "unknown")
    frame = parse_age(frame, "age", ground_truth_csv, on_missing)
    index = index_images([image_dir])
    frame["image_path"] = [
        index.get(i, os.path.join(image_dir, i + ".jpg")) for i in frame["image_id"]
    ]
    return finalize(
        frame,
        CLASSES,
        {"age": "numeric", "sex": "categorical", "localization": "categorical"},
        file=ground_truth_csv,
        name="isic2018",
        on_missing=on_missing,
        verify=verify,
    )
