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

from multimodal.errors import DataError, LeakageError
from multimodal.data.table import DatasetTable, parse_csv
from multimodal.errors import ConfigError

# the split a run (or a feature cache, or prepare_data.py) was made with, in its folder
SPLIT_FILE = "split.csv"

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


def _fold_ids(frame, k, seed, stratify, bins, by, groups=None) -> np.ndarray:
    key = stratify_key(frame, stratify, bins)
    if groups is None or by != "group":
        groups = _groups(frame, by)
    else:
        groups = pd.Series(np.asarray(groups), index=frame.index)
    n_groups = groups.nunique()
    if n_groups < k:
        raise DataError(f"cannot make {k} grouped folds from {n_groups} groups")
    folds = np.empty(len(frame), np.int32)
    # imported here: sklearn.model_selection is over a second of every script's start-up
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # rare strata cannot reach every fold; that is expected
        warnings.filterwarnings("ignore", message="The least populated class")
        try:
            for fold, (_, idx) in enumerate(splitter.split(frame, key, groups)):
                folds[idx] = fold
        except ValueError as exc:  # sklearn: every stratum is smaller than k
            if "cannot be greater than the number of members" not in str(exc):
                raise
            raise DataError(f"every stratum of {list(stratify)} holds fewer than {k} images, "
                            "too few to stratify the split on", hint="stratify on fewer "
                            "columns, e.g. --set data.stratify=[label]") from None
    return folds


def _split_frame(table: DatasetTable) -> pd.DataFrame:
    return table.frame[["image_id", "group_id", "label"]].copy()


def grouped_kfold(table: DatasetTable, k: int = 5, seed: int = 0, stratify=("label",),
                  bins: dict | None = None, by: str = "group", groups=None) -> pd.DataFrame:
    """Assign every image a fold 0..k-1; groups never span folds (with by='group').
    `groups`: each row's group for splitting when not its group_id (linked near-duplicates,
    near_duplicates.linked_groups)."""
    out = _split_frame(table)
    out["fold"] = _fold_ids(table.frame, k, seed, stratify, bins, by, groups)
    return out


def train_val_test(table: DatasetTable, val: float = 0.15, test: float = 0.15, seed: int = 0,
                   stratify=("label",), bins: dict | None = None,
                   by: str = "group", groups=None) -> pd.DataFrame:
    """Grouped, stratified train/val/test split, fractions rounded to 1/20 (`groups`: as
    in grouped_kfold)."""
    n_val, n_test = round(val * _GRAIN), round(test * _GRAIN)
    if n_val + n_test >= _GRAIN or min(n_val, n_test) < 0:
        raise ConfigError(f"val={val} and test={test} leave no training data")
    folds = _fold_ids(table.frame, _GRAIN, seed, stratify, bins, by, groups)
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
    """Read a split CSV and check its columns, its values and that its images exist.

    A split file has `image_id` and either `split` (train / val / test) or `fold`
    (integers 0..K-1, every fold present); `group_id` and `label` are written for
    readers (the dataset's own groups and labels are what counts). Images of the
    dataset absent from the file are left out of every part.
    """
    if not os.path.exists(path):
        raise DataError("split file not found", path,
                        hint="point data.split_file at an existing CSV, or unset it "
                             "(--set data.split_file=null) to make a grouped split")
    split = parse_csv(path, dtype={"image_id": str, "group_id": str, "label": str,
                                   "split": str, "fold": str})
    if split.empty:
        raise DataError("no rows below the header", path,
                        hint="a split file lists every image with its split or fold")
    if "image_id" not in split.columns:
        raise DataError("a split file needs an 'image_id' column", path, 1,
                        hint="columns: image_id, group_id, label and split or fold")
    blank = split["image_id"].isna()
    if blank.any():
        raise DataError("a row without an image_id", path, int(np.flatnonzero(blank)[0]) + 2)
    if "split" not in split.columns and "fold" not in split.columns:
        raise DataError("a split file needs a 'split' (train/val/test) or 'fold' (0..K-1) "
                        "column", path, 1)
    if "split" in split.columns:
        bad = ~split["split"].isin(SPLITS)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"split {split['split'].iloc[row]!r} of {split['image_id'].iloc[row]}"
                            f" is not one of {list(SPLITS)}", path, row + 2)
    if "fold" in split.columns:
        split["fold"] = _fold_values(split["fold"], path)
    unknown = set(split["image_id"]) - set(table.frame["image_id"])
    if unknown:
        first = sorted(unknown)[0]
        line = int(np.flatnonzero(split["image_id"] == first)[0]) + 2
        raise DataError(f"{len(unknown)} image id(s) not in the dataset, e.g. {first!r}",
                        path, line, hint="the split file belongs to another dataset: check "
                                         "data.source and data.options, or data.split_file")
    dup = split["image_id"].duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise DataError(f"image {split['image_id'].iloc[row]!r} listed twice", path, row + 2)
    return split


