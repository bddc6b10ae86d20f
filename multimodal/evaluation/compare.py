"""Two evaluations of the same rows, compared: the difference of each metric with a paired
group-bootstrap interval (scripts/compare.py).

Rows are matched by image id (a shifted copy keeps its source's ids), so "the same model on
original vs shifted pictures" and "image-only vs image+meta on one test split" are both
paired comparisons.
"""

from __future__ import annotations

import os

import pandas as pd

from multimodal.errors import DataError
from multimodal.evaluation.context import arrays
from multimodal.evaluation.metrics import paired_difference

METRICS = ("balanced_accuracy", "macro_auc", "accuracy")


def read_predictions(path: str) -> pd.DataFrame:
    """An evaluation's predictions.csv (the file, or the evaluation folder holding it)."""
    file = os.path.join(path, "predictions.csv") if os.path.isdir(path) else path
    if not os.path.exists(file):
        raise DataError(f"no predictions at {file}", hint="run scripts/evaluate.py first")
    return pd.read_csv(file, dtype={"image_id": str, "group_id": str, "label": str})


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
