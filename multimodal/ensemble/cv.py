"""Grouped K-fold cross-validation of one config: the unit of evidence for a choice.

The development rows are the base split's train and val rows (the config's own split, as
`train.py` makes it); its test rows are never trained, validated or chosen on. They are cut
into K grouped, stratified folds. Fold k's run trains on the other folds less a grouped
tenth of them, which picks its checkpoint (never fold k itself), and predicts fold k. The
K predictions pooled are the out-of-fold (OOF) predictions of every development row:
about four times the test split's rows, so intervals about half as wide.

    workdir/cv.json                what ran (config digest, K, seed); a rerun must match
    workdir/folds.csv              image_id, group_id, label, fold of the development rows
    workdir/fold_k/                fold k's run (its fold_split.csv: train / val / test=fold k)
    workdir/oof/predictions.csv    pooled OOF predictions (compare.py and evaluate-style reads)
    workdir/oof/metrics.json       pooled metrics with intervals, fold mean/sd (evaluation.crossval)
    workdir/test/fold_k.csv        fold k's model on the base test rows (only when asked)

Every fold is a run: a finished one is reused, an interrupted one resumed, so the whole
command picks up where a crash or a stop left it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import pandas as pd

from multimodal import tasks
from multimodal.config import Config
from multimodal.data.split.build import load_table, resolve_split
from multimodal.data.split.grouped import grouped_kfold, save_split, train_val_test
from multimodal.ensemble.members import member_predictions, prob_columns
from multimodal.ensemble.oof import check_out_of_fold, train_once
from multimodal.errors import ConfigError, RunError
from multimodal.outputs import write_atomic
from multimodal.run.layout import OOF_PREDICTIONS

INNER_VAL = 0.1  # the grouped share of each fold's training rows that picks its checkpoint


def config_digest(cfg: Config) -> str:
    text = json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def development_folds(cfg: Config, table, k: int,
                      seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(base split, K grouped stratified folds of its train+val rows)."""
    data = dataclasses.replace(cfg.data, fold=None)
    base = resolve_split(table, data)
    dev = base[base["split"] != "test"]
    folds = grouped_kfold(table.subset(dev["image_id"]), k, seed,
                          stratify=tuple(cfg.data.stratify), by=cfg.data.split_by)
    return base, folds


