"""A run's own test rows as a shifted copy (data/images/shift.py makes the copy): the rows come
from the run's split file, so a copy never holds a row the run trained on."""

from __future__ import annotations

import os

import pandas as pd
import yaml

from multimodal import tasks
from multimodal.data.pipeline.inputs import split_table
from multimodal.data.images.shift import write_shifted_copy
from multimodal.errors import ConfigError
from multimodal.run.files import load_run_config
from multimodal.run.layout import SPLIT, path


def shifted_copy_of_run(run_dir: str, out: str, shifts, seed: int = 0, split: str = "test",
                        progress: bool = True, reuse: bool = False,
                        final: str | None = None,
                        severity: int | None = None) -> tuple[str, int, bool]:
    """Write the shifted copy of a run's `split` rows (read from its split.csv, so never any
    other rows) into `out`. Returns the path of its dataset.yaml, the number of rows and
    whether an existing copy was reused (`reuse`: only one of exactly these rows, made in
    `out` itself; any other is written again). `final`: where `out` will be renamed to;
    `severity`: every shift at that level 1..5 (`SEVERITY`) instead of drawn ranges."""
    if seed < 0:
        raise ConfigError(f"shift seed {seed}: must be 0 or more")
    split_path = path(run_dir, SPLIT)
    if not os.path.exists(split_path):
        raise ConfigError(f"{run_dir} has no {SPLIT}: not a run directory from train.py",
                          "an ensemble: shift the test split of one of its member runs")
    cfg = load_run_config(run_dir)
    if tasks.get(cfg.task).masks:
        raise ConfigError(f"{run_dir} is a {cfg.task} run: shifted copies carry no masks, so "
                          "only classification runs are evaluated on them")
    table, frame, column, _ = split_table(cfg, split_path, save=False)
    rows = frame[frame[column].astype(str) == split]["image_id"]
    if rows.empty:
        raise ConfigError(f"{split_path} has no {split!r} rows; its values: "
                          f"{sorted(frame[column].astype(str).unique())}")
    dataset = os.path.join(out, "dataset.yaml")
    labels = os.path.abspath(os.path.join(out, "labels.csv"))
    if reuse and os.path.exists(dataset) and os.path.exists(labels):
        with open(dataset) as f:
            written_for = yaml.safe_load(f)["data"]["options"]["csv"]
        ids = pd.read_csv(labels, usecols=["image_id"], dtype=str)["image_id"]
        if written_for == labels and sorted(ids) == sorted(rows.astype(str)):
            return dataset, len(rows), True
    dataset = write_shifted_copy(table, rows, out, shifts, seed, progress=progress, final=final,
                              severity=severity)
    return dataset, len(rows), False
