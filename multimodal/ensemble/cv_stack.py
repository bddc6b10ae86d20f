"""Stacking fine-tuned members from cross-validation folders (scripts/stack.py --cv).

Inputs: one or more CV folders made on the same folds (scripts/cv.py, e.g. an image-only
and an image+meta config). Their pooled out-of-fold (OOF) probabilities plus the patient
metadata train an XGBoost stacker; nothing trains again.

- Cross-fitted OOF figure: for each fold j, a stacker fitted on the other folds' OOF rows
  predicts fold j's rows, so every development row gets a stacker prediction from a
  stacker that never saw it (the figure compared with the members' own OOF figure).
- Hyperparameters: each stacker picks its tree depth on its own inner grouped rows (the
  Stacker's calibration tenth), never on the rows it is scored on, never on test.
- Test: the final stacker (all OOF rows) reads the average of the K fold models'
  probabilities on the base test rows (WORKDIR/test/fold_k.csv of each CV folder).
- Beside it: each member's fold average, and late fusion (weights fitted on OOF rows).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from multimodal.data.pipeline.metadata import MetadataEncoder
from multimodal.ensemble.late_fusion import combine, fit_weights
from multimodal.ensemble.manifest import prediction_frame
from multimodal.ensemble.members import prob_columns, raw_metadata
from multimodal.ensemble.stacking import Stacker, stack_inputs
from multimodal.errors import ConfigError, RunError
from multimodal.metrics import balanced_accuracy

DEPTHS = (2, 4)  # the stacker's tree depths tried, each on its own inner rows
KEEP = ["image_id", "group_id", "label"]


def _read(path: str) -> pd.DataFrame:
    if not os.path.exists(path):
        raise RunError(f"{path} is missing", "finish the cross-validation first: "
                       "python scripts/cv.py ... --score-test (it resumes)")
    return pd.read_csv(path, dtype={"image_id": str, "group_id": str, "label": str})


def load_member(cv_dir: str, need_test: bool) -> dict:
    """A CV folder's OOF frame, its folds' test frames (or None) and its classes."""
    oof = _read(os.path.join(cv_dir, "oof", "predictions.csv")).sort_values("image_id")
    classes = [c[len("prob_"):] for c in oof.columns if c.startswith("prob_")]
    k = int(oof["fold"].max()) + 1
    tests = None
    if need_test:
        tests = [_read(os.path.join(cv_dir, "test", f"fold_{j}.csv")).sort_values("image_id")
                 for j in range(k)]
    return {"dir": cv_dir, "oof": oof.reset_index(drop=True), "classes": classes,
            "tests": tests and [t.reset_index(drop=True) for t in tests]}


def check_same_rows(members: list[dict]) -> None:
    first = members[0]
    for m in members[1:]:
        if m["classes"] != first["classes"]:
            raise ConfigError(f"{m['dir']} has classes {m['classes']}, {first['dir']} "
                              f"{first['classes']}: stacking needs the same classes")
        same = (list(m["oof"]["image_id"]) == list(first["oof"]["image_id"]) and
                list(m["oof"]["fold"]) == list(first["oof"]["fold"]))
        if not same:
            raise ConfigError(f"{m['dir']} and {first['dir']} were cross-validated on other "
                              "rows or folds", "run scripts/cv.py with the same --folds, "
                              "--seed and data split for every member")


def fold_average(member: dict) -> pd.DataFrame:
    """The mean of the fold models' probabilities on the test rows."""
    tests, classes = member["tests"], member["classes"]
    probs = np.mean([t[prob_columns(classes)].to_numpy() for t in tests], axis=0)
    return prediction_frame(tests[0][KEEP], classes, probs)


def _inputs(frames: list[pd.DataFrame], classes, meta: np.ndarray | None, names) -> pd.DataFrame:
    parts = []
    for i, frame in enumerate(frames):
        part = stack_inputs(frame, classes, None)
        parts.append(part.rename(columns=lambda c: f"m{i}:{c}") if len(frames) > 1 else part)
    if meta is not None and meta.shape[1]:
        parts.append(pd.DataFrame(meta, columns=[f"meta:{n}" for n in names]))
    return pd.concat(parts, axis=1)