def _fold_values(values: pd.Series, path) -> pd.Series:
    """Folds as integers 0..K-1 with every fold present; a DataError names the first bad row."""
    numbers = pd.to_numeric(values, errors="coerce")
    # every fold is present, so K is at most the number of rows: a larger fold is a typo
    bad = ~numbers.between(0, len(values) - 1) | (numbers != numbers.round())
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = "(empty)" if pd.isna(values.iloc[row]) else repr(values.iloc[row])
        raise DataError(f"fold {value} is not an integer 0..K-1 (K at most the file's "
                        f"{len(values)} rows)", path, row + 2)
    folds = numbers.astype(int)
    absent = sorted(set(range(folds.max() + 1)) - set(folds))
    if absent:
        raise DataError(f"folds must be numbered 0..K-1 without gaps; no row has fold "
                        f"{absent[0]} (K = {folds.max() + 1})", path)
    return folds


def split_column(split: pd.DataFrame) -> str:
    """The column assigning parts: `split` when present, else `fold`."""
    if "split" in split.columns:
        return "split"
    if "fold" in split.columns:
        return "fold"
    raise DataError("a split needs a 'split' or 'fold' column")


def fold_roles(folds: pd.Series, k: int) -> pd.Series:
    """train / val / test of K-fold run k: fold k is the test part, fold (k+1) mod K
    validates (early stopping, calibration), the other K-2 folds train."""
    n = int(folds.max()) + 1
    if n < 3:
        raise ConfigError(f"a K-fold run needs K >= 3 (one test fold, one validation fold, "
                          f"one or more training folds), not {n}")
    if not 0 <= k < n:
        raise ConfigError(f"fold {k} is not among the folds 0..{n - 1}")
    return folds.map(lambda f: "test" if f == k else "val" if f == (k + 1) % n else "train")


def _near_leaks(frame: pd.DataFrame, column: str, near: pd.DataFrame | None) -> list[str]:
    """Near-duplicate pairs whose pictures sit in different parts."""
    if near is None or near.empty:
        return []
    part = dict(zip(frame["image_id"], frame[column]))
    out = []
    for r in near.itertuples():
        a, b = part.get(r.image_id_a), part.get(r.image_id_b)
        if a is not None and b is not None and a != b:
            across = " across sources" if r.source_a != r.source_b else ""
            out.append(f"near-duplicate pictures{across} {r.image_id_a} in {a} and "
                       f"{r.image_id_b} in {b} (perceptual hashes {r.bits} bits apart)")
    return out


def content_hashes(paths, workers: int = 8) -> list[str]:
    """sha256 of each file's bytes: finds the same picture under two ids."""
    def digest(path):
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(digest, paths))


def check_leakage(table: DatasetTable, split: pd.DataFrame, column: str | None = None,
                  allow: bool = False, hashes: list[str] | None = None,
                  near: pd.DataFrame | None = None) -> list[str]:
    """Refuse splits where a group, an identical image or (given `near`, the pairs of
    near_duplicates.near_pairs) a near-duplicate picture sits in two parts.

    `column` defaults to `fold` when the split has one (folds are the finest parts: a
    clean K-fold file is clean for every run k), else `split`. Returns the list of
    problems found (empty when clean). Raises `LeakageError` unless `allow`, in which
    case it warns instead.
    """
    if column is None:
        column = "fold" if "fold" in split.columns else split_column(split)
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
            problems.append(f"{what} {value[:16]} spans {column}s: {where}")
    near_problems = _near_leaks(frame, column, near)
    problems += near_problems
    if problems:
        message = f"{len(problems)} leak(s) between {column}s; first: {problems[0]}"
        hint = ("Re-split by group: unset data.split_file (--set data.split_file=null) for "
                "a grouped split, or make the file with "
                "multimodal.data.split.grouped.grouped_kfold / train_val_test")
        if near_problems and len(near_problems) == len(problems):
            hint = ("The same picture (resized or re-encoded) is in two parts; across sources "
                    "it is likely one patient in both datasets. A new split keeps such pairs' "
                    "groups together: --set data.split_file=null (a run: train it anew); or "
                    "give both one group id, or drop one copy; --set data.near_duplicates=off "
                    "if they are different pictures")
        if not allow:
            raise LeakageError(message, hint)
        warnings.warn(message, LeakageWarning, stacklevel=2)
    return problems
