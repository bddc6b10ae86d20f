"""Two evaluations of the same rows, compared: the difference of each metric with a paired
group-bootstrap interval (scripts/compare.py).

Rows are matched by image id (a shifted copy keeps its source's ids), so "the same model on
original vs shifted pictures" and "image-only vs image+meta on one test split" are both
paired comparisons.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from multimodal.data.table import parse_csv
from multimodal.errors import DataError
from multimodal.evaluation.context import arrays
from multimodal.evaluation.scoring import paired_difference

METRICS = ("balanced_accuracy", "macro_auc", "accuracy")
MIN_SHARED = 0.5  # the share of each evaluation's rows the other must score too
_SLACK = 1e-4  # float32 softmax probabilities may exceed 1 by rounding


def read_predictions(path: str) -> pd.DataFrame:
    """An evaluation's predictions.csv (the file, or the evaluation folder holding it)."""
    file = os.path.join(path, "predictions.csv") if os.path.isdir(path) else path
    if not os.path.exists(file):
        raise DataError(f"no predictions at {file}", hint="run scripts/evaluate.py first")
    preds = parse_csv(file, dtype={"image_id": str, "group_id": str, "label": str})
    _check_predictions(preds, file)
    preds.attrs["file"] = file
    return preds


def _check_predictions(preds: pd.DataFrame, file: str) -> None:
    """A damaged predictions.csv (truncated, edited, garbage cells) is refused, naming the
    file and line, rather than scored as NaN; probabilities become floats in place."""
    again = "run scripts/evaluate.py again to rewrite it"
    classes = classes_of(preds)
    missing = [c for c in ("image_id", "group_id", "label", *(f"logit_{c}" for c in classes))
               if c not in preds.columns]
    if missing or not classes:
        raise DataError(f"not an evaluation's predictions: no column(s) "
                        f"{missing or ['prob_<class>']}", file, 1, hint=again)
    for column in ("image_id", "group_id", "label"):
        _refuse_first(preds[column].isna(), preds, column, "is empty", file, again)
    _refuse_first(~preds["label"].isin(classes), preds, "label",
                  f"is not one of the classes {classes}", file, again)
    _refuse_first(preds["image_id"].duplicated(), preds, "image_id", "is listed twice", file,
                  again)
    for c in classes:
        prob = pd.to_numeric(preds[f"prob_{c}"], errors="coerce")
        _refuse_first(~prob.between(-_SLACK, 1 + _SLACK), preds, f"prob_{c}",
                      "is not a probability in [0, 1]", file, again)
        logit = pd.to_numeric(preds[f"logit_{c}"], errors="coerce")
        _refuse_first(logit.isna(), preds, f"logit_{c}", "is not a number", file, again)
        preds[f"prob_{c}"], preds[f"logit_{c}"] = prob, logit


def _refuse_first(bad: pd.Series, preds: pd.DataFrame, column: str, problem: str, file: str,
                  hint: str) -> None:
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        value = preds[column].iloc[row]
        shown = ("(empty or NaN)" if pd.isna(value) else
                 repr(value) if isinstance(value, str) else f"{value:g}")
        raise DataError(f"{column} {shown} {problem}", file, row + 2, hint=hint)


def classes_of(preds: pd.DataFrame) -> list[str]:
    return [c[len("prob_"):] for c in preds.columns if c.startswith("prob_")]


def compare(a: pd.DataFrame, b: pd.DataFrame, n_boot: int = 1000, seed: int = 0,
            metrics=METRICS) -> dict:
    """b minus a on the rows both scored, for each metric."""
    classes = classes_of(a)
    if classes_of(b) != classes:
        raise DataError(f"the two evaluations have different classes: {classes} and "
                        f"{classes_of(b)}")
    shared = a.merge(b[["image_id", "label"]], on="image_id", suffixes=("", "_b"))
    if shared.empty:
        raise DataError("the two evaluations share no image id: not the same rows")
    if len(shared) < MIN_SHARED * max(len(a), len(b)):
        raise DataError(f"the two evaluations share only {len(shared)} image id(s) ({len(a)} "
                        f"rows in {a.attrs.get('file', 'a')}, {len(b)} in "
                        f"{b.attrs.get('file', 'b')}): not the same rows",
                        hint="compare two evaluations of one test split; a truncated "
                             "predictions.csv: run scripts/evaluate.py again")
    differ = shared["label"] != shared["label_b"]
    if differ.any():
        raise DataError(f"{int(differ.sum())} shared images have different labels (e.g. "
                        f"{shared.loc[differ, 'image_id'].iloc[0]}): not the same rows")
    only_a, only_b = len(a) - len(shared), len(b) - len(shared)
    a = a.set_index("image_id").loc[shared["image_id"]].reset_index()
    b = b.set_index("image_id").loc[shared["image_id"]].reset_index()
    labels, _, probs_a = arrays(a, classes)
    _, _, probs_b = arrays(b, classes)
    groups = a["group_id"].to_numpy()
    return {"rows": int(len(a)), "rows_only_in_a": int(only_a), "rows_only_in_b": int(only_b),
            "metrics": {m: paired_difference(labels, probs_a, probs_b, groups, m, n_boot, seed)
                        for m in metrics}}


def comparison_markdown(result: dict, name_a: str, name_b: str) -> str:
    lines = [f"| metric | {name_a} | {name_b} | difference (b - a) [95% CI] |",
             "| --- | ---: | ---: | --- |"]
    for metric, r in result["metrics"].items():
        lo, hi = r["ci95"]
        flag = "" if r["excludes_zero"] else " (interval spans 0)"
        lines.append(f"| {metric} | {r['a']:.3f} | {r['b']:.3f} | "
                     f"{r['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]{flag} |")
    return "\n".join(lines)
