"""HAM10000 (Tschandl et al. 2018): dermatoscopy, 7 classes, grouped by lesion."""

from __future__ import annotations

import os

from multimodal.data.table import DatasetTable, finalize, parse_age, read_csv, require_columns
from multimodal.errors import DataError

CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
METADATA = {"age": "numeric", "sex": "categorical", "localization": "categorical"}
IMAGE_DIRS = ("images", "HAM10000_images_part_1", "HAM10000_images_part_2", "HAM10000_images")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def index_images(folders) -> dict[str, str]:
    """Map image id (file stem) to path over one or more folders."""
    index: dict[str, str] = {}
    for folder in folders:
        for entry in os.scandir(folder):
            stem, ext = os.path.splitext(entry.name)
            if ext.lower() in IMAGE_EXTENSIONS:
                index.setdefault(stem, entry.path)
    return index


def index_masks(folder: str) -> dict[str, str]:
    """Map image id to mask path: `<image_id>.png`, or the release's
    `<image_id>_segmentation.png`."""
    index: dict[str, str] = {}
    for entry in os.scandir(folder):
        stem, ext = os.path.splitext(entry.name)
        if ext.lower() == ".png":
            index.setdefault(stem.removesuffix("_segmentation"), entry.path)
    return index


def load(
    root: str,
    metadata_csv: str = "HAM10000_metadata.csv",
    image_dirs: list[str] | None = None,
    on_missing: str = "error",
    verify: str = "exists",
    masks: bool = False,
    mask_dir: str = "masks",
) -> DatasetTable:
    """Load HAM10000 from `root`.

    Images may sit in the original `HAM10000_images_part_1/part_2`, in one
    `images/` folder, or directly in `root`. `dx_type` is kept for analysis but
    is never a feature: histopathology confirms malignant lesions, so it leaks
    the label.

    `masks` (segmentation runs): each image's lesion mask joins the table as `mask_path`,
    from `mask_dir` (relative to `root`, or absolute): `<image_id>.png` or the release's
    `HAM10000_segmentations_lesion_tschandl` names `<image_id>_segmentation.png`.
    """
    csv = os.path.join(root, metadata_csv)
    frame = read_csv(csv)
    require_columns(frame, ["lesion_id", "image_id", "dx", "age", "sex", "localization"], csv)
    dirs = image_dirs or [d for d in IMAGE_DIRS if os.path.isdir(os.path.join(root, d))] or ["."]
    index = index_images(os.path.join(root, d) for d in dirs)
    frame = frame.assign(
        label=frame["dx"].str.strip(),
        group_id=frame["lesion_id"],
        image_path=[
            index.get(i, os.path.join(root, dirs[0], i + ".jpg")) for i in frame["image_id"]
        ],
    )
    for column in ("sex", "localization"):
        frame[column] = frame[column].str.strip().replace("", "unknown")
    frame = parse_age(frame, "age", csv, on_missing)
    if masks:
        folder = os.path.join(root, mask_dir)
        if not os.path.isdir(folder):
            raise DataError(f"no mask folder {folder} (segmentation needs one mask per image, "
                            "<image_id>.png)", csv,
                            hint="set data.options.mask_dir to the folder of the masks")
        found = index_masks(folder)
        frame["mask_path"] = [found.get(i, os.path.join(folder, i + ".png"))
                              for i in frame["image_id"]]
    return finalize(
        frame, CLASSES, METADATA, file=csv, name="ham10000", on_missing=on_missing, verify=verify
    )
