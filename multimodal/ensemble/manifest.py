"""Ensemble directories: manifest.json + model files, and their predictions.

manifest.json (format `multimodal.Ensemble/1`):
- `kind`: `stacking` | `late_fusion`; `classes`: the class order;
- `members`: run directories (relative to the ensemble directory when inside it);
- late fusion: `weights`, one per member, fitted on the members' validation split;
- stacking: `stacker` (XGBoost UBJ), `columns` (its input order), `metadata_encoder`,
  `group_context` (off unless asked for: a label proxy in HAM10000), `val_predictions`
  (the stacker on held-out out-of-fold rows it was neither fitted nor early-stopped on,
  for calibration; `val_predictions_rows: held_out`), `oof` (the out-of-fold table, with
  `stacker_rows` = fit / early_stopping / calibration), `folds`.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from multimodal.data.pipeline.metadata import MetadataEncoder
from multimodal.ensemble.late_fusion import combine
from multimodal.ensemble.members import (ExternalData, external_predictions, member_predictions,
                                         prob_columns, raw_metadata)
from multimodal.ensemble.stacking import Stacker, stack_inputs
from multimodal.errors import RunError

MANIFEST = "manifest.json"
FORMAT = "multimodal.Ensemble/1"


def is_ensemble(path: str) -> bool:
    return os.path.exists(os.path.join(path, MANIFEST))


def write_manifest(directory: str, manifest: dict) -> None:
    tmp = os.path.join(directory, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"format": FORMAT, **manifest}, f, indent=1)
    os.replace(tmp, os.path.join(directory, MANIFEST))


def read_manifest(directory: str) -> dict:
    with open(os.path.join(directory, MANIFEST)) as f:
        manifest = json.load(f)
    if manifest.get("format") != FORMAT:
        raise RunError(f"{directory}/{MANIFEST}: unknown format {manifest.get('format')!r}")
    return manifest


def _path(directory, p):
    return p if os.path.isabs(p) else os.path.join(directory, p)


def prediction_frame(base: pd.DataFrame, classes, probs: np.ndarray) -> pd.DataFrame:
    """ids and labels of `base` with ensemble probabilities (logits: log-probabilities)."""
    out = base[["image_id", "group_id", "label"]].reset_index(drop=True).copy()
    out["predicted"] = [classes[i] for i in probs.argmax(1)]
    for c, name in enumerate(classes):
        out[f"prob_{name}"] = probs[:, c]
    for c, name in enumerate(classes):
        out[f"logit_{name}"] = np.log(np.clip(probs[:, c], 1e-12, 1.0))
    return out


def stacker_inputs(preds, table_frame, encoder: MetadataEncoder, manifest) -> pd.DataFrame:
    metadata = (encoder.transform(raw_metadata(table_frame, preds["image_id"])) if encoder.dim
                else None)
    return stack_inputs(preds, manifest["classes"], metadata, encoder.feature_names,
                        manifest["group_context"])


def ensemble_predictions(directory: str, splits=("val", "test"), data: ExternalData | None = None):
    """({split: predictions}, Inputs of the reported data, classes) of an ensemble.

    `val` is what evaluation calibrates on: the members' validation split, fused (late
    fusion), or the stacker's held-out rows (stacking: the base validation rows are
    among its training rows). With `data` (another dataset) `test` is every row of that
    dataset, scored by each member from images; `val` stays the ensemble's own.
    """
    manifest = read_manifest(directory)
    if manifest["kind"] not in ("late_fusion", "stacking"):
        raise RunError(f"{directory}/{MANIFEST}: unknown ensemble kind {manifest['kind']!r} "
                       "(stacking or late_fusion)")
    classes = manifest["classes"]
    members = [_path(directory, m) for m in manifest["members"]]
    stacking = manifest["kind"] == "stacking"
    own_splits = tuple(s for s in splits if not (stacking and s == "val")
                       and not (data is not None and s == "test"))
    outs, inputs = [], None
    for i, m in enumerate(members):
        preds, member_classes = {}, None
        if own_splits or data is None:  # (also for the table of the stacker's own val rows)
            preds, inputs_m, member_classes = member_predictions(m, own_splits)
            inputs = inputs or inputs_m
        if data is not None and "test" in splits:
            cache = os.path.join(data.cache_dir, f"member_{i}") if data.cache_dir else None
            preds["test"], ext_inputs, member_classes = external_predictions(m, data, cache)
            if i == 0:
                inputs = ext_inputs  # the reported rows' table (subgroups, stacker metadata)
        if member_classes is not None and member_classes != classes:
            raise RunError(f"member {m} has classes {member_classes}, the ensemble {classes}: "
                           "the member was retrained after the ensemble was built")
        outs.append((preds, inputs, member_classes))
    result = {}
    if manifest["kind"] == "late_fusion":
        for split in outs[0][0]:
            frames = [o[0][split] for o in outs]
            if any(list(f["image_id"]) != list(frames[0]["image_id"]) for f in frames):
                raise RunError(f"members predict different images on {split}: their splits "
                                 "differ; late fusion needs runs on one split")
            probs = combine([f[prob_columns(classes)].to_numpy() for f in frames],
                            manifest["weights"])
            result[split] = prediction_frame(frames[0], classes, probs)
    elif stacking:
        encoder = MetadataEncoder.load(_path(directory, manifest["metadata_encoder"]))
        stacker = Stacker.load(_path(directory, manifest["stacker"]), classes=classes,
                               columns=manifest["columns"])
        for split, preds in outs[0][0].items():
            X = stacker_inputs(preds, outs[0][1].table_frame, encoder, manifest)
            result[split] = prediction_frame(preds, classes, stacker.predict_proba(X))
        if "val" in splits:
            result["val"] = pd.read_csv(_path(directory, manifest["val_predictions"]),
                                        dtype={"image_id": str, "group_id": str})
    return result, inputs, classes


def calibration_rows(manifest: dict) -> str:
    """Which rows an ensemble's `val` predictions are, in words (for reports)."""
    if manifest["kind"] == "late_fusion":
        return ("the members' shared validation split, fused; the fusion weights were fitted "
                "and the members early-stopped on these rows")
    if manifest.get("val_predictions_rows") == "held_out":
        return ("the stacker's held-out out-of-fold rows (oof.csv, stacker_rows = "
                "calibration), on which it was neither fitted nor early-stopped")
    return ("the stacker's early-stopping rows (an ensemble built before held-out calibration "
            "rows: optimistic; rebuild it with scripts/stack.py)")
