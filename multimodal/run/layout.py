"""The run directory: every file a run holds, named once. Training writes these through the
run layer (files.py, checkpoint.py); evaluation, ensembles and serving read them through it.

    config.yaml              the resolved config (every default filled in)
    classes.json             class names in output order
    metadata_encoder.json    the fitted metadata encoding
    normalizer.json          the fitted pixel normalisation
    split.csv                image_id, group_id, label, split (or fold_split.csv in a CV fold)
    prepared_data.json       which shared prepared-records folder the run reads
(the last two are the data layer's records, written wherever inputs are built: the names
come from data/split/grouped.py and data/records/store.py)
    run.json                 git commit, library versions, devices
    metrics.jsonl            one line per epoch (the history is the truth on resume)
    summary.json             written when training ends: steps, best score, why it stopped
    curves.png               training curves
    checkpoints/{latest,best}/<step>/   Orbax: model, optimizer, progress
    oof_predictions.csv      a CV fold's predictions of its held-out fold (ensemble/cv.py)
    init_from.json           where a run started (model.init_from: run/init.py)
"""

from __future__ import annotations

import os

from multimodal.data.split.grouped import SPLIT_FILE as SPLIT  # noqa: F401 - the data layer names it

CONFIG = "config.yaml"
CLASSES = "classes.json"
ENCODER = "metadata_encoder.json"
NORMALIZER = "normalizer.json"
RUN_INFO = "run.json"
METRICS_LOG = "metrics.jsonl"
SUMMARY = "summary.json"
CURVES = "curves.png"
CHECKPOINTS = "checkpoints"
OOF_PREDICTIONS = "oof_predictions.csv"
INIT_FROM = "init_from.json"

# what loading a run needs (the rest is history or checkpoints)
RUN_FILES = (CONFIG, CLASSES, ENCODER, NORMALIZER)


def path(workdir: str, name: str) -> str:
    return os.path.join(workdir, name)


def is_run(folder: str) -> bool:
    """A folder scripts/train.py wrote (finished or not)."""
    return os.path.exists(path(folder, CONFIG))


def is_finished(folder: str) -> bool:
    return os.path.exists(path(folder, SUMMARY))
