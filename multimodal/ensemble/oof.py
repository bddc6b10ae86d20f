"""Out-of-fold predictions: grouped K-fold over the development rows, one member per fold.

The development rows are every row of the base split outside `test`. Their folds are
the base split's own (a K-fold split file run with `data.fold: k`: the K-1 folds other
than k, renumbered) or, for a train/val/test split, grouped stratified folds made here.
Fold j's model trains on the other folds (fold j+1 is its validation for early stopping)
and predicts fold j only, so no row's stacking input comes from a model that saw it.
The guard `check_out_of_fold` refuses any prediction of a row its model trained or
validated on.
"""

from __future__ import annotations

import dataclasses
import os

import pandas as pd

from multimodal.config import Config
from multimodal.errors import LeakageError
from multimodal.data.split.grouped import fold_roles, grouped_kfold, save_split
from multimodal.data.table import DatasetTable
from multimodal.ensemble.members import member_predictions
from multimodal.errors import ConfigError
from multimodal.run.layout import CHECKPOINTS, is_finished


def dev_folds(table: DatasetTable, base_split: pd.DataFrame, k: int | None,
              seed: int) -> pd.DataFrame:
    """image_id, group_id, label, fold for the development rows (grouped, stratified).

    A base split from a K-fold file keeps its folds (renumbered 0..K-2; `k`, if given,
    must be K-1); otherwise `k` (default 5) grouped folds are made.
    """
    dev_rows = base_split[base_split["split"] != "test"]
    if "fold" in base_split.columns:
        numbers = sorted(dev_rows["fold"].astype(int).unique())
        if k is not None and k != len(numbers):
            raise ConfigError(f"the K-fold split file leaves {len(numbers)} development folds "
                              f"and stacking uses them; --folds {k} asks for others",
                              f"drop --folds (or pass --folds {len(numbers)})")
        frame = table.subset(dev_rows["image_id"]).frame[["image_id", "group_id", "label"]]
        lookup = dict(zip(dev_rows["image_id"], dev_rows["fold"].astype(int)))
        renumber = {f: i for i, f in enumerate(numbers)}
        return frame.assign(fold=frame["image_id"].map(lookup).map(renumber).astype(int)
                            ).reset_index(drop=True)
    return grouped_kfold(table.subset(dev_rows["image_id"]), k or 5, seed)


def fold_split(folds: pd.DataFrame, k: int) -> pd.DataFrame:
    n = folds["fold"].max() + 1
    if n < 3:  # one fold predicted, one validating, at least one training
        raise ConfigError(f"stacking needs at least 3 folds, not {n}",
                          "pass --folds 3 or more (a K-fold split file: 4 or more folds, one "
                          "being the test fold)")
    return folds[["image_id", "group_id", "label"]].assign(split=fold_roles(folds["fold"], k))


def check_out_of_fold(predicted_ids, split: pd.DataFrame, fold: int) -> None:
    seen = set(split.loc[split["split"] != "test", "image_id"])
    leaked = sorted(set(predicted_ids) & seen)
    if leaked:
        raise LeakageError(f"fold {fold}: {len(leaked)} out-of-fold predictions (e.g. "
                           f"{leaked[0]}) come from a model that trained on those rows")


def train_once(train_fn, cfg: Config, run_dir: str, show_progress: bool = True) -> None:
    """Train a member unless its run finished; resume one that was interrupted."""
    if not is_finished(run_dir):
        latest = os.path.join(run_dir, CHECKPOINTS, "latest")
        resume = os.path.isdir(latest) and any(e.isdigit() for e in os.listdir(latest))
        train_fn(cfg, run_dir, resume=resume, show_progress=show_progress)


def out_of_fold(cfg: Config, folds: pd.DataFrame, workdir: str, train_fn,
                show_progress: bool = True) -> pd.DataFrame:
    """Train one member per fold under workdir/fold_k and gather its fold's predictions.

    A fold whose run finished is reused, a fold interrupted mid-run is resumed.
    """
    parts = []
    for k in range(int(folds["fold"].max()) + 1):
        run_dir = os.path.join(workdir, f"fold_{k}")
        split = fold_split(folds, k)
        split_path = os.path.join(run_dir, "fold_split.csv")
        if not os.path.exists(split_path):
            save_split(split, split_path)
        cfg_k = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, split_file=split_path,
                                                                  fold=None))
        train_once(train_fn, cfg_k, run_dir, show_progress)
        preds = member_predictions(run_dir, splits=("test",))[0]["test"]
        check_out_of_fold(preds["image_id"], pd.read_csv(split_path, dtype=str), k)
        parts.append(preds.assign(fold=k))
    return pd.concat(parts, ignore_index=True)
