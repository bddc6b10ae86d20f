"""Build ensembles: stacking (member + K fold members + XGBoost) and weighted late fusion."""

from __future__ import annotations

import os

import pandas as pd

from multimodal.config import Config
from multimodal.data.build import load_table
from multimodal.data.metadata import MetadataEncoder
from multimodal.ensemble.late_fusion import combine, fit_weights
from multimodal.ensemble.manifest import prediction_frame, stacker_inputs, write_manifest
from multimodal.ensemble.members import member_predictions, prob_columns
from multimodal.ensemble.oof import dev_folds, out_of_fold, train_once
from multimodal.ensemble.stacking import Stacker
from multimodal.training.metrics import classification_metrics


def build_stacking(cfg: Config, workdir: str, folds: int = 5, seed: int = 0,
                   group_context: bool = True, show_progress: bool = True, **params) -> dict:
    """Member on the base split (workdir/full), K fold members for out-of-fold
    predictions on the development rows, and an XGBoost stacker fitted on them.

    Every finished run is kept, so an interrupted build continues where it stopped.
    """
    from multimodal.training.trainer import train

    full = os.path.join(workdir, "full")
    train_once(train, cfg, full, show_progress)
    table = load_table(cfg.data)
    base = pd.read_csv(os.path.join(full, "split.csv"), dtype=str)
    fold_table = dev_folds(table, base, folds, seed)
    fold_table.to_csv(os.path.join(workdir, "folds.csv"), index=False)
    oof = out_of_fold(cfg, fold_table, workdir, train, show_progress)
    classes = list(oof.columns[oof.columns.str.startswith("prob_")].str[5:])
    encoder = MetadataEncoder.load(os.path.join(full, "metadata_encoder.json"))
    manifest = {"kind": "stacking", "classes": classes, "members": ["full"],
                "stacker": "stacker.ubj", "metadata_encoder": "full/metadata_encoder.json",
                "group_context": group_context, "val_predictions": "val_predictions.csv",
                "oof": "oof.csv", "folds": folds}
    X = stacker_inputs(oof, table.frame, encoder, manifest)
    y = oof["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    stacker = Stacker(classes, seed, **params).fit(X, y, oof["group_id"].to_numpy())
    stacker.save(os.path.join(workdir, "stacker.ubj"))
    inner = stacker.inner_val
    val = prediction_frame(oof.iloc[inner], classes, stacker.predict_proba(X.iloc[inner]))
    val.to_csv(os.path.join(workdir, "val_predictions.csv"), index=False)
    pd.concat([oof[["image_id", "group_id", "label", "fold"]], X], axis=1).to_csv(
        os.path.join(workdir, "oof.csv"), index=False)
    summary = {
        "inner_val_member": classification_metrics(y[inner], oof[prob_columns(classes)]
                                                   .to_numpy()[inner]),
        "inner_val_stacker": classification_metrics(y[inner], val[prob_columns(classes)]
                                                    .to_numpy()),
        "best_iteration": stacker.best_iteration, "oof_rows": len(oof)}
    write_manifest(workdir, {**manifest, "columns": list(X.columns), "summary": summary})
    return summary


def build_late_fusion(members: list[str], out_dir: str, class_balanced: bool = True) -> dict:
    """Weights for `members` (runs on one split) fitted on their validation predictions."""
    os.makedirs(out_dir, exist_ok=True)
    outs = [member_predictions(m, ("val",)) for m in members]
    classes = outs[0][2]
    frames = [o[0]["val"] for o in outs]
    for m, o, f in zip(members, outs, frames):
        if o[2] != classes or list(f["image_id"]) != list(frames[0]["image_id"]):
            raise ValueError(f"member {m} has other classes or another validation split than "
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