def fold_run_split(cfg: Config, table, folds: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    """Fold k: test = fold k, val = a grouped stratified tenth of the other folds, train
    the rest."""
    rest = folds[folds["fold"] != k]
    inner = train_val_test(table.subset(rest["image_id"]), val=INNER_VAL, test=0.0,
                           seed=seed + 1 + k, stratify=tuple(cfg.data.stratify),
                           by=cfg.data.split_by)
    held = folds.loc[folds["fold"] == k, ["image_id", "group_id", "label"]].assign(split="test")
    return pd.concat([inner, held], ignore_index=True)


def _digest(frame: pd.DataFrame) -> str:
    text = frame.astype(str).sort_values("image_id").to_csv(index=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_same(workdir: str, record: dict) -> None:
    """The first session records `record` in cv.json; later ones must repeat it (keys a
    session before did not record are added now)."""
    path = os.path.join(workdir, "cv.json")
    saved = {}
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
    differ = [k for k in record if k in saved and saved[k] != record[k]]
    if differ:
        raise RunError(f"{workdir} holds a cross-validation of another setting ({differ} "
                       "differ)", "pass another --workdir, or the same config, folds and seed")
    if not set(record) <= set(saved):
        write_atomic(path, json.dumps({**saved, **record}, indent=1))


def run_cv(cfg: Config, workdir: str, train_fn, k: int = 5, seed: int = 0,
           score_test: bool = False, show_progress: bool = True,
           only: list[int] | None = None) -> pd.DataFrame:
    """Train (or reuse) the K fold runs; their pooled OOF predictions (written to
    workdir/oof/predictions.csv, a `fold` column saying which model made each row).

    `train_fn(cfg, run_dir, resume=..., show_progress=...)` is the trainer's `train`.
    `only`: a screen, just these folds of the same K (their rows' predictions returned,
    nothing pooled); the same command without it later completes the CV.
    """
    if only is not None and (not only or any(j not in range(k) for j in only)):
        raise ConfigError(f"--only-folds {only}: folds are numbered 0 to {k - 1}")
    if k < 3:
        raise ConfigError(f"--folds {k}: cross-validation needs at least 3 folds",
                          "pass --folds 3 (screening) or 5 (final rows)")
    if tasks.get(cfg.task).output != "classes":
        raise ConfigError(f"cross-validation scores classifiers; this config's task is "
                          f"{cfg.task}")
    _check_same(workdir, {"config_digest": config_digest(cfg), "folds": k, "seed": seed,
                          "name": cfg.name, "modality": cfg.modality})
    table = load_table(cfg.data)  # read once: the folds and every fold's inner split use it
    base, folds = development_folds(cfg, table, k, seed)
    # a resumed fold must train and predict on the very rows it started with: the data, the
    # split code or a library changing between sessions would otherwise move rows it trained
    # on into its out-of-fold part
    _check_same(workdir, {"folds_sha256": _digest(folds), "base_sha256": _digest(base)})
    save_split(base, os.path.join(workdir, "base_split.csv"))
    save_split(folds, os.path.join(workdir, "folds.csv"))
    parts = []
    for j in (range(k) if only is None else sorted(set(only))):
        run_dir = os.path.join(workdir, f"fold_{j}")
        split_path = os.path.join(run_dir, "fold_split.csv")
        split = fold_run_split(cfg, table, folds, j, seed)
        if os.path.exists(split_path) and _digest(pd.read_csv(split_path, dtype=str)) != \
                _digest(split.astype(str)):
            raise RunError(f"{split_path} differs from the fold this command makes now",
                           "pass another --workdir (the data or the split changed)")
        save_split(split, split_path)
        cfg_j = dataclasses.replace(cfg, data=dataclasses.replace(
            cfg.data, split_file=split_path, fold=None))
        train_once(train_fn, cfg_j, run_dir, show_progress)
        cached = os.path.join(run_dir, OOF_PREDICTIONS)
        if os.path.exists(cached):
            preds = pd.read_csv(cached, dtype={"image_id": str, "group_id": str, "label": str})
        else:
            preds = member_predictions(run_dir, splits=("test",))[0]["test"]
            write_atomic(cached, preds.to_csv(index=False))
        check_out_of_fold(preds["image_id"], split, j)
        parts.append(preds.assign(fold=j))
        if score_test:
            test_predictions(run_dir, base, os.path.join(workdir, "test", f"fold_{j}.csv"))
    oof = pd.concat(parts, ignore_index=True)
    if only is not None:
        return oof
    if oof["image_id"].duplicated().any() or set(oof["image_id"]) != set(folds["image_id"]):
        raise RunError(f"{workdir}: the out-of-fold predictions do not cover each development "
                       "row exactly once", "pass another --workdir")
    classes = [c[len("prob_"):] for c in oof.columns if c.startswith("prob_")]
    oof = oof[["image_id", "group_id", "label", "fold", "predicted", *prob_columns(classes),
               *[f"logit_{c}" for c in classes]]]
    write_atomic(os.path.join(workdir, "oof", "predictions.csv"), oof.to_csv(index=False))
    return oof


def test_predictions(run_dir: str, base: pd.DataFrame, out: str) -> pd.DataFrame:
    """A fold run's predictions on the base split's test rows (the fold average's input)."""
    if os.path.exists(out):
        return pd.read_csv(out, dtype={"image_id": str, "group_id": str, "label": str})
    from multimodal.run import load_run, predict_split, rows_inputs

    run = load_run(run_dir)
    rows = base.loc[base["split"] == "test", ["image_id", "group_id", "label"]]
    preds = predict_split(run, rows_inputs(run, rows, os.path.join(run_dir, "base_test")),
                          "test")
    write_atomic(out, preds.to_csv(index=False))
    return preds
