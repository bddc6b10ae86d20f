"""From a data config to a checked table and a leak-free split."""

from __future__ import annotations

import os

import pandas as pd

from multimodal.config import DataConfig, expand
from multimodal.data import splits
from multimodal.data.sources import load_source
from multimodal.data.table import DatasetTable


def load_table(cfg: DataConfig) -> DatasetTable:
    """Load the configured source and keep only the configured metadata columns."""
    table = load_source(cfg.source, on_missing=cfg.on_missing, verify=cfg.verify,
                        **expand(cfg.options))
    if cfg.metadata is not None:
        unknown = sorted(set(cfg.metadata) - set(table.metadata))
        if unknown:
            raise ValueError(f"data.metadata: {unknown} not among {cfg.source}'s metadata "
                             f"columns {sorted(table.metadata)}")
        table.metadata = {k: table.metadata[k] for k in cfg.metadata}
    return table


def resolve_split(table: DatasetTable, cfg: DataConfig, save_to: str | None = None,
                  hashes: list[str] | None = None) -> pd.DataFrame:
    """Load the configured split file or make one, then refuse it if it leaks.

    A leaky split passes only when it was asked for (`split_by: image`), with a warning.
    `hashes` are the images' sha256 in table order (computed here when not given).
    """
    if cfg.split_file:
        split = splits.load_split(expand(cfg.split_file), table)
    else:
        split = splits.train_val_test(table, val=cfg.val, test=cfg.test, seed=cfg.split_seed,
                                      stratify=tuple(cfg.stratify), by=cfg.split_by)
    splits.check_leakage(table, split, allow=cfg.split_by == "image", hashes=hashes)
    if save_to:
        os.makedirs(os.path.dirname(os.path.abspath(save_to)), exist_ok=True)
        splits.save_split(split, save_to)
    return split
