"""ISIC 2018 Task 3 test set: one-hot ground truth in HAM10000's 7 classes."""

from __future__ import annotations

import os

from multimodal.errors import ConfigError, DataError
from multimodal.data.sources.ham10000 import CLASSES, index_images
from multimodal.data.table import DatasetTable, finalize, parse_age, read_csv, require_columns

ONE_HOT = {"MEL": "mel", "NV": "nv", "BCC": "bcc", "AKIEC": "akiec", "BKL": "bkl", "DF": "df",
           "VASC": "vasc"}
# ISIC archive metadata names for the HAM10000 fields.
META_ALIASES = {"age_approx": "age", "anatom_site_general": "localization"}


# The archive's file names (challenge.isic-archive.com, 2018 Task 3 test set), looked for
# under `root` when the options leave them out.
GROUND_TRUTH = "ISIC2018_Task3_Test_GroundTruth.csv"
GROUND_TRUTH_DIR = "ISIC2018_Task3_Test_GroundTruth"
IMAGE_DIRS = ("ISIC2018_Task3_Test_Input", "images")


def _find(root: str, candidates, what: str, option: str) -> str:
    for name in candidates:
        path = os.path.join(root, name)
        if os.path.exists(path):
            return path
    raise DataError(f"no {what} (looked for {' or '.join(candidates)})", root,
                    hint=f"--set data.options.{option}=PATH (relative to data.options.root "
                         "or absolute)")


def load(
    ground_truth_csv: str | None = None,
    image_dir: str | None = None,
    metadata_csv: str | None = None,
    on_missing: str = "error",
    verify: str = "exists",
    root: str | None = None,
) -> DatasetTable:
    """Load the ISIC 2018 Task 3 test set, mapping the one-hot columns to class names.

    Options (`data.options`): `root`, a folder with the archive's layout
    (`ISIC2018_Task3_Test_GroundTruth.csv`, at the top or in
    `ISIC2018_Task3_Test_GroundTruth/`, and the images in `ISIC2018_Task3_Test_Input/` or
    `images/`); `ground_truth_csv`, `image_dir`, `metadata_csv` name the files instead
    (relative to `root` when it is given). The ground truth is the one-hot CSV (`image`,
    MEL, NV, BCC, AKIEC, BKL, DF, VASC). Without a metadata CSV the metadata columns are
    blank (the encoder marks them missing); its `age_approx`/`age`, `sex`,
    `anatom_site_general`/`localization` columns fill them, keyed by `image` or
    `image_id`, and a `lesion_id` column there becomes the group (e.g. a lesion-groupings
    CSV), else each image is its own group.
    """
    if root is None and (ground_truth_csv is None or image_dir is None):
        raise ConfigError("data.options for source isic2018: give root (the folder holding "
                          "the Task 3 test files) or both ground_truth_csv and image_dir",
                          "--set data.options.root=/path/to/isic2018")
    root = os.path.expanduser(root) if root else None
    if root is not None and not os.path.isdir(root):
        raise DataError("data.options.root is not a folder", root,
                        hint="--set data.options.root=/path/to/isic2018 (or set "
                             "MULTIMODAL_DATA to the folder holding isic2018/)")

    def at(path):
        return path if root is None or os.path.isabs(path) else os.path.join(root, path)

    ground_truth_csv = (at(ground_truth_csv) if ground_truth_csv else
                        _find(root, (GROUND_TRUTH, os.path.join(GROUND_TRUTH_DIR, GROUND_TRUTH)),
                              "ground-truth CSV", "ground_truth_csv"))
    image_dir = at(image_dir) if image_dir else _find(root, IMAGE_DIRS, "image folder",
                                                      "image_dir")
    metadata_csv = at(metadata_csv) if metadata_csv else None
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
