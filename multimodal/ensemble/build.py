"""Build ensembles: stacking (member + K fold members + XGBoost) and weighted late fusion."""

from __future__ import annotations

import os

import pandas as pd

from multimodal.config import Config
from multimodal.data.split.build import load_table
from multimodal.data.pipeline.metadata import MetadataEncoder
from multimodal.ensemble.late_fusion import combine, fit_weights
from multimodal.ensemble.manifest import prediction_frame, stacker_inputs, write_manifest
from multimodal.ensemble.members import member_predictions, prob_columns
from multimodal.ensemble.oof import dev_folds, out_of_fold, train_once
from multimodal.ensemble.stacking import Stacker
from multimodal.metrics import classification_metrics
from multimodal.errors import ConfigError
from multimodal.run.layout import ENCODER, SPLIT, path


def build_stacking(cfg: Config, workdir: str, train, folds: int | None = None, seed: int = 0,
                   group_context: bool = False, show_progress: bool = True, **params) -> dict:
    """Member on the base split (workdir/full), K fold members for out-of-fold
    predictions on the development rows, and an XGBoost stacker fitted on them.

    `train(cfg, workdir, show_progress=...)` trains one member (the trainer's `train`;
    passed in, so ensembles stand on run directories, not on the trainer).

    `folds`: K for a train/val/test base split (default 5); a K-fold split file
    (`data.fold: k`) brings its own folds (the K-1 other than k). `group_context` (off
    by default) adds per-lesion features that are a label proxy in HAM10000 (it warns).
    The stacker is fitted on 80% of the out-of-fold rows, early-stopped on 10% and the
    last 10% is held out: its predictions there (val_predictions.csv) are what evaluation
    calibrates and picks the operating point on. oof.csv says which rows went where
    (`stacker_rows`). Every finished run is kept, so an interrupted build continues
    where it stopped.
    """
    full = os.path.join(workdir, "full")
    train_once(train, cfg, full, show_progress)
    table = load_table(cfg.data)
    base = pd.read_csv(path(full, SPLIT), dtype=str)
    fold_table = dev_folds(table, base, folds, seed)
    fold_table.to_csv(os.path.join(workdir, "folds.csv"), index=False)
    oof = out_of_fold(cfg, fold_table, workdir, train, show_progress)
    classes = list(oof.columns[oof.columns.str.startswith("prob_")].str[5:])
    meta_encoder = MetadataEncoder.load(path(full, ENCODER))
    manifest = {"kind": "stacking", "classes": classes, "members": ["full"],
                "stacker": "stacker.ubj", "metadata_encoder": "full/metadata_encoder.json",
                "group_context": group_context, "val_predictions": "val_predictions.csv",
                "val_predictions_rows": "held_out", "oof": "oof.csv",
                "folds": int(fold_table["fold"].max()) + 1,
                "fold_source": "split file" if "fold" in base.columns else "grouped_kfold"}
    X = stacker_inputs(oof, table.frame, meta_encoder, manifest)
    y = oof["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    stacker = Stacker(classes, seed, **params).fit(X, y, oof["group_id"].to_numpy())
    stacker.save(os.path.join(workdir, "stacker.ubj"))
    held = stacker.calibration_rows_
    val = prediction_frame(oof.iloc[held], classes, stacker.predict_proba(X.iloc[held]))
    val.to_csv(os.path.join(workdir, "val_predictions.csv"), index=False)
    role = pd.Series("fit", index=range(len(oof)))
    for name, idx in stacker.rows_.items():
        role.iloc[idx] = name
    pd.concat([oof[["image_id", "group_id", "label", "fold"]], role.rename("stacker_rows"), X],
              axis=1).to_csv(os.path.join(workdir, "oof.csv"), index=False)
    member_probs = oof[prob_columns(classes)].to_numpy()
    stop = stacker.rows_["early_stopping"]
    summary = {
        "rows": {"out_of_fold": len(oof), **{k: len(v) for k, v in stacker.rows_.items()}},
        # the stacker's boosting rounds were chosen on these rows: optimistic for it
        "early_stopping_rows": {
            "member": classification_metrics(y[stop], member_probs[stop]),
            "stacker": classification_metrics(y[stop], stacker.predict_proba(X.iloc[stop]))},
        # never fitted or early-stopped on: an honest estimate, and evaluation's calibration rows
        "held_out_rows": {
            "member": classification_metrics(y[held], member_probs[held]),
            "stacker": classification_metrics(y[held], val[prob_columns(classes)].to_numpy())},
        "best_iteration": stacker.best_iteration_}
    write_manifest(workdir, {**manifest, "columns": list(stacker.feature_names_in_),
                             "summary": summary})
    return summary


def build_late_fusion(members: list[str], out_dir: str, class_balanced: bool = True) -> dict:
    """Weights for `members` (runs on one split) fitted on their validation predictions."""
    os.makedirs(out_dir, exist_ok=True)
    outs = [member_predictions(m, ("val",)) for m in members]
    classes = outs[0][2]
    frames = [o[0]["val"] for o in outs]
    for m, o, f in zip(members, outs, frames):
        if o[2] != classes or list(f["image_id"]) != list(frames[0]["image_id"]):
            raise ConfigError(f"member {m} has other classes or another validation split than "
                             f"{members[0]}; late fusion needs runs on one split")
    labels = frames[0]["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    probs = [f[prob_columns(classes)].to_numpy() for f in frames]
    weights = fit_weights(probs, labels, class_balanced)
    fused = prediction_frame(frames[0], classes, combine(probs, weights))
    summary = {"val_members": [classification_metrics(labels, p) for p in probs],
               "val_fused": classification_metrics(labels, fused[prob_columns(classes)]
                                                   .to_numpy())}
    write_manifest(out_dir, {"kind": "late_fusion", "classes": classes,
                             "members": [os.path.abspath(m) for m in members],
                             "weights": [float(w) for w in weights], "summary": summary})
    return {"weights": [float(w) for w in weights], **summary}
