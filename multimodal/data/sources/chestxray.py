"""Chest X-ray sources: the covid-chestxray-dataset format and SIIM-FISABIO-RSNA study labels."""

from __future__ import annotations

import os
import warnings

import pandas as pd

from multimodal.data.images.dicom import DICOM_EXTENSIONS, fill_from_headers, is_dicom
from multimodal.errors import DataError
from multimodal.data.sources.ham10000 import index_images
from multimodal.data.table import DatasetTable, finalize, parse_age, read_csv, require_columns

# finding -> label presets; "*" is the label of every finding not listed.
LABEL_MAPS = {
    "opacity": {"No Finding": "none", "*": "opacity"},
    "covid": {"COVID-19": "covid", "COVID-19, ARDS": "covid", "*": "other"},
}
SIIM_STUDY = {
    "Negative for Pneumonia": "negative",
    "Typical Appearance": "typical",
    "Indeterminate Appearance": "indeterminate",
    "Atypical Appearance": "atypical",
}


def _merge_groups(frame: pd.DataFrame, key: str) -> pd.Series:
    """Patients that share an image are one group (union-find over shared keys)."""
    parent: dict[str, str] = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for _, ids in frame.groupby(key)["group_id"]:
        roots = sorted({find(i) for i in ids})
        for r in roots[1:]:
            parent[r] = roots[0]
    return frame["group_id"].map(find)


def load_covid(
    metadata_csv: str,
    image_dir: str,
    label_map: str | dict = "opacity",
    index_csv: str | None = None,
    modality: str | None = "X-ray",
    on_missing: str = "error",
    verify: str = "exists",
) -> DatasetTable:
    """Load the covid-chestxray-dataset `metadata.csv` format.

    Rows listing the same file twice are de-duplicated (the file is kept once)
    and their patient ids merged into one group, so the picture cannot land in
    two splits. `index_csv` (source_file -> stored_file) maps renamed images.
    DICOM images (.dcm): blank sex / age / view cells, or the columns when absent, come from
    the image's header (PatientSex, PatientAge, ViewPosition); a CSV value wins.
    """
    mapping = LABEL_MAPS[label_map] if isinstance(label_map, str) else dict(label_map)
    frame = read_csv(metadata_csv)
    require_columns(frame, ["patientid", "finding", "filename"], metadata_csv)
    if modality:
        frame = frame[frame["modality"].str.strip() == modality] if "modality" in frame else frame
    frame = frame.assign(group_id="patient_" + frame["patientid"].str.strip())
    frame["group_id"] = _merge_groups(frame, "filename")
    dup = frame["filename"].duplicated()
    if dup.any():
        warnings.warn(f"{metadata_csv}: {int(dup.sum())} duplicated filename row(s) kept once")
        frame = frame[~dup].copy()
    finding = frame["finding"].str.strip()
    unmapped = ~finding.isin(mapping) & ("*" not in mapping)
    if unmapped.any():
        line = int(frame.loc[unmapped, "_line"].iloc[0])
        raise DataError(f"finding {finding[unmapped].iloc[0]!r} has no label mapping",
                        metadata_csv, line)
    frame["label"] = finding.map(lambda f: mapping.get(f, mapping.get("*")))
    stored = frame["filename"]
    if index_csv:
        index = read_csv(index_csv)
        require_columns(index, ["source_file", "stored_file"], index_csv)
        stored = stored.map(dict(zip(index["source_file"], index["stored_file"]))).fillna(stored)
    frame["image_id"] = stored.map(lambda s: os.path.splitext(s)[0])
    frame["image_path"] = [os.path.join(image_dir, s) for s in stored]
    frame = fill_from_headers(frame, ["sex", "age", "view"], metadata_csv)
    frame["sex"] = frame["sex"].str.strip().replace("", "unknown")
    frame["view"] = frame["view"].str.strip().replace("", "unknown")
    frame = parse_age(frame, "age", metadata_csv, on_missing)
    classes = sorted(set(mapping.values()))
    return finalize(
        frame,
        classes,
        {"age": "numeric", "sex": "categorical", "view": "categorical"},
        file=metadata_csv,
        name="covid_chestxray",
        on_missing=on_missing,
        verify=verify,
    )


def load_siim(
    study_csv: str,
    image_csv: str,
    image_dir: str,
    binary: bool = False,
    on_missing: str = "error",
    verify: str = "exists",
) -> DatasetTable:
    """SIIM-FISABIO-RSNA COVID-19: study-level labels joined to images by study.

    Classes are negative/typical/indeterminate/atypical, or none/opacity with
    `binary=True`. Images are `<image_dir>/<image id>.png|jpg` (converted from DICOM), or the
    competition's own DICOM files `<image id>.dcm` anywhere below `image_dir` (its
    `train/<study>/<series>/` folders); a converted image wins over a .dcm of the same id.
    The study is the group (the CSVs carry no patient id). With DICOM images the table has
    the metadata age, sex and view from their headers (blank where a header has none).
    """
    studies = read_csv(study_csv)
    require_columns(studies, ["id"] + list(SIIM_STUDY), study_csv)
    hot = studies[list(SIIM_STUDY)].apply(lambda c: c.astype(float))
    if ((hot > 0.5).sum(axis=1) != 1).any():
        line = int(studies.loc[(hot > 0.5).sum(axis=1) != 1, "_line"].iloc[0])
        raise DataError("expected exactly one positive study label", study_csv, line)
    study_label = dict(zip(studies["id"].str.replace("_study", ""),
                           hot.idxmax(axis=1).map(SIIM_STUDY)))
    frame = read_csv(image_csv)
    require_columns(frame, ["id", "StudyInstanceUID"], image_csv)
    frame["image_id"] = frame["id"].str.replace("_image", "")
    frame["group_id"] = frame["StudyInstanceUID"]
    frame["label"] = frame["StudyInstanceUID"].map(study_label).fillna("(no study label)")
    if binary:
        frame["label"] = frame["label"].map(
            {"negative": "none", "typical": "opacity", "indeterminate": "opacity",
             "atypical": "opacity"}).fillna(frame["label"])
    index = {**_dicom_index(image_dir), **index_images([image_dir])}
    frame["image_path"] = [index.get(i, os.path.join(image_dir, i + ".png"))
                           for i in frame["image_id"]]
    metadata = {}
    if any(is_dicom(p) for p in frame["image_path"]):
        frame = fill_from_headers(frame, ["age", "sex", "view"], image_csv)
        frame = parse_age(frame, "age", image_csv, on_missing)
        for column in ("sex", "view"):
            frame[column] = frame[column].str.strip().replace("", "unknown")
        metadata = {"age": "numeric", "sex": "categorical", "view": "categorical"}
    classes = ("none", "opacity") if binary else tuple(SIIM_STUDY.values())
    return finalize(frame, classes, metadata, file=image_csv, name="siim_covid",
                    on_missing=on_missing, verify=verify)


def _dicom_index(folder: str) -> dict[str, str]:
    """Image id (file stem) -> path of the .dcm files anywhere below `folder`, sorted."""
    index: dict[str, str] = {}
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() in DICOM_EXTENSIONS:
                index.setdefault(stem, os.path.join(root, name))
    return index
