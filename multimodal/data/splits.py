"""Grouped, stratified splits, saved to CSV, and the leak check that guards them.

Every split keeps a group (lesion, patient) on one side. Splitting by image is
possible only with `by="image"`, which warns: it reproduces the inflated
numbers of image-level splits, nothing more.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from multimodal.data.errors import DataError, LeakageError
from multimodal.data.table import DatasetTable

SPLITS = ("train", "val", "test")
_GRAIN = 20  # train/val/test fractions are met to 1/_GRAIN


class LeakageWarning(UserWarning):
    pass


def stratify_key(frame: pd.DataFrame, columns=("label",), bins: dict | None = None) -> pd.Series:
    """One string per row combining the stratification columns.

    `bins` maps a numeric column to bin edges (e.g. Fitzpatrick {"fitzpatrick":
    [0, 2, 4, 6]} gives I-II / III-IV / V-VI); missing values form their own stratum.
    """
    parts = []
    for column in columns:
        values = frame[column]
        if bins and column in bins:
            values = pd.cut(pd.to_numeric(values, errors="coerce"), bins[column]).astype(str)
        values = values.astype(object).where(values.notna(), "missing").astype(str)
        parts.append(values.replace({"nan": "missing", "": "missing"}))
    key = parts[0]
    for p in parts[1:]:
        key = key + "|" + p
    return key


def _groups(frame: pd.DataFrame, by: str) -> pd.Series:
    if by == "group":
        return frame["group_id"]
    if by == "image":
        warnings.warn(
            "splitting by IMAGE: images of the same lesion/patient can land in both train "
            "and test, which inflates every metric. Use only to reproduce image-level results.",
            LeakageWarning,
            stacklevel=3,
        )
        return frame["image_id"]
    raise ValueError(f"by must be 'group' or 'image', not {by!r}")


def _fold_ids(frame, k, seed, stratify, bins, by) -> np.ndarray:
    key = stratify_key(frame, stratify, bins)
    groups = _groups(frame, by)
    n_groups = groups.nunique()
    if n_groups < k:
        raise DataError(f"cannot make {k} grouped folds from {n_groups} groups")
    folds = np.empty(len(frame), np.int32)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # rare strata cannot reach every fold; that is expected
        warnings.filterwarnings("ignore", message="The least populated class")
        for fold, (_, idx) in enumerate(splitter.split(frame, key, groups)):
            folds[idx] = fold
    return folds


def _split_frame(table: DatasetTable) -> pd.DataFrame:
    return table.frame[["image_id", "group_id", "label"]].copy()


def grouped_kfold(table: DatasetTable, k: int = 5, seed: int = 0, stratify=("label",),
                  bins: dict | None = None, by: str = "group") -> pd.DataFrame:
    """Assign every image a fold 0..k-1; groups never span folds (with by='group')."""
    out = _split_frame(table)
    out["fold"] = _fold_ids(table.frame, k, seed, stratify, bins, by)
    return out


def train_val_test(table: DatasetTable, val: float = 0.15, test: float = 0.15, seed: int = 0,
                   stratify=("label",), bins: dict | None = None,
                   by: str = "group") -> pd.DataFrame:
    """Grouped, stratified train/val/test split, fractions rounded to 1/20."""
    n_val, n_test = round(val * _GRAIN), round(test * _GRAIN)
    if n_val + n_test >= _GRAIN or min(n_val, n_test) < 0:
        raise ValueError(f"val={val} and test={test} leave no training data")
    folds = _fold_ids(table.frame, _GRAIN, seed, stratify, bins, by)
    order = np.random.default_rng(seed).permutation(_GRAIN)
    role = np.array(["train"] * _GRAIN, dtype=object)
    role[order[:n_test]] = "test"
    role[order[n_test:n_test + n_val]] = "val"
    out = _split_frame(table)
    out["split"] = role[folds]
    return out


def save_split(split: pd.DataFrame, path) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    split.to_csv(path, index=False)


def load_split(path, table: DatasetTable) -> pd.DataFrame:
    """Read a split CSV and check it covers exactly the table's images."""
    if not os.path.exists(path):
        raise DataError("split file not found", path)
    split = pd.read_csv(path, dtype={"image_id": str, "group_id": str, "label": str})
    if "split" not in split.columns and "fold" not in split.columns:
        raise DataError("a split file needs a 'split' or 'fold' column", path)
    unknown = set(split["image_id"]) - set(table.frame["image_id"])
    if unknown:
        raise DataError(f"{len(unknown)} image id(s) not in the dataset, e.g. "
                        f"{sorted(unknown)[0]!r}", path)
    return split


def content_hashes(paths, workers: int = 8) -> list[str]:
    """sha256 of each file's bytes: finds the same picture under two ids."""
    def digest(path):
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(digest, paths))


def check_leakage(table: DatasetTable, split: pd.DataFrame, column: str = "split",
                  allow: bool = False, hashes: list[str] | None = None) -> list[str]:
    """Refuse splits where a group or an identical image sits in two parts.

    Returns the list of problems found (empty when clean). Raises
    `LeakageError` unless `allow`, in which case it warns instead.
    """
    frame = table.frame[["image_id", "group_id", "image_path"]].merge(
        split[["image_id", column]], on="image_id", how="inner")
    if hashes is None:
        hashes = content_hashes(frame["image_path"].tolist())
    else:
        hashes = pd.Series(hashes, index=table.frame["image_id"]).loc[frame["image_id"]].tolist()
    frame["sha256"] = hashes
    problems = []
    for key, what in (("group_id", "group"), ("sha256", "identical image")):
        parts = frame.groupby(key)[column].nunique()
        for value in parts[parts > 1].index:
            rows = frame[frame[key] == value]
            where = ", ".join(f"{i} in {s}" for i, s in zip(rows["image_id"], rows[column]))
            problems.append(f"{what} {value[:16]} spans splits: {where}")
    if problems:
        message = f"{len(problems)} leak(s) between splits; first: {problems[0]}"
        if not allow:
            raise LeakageError(message + ". Re-split by group (the default).")
        warnings.warn(message, LeakageWarning, stacklevel=2)
    return problems