def fit_stacker(X: pd.DataFrame, y: np.ndarray, groups, classes, seed: int,
                device: str = "cpu") -> Stacker:
    """The depth whose stacker scores best on its own inner calibration rows."""
    best, best_score = None, -1.0
    for depth in DEPTHS:
        stacker = Stacker(classes, seed, max_depth=depth, device=device).fit(X, y, groups)
        rows = stacker.calibration_rows_
        score = balanced_accuracy(y[rows], stacker.predict_proba(X.iloc[rows]).argmax(1),
                                  len(classes))
        if score > best_score:
            best, best_score = stacker, score
    return best


def stack_cv(cv_dirs: list[str], workdir: str, table_frame: pd.DataFrame,
             encoder: MetadataEncoder | None, seed: int = 0, score_test: bool = False,
             device: str = "cpu") -> dict:
    """{name: (OOF frame, test frame or None)} for each system; the final stacker saved.

    `encoder` None: the stacker sees the members' probabilities only (the metadata gain
    at the stacker is this minus that). `device`: XGBoost's (cpu, or cuda on a GPU)."""
    members = [load_member(d, score_test) for d in cv_dirs]
    check_same_rows(members)
    classes, oof = members[0]["classes"], members[0]["oof"]
    y = oof["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    groups, folds = oof["group_id"].to_numpy(), oof["fold"].to_numpy()
    meta = names = None
    if encoder is not None and encoder.dim:
        meta, names = encoder.transform(raw_metadata(table_frame, oof["image_id"])), \
            encoder.feature_names
    X = _inputs([m["oof"] for m in members], classes, meta, names)
    crossfit = np.zeros((len(oof), len(classes)))
    for j in np.unique(folds):
        rest, held = np.flatnonzero(folds != j), np.flatnonzero(folds == j)
        stacker = fit_stacker(X.iloc[rest].reset_index(drop=True), y[rest], groups[rest],
                              classes, seed, device)
        crossfit[held] = stacker.predict_proba(X.iloc[held])
    final = fit_stacker(X, y, groups, classes, seed, device)
    os.makedirs(workdir, exist_ok=True)
    final.save(os.path.join(workdir, "stacker.ubj" if encoder is not None else
                            "stacker_no_metadata.ubj"))
    out = {"stacker": (prediction_frame(oof[KEEP], classes, crossfit).assign(fold=folds), None)}
    if len(members) > 1:
        probs = [m["oof"][prob_columns(classes)].to_numpy() for m in members]
        fused = np.zeros_like(crossfit)
        for j in np.unique(folds):  # weights fitted on the other folds: cross-fitted too
            rest, held = folds != j, folds == j
            w = fit_weights([p[rest] for p in probs], y[rest])
            fused[held] = combine([p[held] for p in probs], w)
        out["late_fusion"] = (prediction_frame(oof[KEEP], classes, fused).assign(fold=folds),
                              None)
    if score_test:
        averages = [fold_average(m) for m in members]
        test_meta = (encoder.transform(raw_metadata(table_frame, averages[0]["image_id"]))
                     if meta is not None else None)
        Xt = _inputs(averages, classes, test_meta, names)
        out["stacker"] = (out["stacker"][0],
                          prediction_frame(averages[0][KEEP], classes, final.predict_proba(Xt)))
        if len(members) > 1:
            w = fit_weights(probs, y)  # the members' OOF probabilities, as above
            fused = combine([a[prob_columns(classes)].to_numpy() for a in averages], w)
            out["late_fusion"] = (out["late_fusion"][0],
                                  prediction_frame(averages[0][KEEP], classes, fused))
    for m, avg in zip(members, averages if score_test else [None] * len(members)):
        name = os.path.basename(os.path.normpath(os.path.abspath(m["dir"])))
        out[f"member:{name}"] = (m["oof"], avg)
        if score_test:
            out[f"single:{name}"] = (None, m["tests"][0])
    return out
