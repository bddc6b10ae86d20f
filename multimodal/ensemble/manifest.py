"""Ensemble directories: manifest.json + model files, and their predictions.

manifest.json (format `multimodal.Ensemble/1`):
- `kind`: `stacking` | `late_fusion`; `classes`: the class order;
- `members`: run directories (relative to the ensemble directory when inside it);
- late fusion: `weights`, one per member, fitted on the members' validation split;
- stacking: `stacker` (XGBoost UBJ), `columns` (its input order), `metadata_encoder`,
  `group_context`, `val_predictions` (the stacker on its inner-validation rows, for
  calibration), `oof` (the out-of-fold table it was fitted on).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from multimodal.data.metadata import MetadataEncoder
from multimodal.ensemble.late_fusion import combine
from multimodal.ensemble.members import member_predictions, prob_columns, raw_metadata
from multimodal.ensemble.stacking import Stacker, stack_inputs

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
        raise ValueError(f"{directory}/{MANIFEST}: unknown format {manifest.get('format')!r}")
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


def ensemble_predictions(directory: str, splits=("val", "test")):
    """({split: predictions}, Inputs of the first member, classes) of an ensemble."""
    manifest = read_manifest(directory)
    classes = manifest["classes"]
    members = [_path(directory, m) for m in manifest["members"]]
    stacking = manifest["kind"] == "stacking"
    # the stacker trained on the base validation rows: its own inner validation stands in
    member_splits = tuple(s for s in splits if not (stacking and s == "val"))
    outs = [member_predictions(m, member_splits) for m in members]
    for m, (_, _, member_classes) in zip(members, outs):
        if member_classes != classes:
            raise ValueError(f"member {m} has classes {member_classes}, the ensemble {classes}")
    inputs = outs[0][1]
    result = {}
    if manifest["kind"] == "late_fusion":
        for split in outs[0][0]:
            frames = [o[0][split] for o in outs]
            if any(list(f["image_id"]) != list(frames[0]["image_id"]) for f in frames):
                raise ValueError(f"members predict different images on {split}: their splits "
                                 "differ; late fusion needs runs on one split")
            probs = combine([f[prob_columns(classes)].to_numpy() for f in frames],
                            manifest["weights"])
            result[split] = prediction_frame(frames[0], classes, probs)
    elif stacking:
        encoder = MetadataEncoder.load(_path(directory, manifest["metadata_encoder"]))
        stacker = Stacker.load(_path(directory, manifest["stacker"]), classes, manifest["columns"])
        for split, preds in outs[0][0].items():
            X = stacker_inputs(preds, inputs.table_frame, encoder, manifest)
            result[split] = prediction_frame(preds, classes, stacker.predict_proba(X))
        if "val" in splits:
            result["val"] = pd.read_csv(_path(directory, manifest["val_predictions"]),
                                        dtype={"image_id": str, "group_id": str})
    else:
        raise ValueError(f"unknown ensemble kind {manifest['kind']!r}")
    return result, inputs, classes
