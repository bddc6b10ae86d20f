"""From a data config to a checked table and a leak-free split."""

from __future__ import annotations

import os

import pandas as pd

from multimodal.config import DataConfig
from multimodal.data.split import grouped, near_duplicates
from multimodal.data.sources import load_source, load_sources
from multimodal.data.table import DatasetTable
from multimodal.errors import ConfigError


def load_table(cfg: DataConfig, masks: bool = False) -> DatasetTable:
    """Load the configured source (or the merged `data.sources`) and keep only the
    configured metadata columns (`data.source_as_metadata` adds `source`); `masks`: with
    each image's segmentation mask (`mask_path`)."""
    if cfg.sources is not None:
        table = load_sources(cfg.sources, on_missing=cfg.on_missing, verify=cfg.verify,
                             masks=masks)
    else:
        table = load_source(cfg.source, on_missing=cfg.on_missing, verify=cfg.verify,
                            masks=masks, **cfg.options)
    if cfg.metadata is not None:
        unknown = sorted(set(cfg.metadata) - set(table.metadata))
        if unknown:
            hint = ("--set data.source_as_metadata=true adds the source"
                    if "source" in unknown and cfg.sources is not None else None)
            raise ConfigError(f"data.metadata: {unknown} not among {table.name}'s metadata "
                              f"columns {sorted(table.metadata)}", hint)
        table.metadata = {k: table.metadata[k] for k in cfg.metadata}
    if cfg.source_as_metadata:
        table.metadata["source"] = "categorical"
    return table


def _bins(cfg: DataConfig) -> dict | None:
    """`data.stratify_bins`, checked: edges of stratify columns, increasing numbers."""
    for column, edges in (cfg.stratify_bins or {}).items():
        if column not in cfg.stratify:
            raise ConfigError(f"data.stratify_bins: {column!r} is not a data.stratify column "
                              f"{list(cfg.stratify)}",
                              f"add it: --set data.stratify=[label,{column}]")
        if not (isinstance(edges, list) and len(edges) >= 2 and
                all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in edges) and
                all(a < b for a, b in zip(edges, edges[1:]))):
            raise ConfigError(f"data.stratify_bins.{column}: {edges!r} is not a list of at least "
                              "two increasing numbers (bin edges)", "e.g. [0, 2, 4, 6]")
    return cfg.stratify_bins


def resolve_split(table: DatasetTable, cfg: DataConfig, save_to: str | None = None,
                  hashes: list[str] | None = None,
                  phash_cache: str | None = None) -> pd.DataFrame:
    """Load the configured split file or make one, then refuse it if it leaks.

    A split file assigns each image a `split` (train / val / test) or a `fold` (0..K-1).
    With folds, `data.fold: k` picks the run: fold k is the test part, fold (k+1) mod K
    the validation part, the other folds train (so runs k = 0..K-1 give every image
    one held-out prediction). `data.fold` without a split file makes `data.folds`
    grouped, stratified folds. The returned split always has a `split` column (and
    keeps `fold`); the leak check runs on the folds when there are folds.

    A leaky split passes only when it was asked for (`split_by: image`), with a warning.
    `hashes` are the images' sha256 in table order (computed here when not given).

    Near-duplicate pictures (`data.near_duplicates`; by default those of different sources
    of a merged table): a new split keeps each pair's groups on one side, with a warning;
    a split file that separates a pair is refused (near_duplicates.py). Their perceptual
    hashes are cached in `phash_cache` (a folder) when given.
    """
    fold = cfg.fold
    near = None
    if near_duplicates.in_scope(cfg.near_duplicates, table):
        if hashes is None:
            hashes = grouped.content_hashes(table.frame["image_path"].tolist())
        near = near_duplicates.near_pairs(table, cfg.near_duplicates, hashes, phash_cache)
    if cfg.split_file:
        path = cfg.split_file
        split = grouped.load_split(path, table)
    else:
        path = None
        groups = None
        if near is not None and not near.empty and cfg.split_by == "group":
            groups = near_duplicates.linked_groups(table.frame, near)
            near_duplicates.warn_linked(near, cfg.near_duplicates)
        if fold is not None:
            if cfg.folds < 3:
                raise ConfigError(f"data.folds: {cfg.folds} folds leave no training fold "
                                  "(one is test, one validation)", "--set data.folds=5")
            split = grouped.grouped_kfold(table, cfg.folds, seed=cfg.split_seed,
                                          stratify=tuple(cfg.stratify), bins=_bins(cfg),
                                          by=cfg.split_by, groups=groups)
        else:
            split = grouped.train_val_test(table, val=cfg.val, test=cfg.test, seed=cfg.split_seed,
                                           stratify=tuple(cfg.stratify), bins=_bins(cfg),
                                           by=cfg.split_by, groups=groups)
    if fold is not None:
        if "fold" not in split.columns:
            raise ConfigError(f"data.fold={fold} needs a K-fold split file (a 'fold' column); "
                              f"{path} has train/val/test in 'split'",
                              "--set data.fold=null uses its train/val/test split")
        n = int(split["fold"].max()) + 1
        if n < 3:
            raise ConfigError(f"data.fold needs at least 3 folds (test, validation, training); "
                              f"{path} has {n}",
                              "--set data.split_file=null --set data.folds=5 makes 5 grouped "
                              "folds")
        if not 0 <= fold < n:
            raise ConfigError(f"data.fold={fold} is not among the folds 0..{n - 1} of "
                              f"{path or 'the split'}", f"--set data.fold=0 (up to {n - 1})")
        split = split.assign(split=grouped.fold_roles(split["fold"], fold).to_numpy())
    elif "split" not in split.columns:
        raise ConfigError(f"{path} is a K-fold split file (a 'fold' column): choose the run's "
                          "test fold with data.fold (fold k+1 then validates, the rest train)",
                          "--set data.fold=0")
    grouped.check_leakage(table, split, allow=cfg.split_by == "image", hashes=hashes, near=near)
    if save_to:
        os.makedirs(os.path.dirname(os.path.abspath(save_to)), exist_ok=True)
        grouped.save_split(split, save_to)
    return split


def dataset_folders(cfg: DataConfig) -> dict:
    """What no tool may write into (multimodal.outputs): every folder the data section names
    ("dataset folder": not it, nor anything inside it), and the folder of every file it
    names ("folder of a dataset file": not that folder itself; a CSV may sit in a project's
    root, whose sub-folders stay writable)."""
    folders = {}
    options = [cfg.options or {}] + [e.get("options") or {} for e in cfg.sources or []]
    for value in (v for o in options for v in o.values()):
        if isinstance(value, str) and value and os.path.exists(value):
            if os.path.isdir(value):
                folders[value] = "dataset folder"
            else:
                folders.setdefault(os.path.dirname(os.path.abspath(value)),
                                   "folder of a dataset file")
    return folders
