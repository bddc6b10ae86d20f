"""Any CSV with an image column, a label column and optional group and metadata columns."""

from __future__ import annotations

import os

from multimodal.data.images.dicom import HEADER_FIELDS, fill_from_headers
from multimodal.data.table import (DatasetTable, finalize, parse_age, read_csv,
                                   require_columns)
from multimodal.errors import ConfigError


def load(
    csv: str,
    image_column: str,
    label_column: str,
    image_root: str | None = None,
    group_column: str | None = None,
    id_column: str | None = None,
    metadata: dict[str, str] | None = None,
    classes: list[str] | None = None,
    name: str = "generic",
    on_missing: str = "error",
    verify: str = "exists",
    masks: bool = False,
    mask_column: str | None = None,
    mask_root: str | None = None,
) -> DatasetTable:
    """Load a CSV declared in a config.

    Image paths are relative to `image_root` (default: the CSV's folder). With
    no group column each image is its own group: say so in your report, since
    grouped splitting then cannot protect against repeated patients.
    A metadata column named `age` gets the age range checks.
    DICOM images (.dcm): metadata columns named `age`, `sex` and `view` take the value of the
    image's header (PatientAge in years, PatientSex, ViewPosition) where the CSV cell is
    blank or the CSV has no such column; a CSV value wins (dicom.py).
    `masks` (segmentation runs): `mask_column` names each image's binary mask, relative to
    `mask_root` (default: the image root).
    """
    metadata = dict(metadata or {})
    frame = read_csv(csv)
    require_columns(frame, [image_column, label_column,
                            *(c for c in metadata if c not in HEADER_FIELDS)], csv)
    root = image_root or os.path.dirname(os.path.abspath(csv))
    frame["image_path"] = [os.path.join(root, p) for p in frame[image_column]]
    frame = fill_from_headers(frame, list(metadata), csv)
    frame["image_id"] = (frame[id_column] if id_column else
                         frame[image_column].map(lambda p: os.path.splitext(p)[0]))
    frame["label"] = frame[label_column].str.strip()
    frame["group_id"] = frame[group_column] if group_column else frame["image_id"]
    if masks:
        if not mask_column:
            raise ConfigError("segmentation needs masks: name the CSV's mask column",
                              "set data.options.mask_column=<column of mask paths>")
        require_columns(frame, [mask_column], csv)
        frame["mask_path"] = [os.path.join(mask_root or root, p) for p in frame[mask_column]]
    for column, kind in metadata.items():
        if column == "age":
            frame = parse_age(frame, column, csv, on_missing)
        elif kind == "categorical":
            frame[column] = frame[column].str.strip().replace("", "unknown")
        else:
            frame[column] = frame[column].replace("", None).astype(float)
    return finalize(frame, classes or sorted(frame["label"].unique()), metadata, file=csv,
                    name=name, on_missing=on_missing, verify=verify)
