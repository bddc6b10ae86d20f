"""Classification metrics with group-bootstrap 95% intervals.

Balanced accuracy is ISIC's balanced multiclass accuracy (mean per-class
recall over the classes present). Intervals resample *groups* (lesions,
patients) with replacement, since images of one group are not independent.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn import metrics as skm

from multimodal.evaluation.resampling import bootstrap_samples, paired_samples
from multimodal.metrics import balanced_accuracy, classification_metrics


def expected_calibration_error(labels, probs, bins: int = 15) -> float:
    """ECE of the top-class confidence over equal-width bins."""
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def point_metrics(labels: np.ndarray, probs: np.ndarray) -> dict:
    """Scalar metrics of one set of predictions."""
    n_classes = probs.shape[1]
    preds = probs.argmax(1)
    present = np.bincount(labels, minlength=n_classes) > 0
    every = np.arange(n_classes)
    out = {**classification_metrics(labels, probs),
           "ece": expected_calibration_error(labels, probs)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for avg in ("macro", "weighted"):
            p, r, f, _ = skm.precision_recall_fscore_support(
                labels, preds, labels=every[present], average=avg, zero_division=0)
            out.update({f"{avg}_precision": float(p), f"{avg}_recall": float(r),
                        f"{avg}_f1": float(f)})
    return out


def per_class(labels: np.ndarray, probs: np.ndarray, classes) -> list[dict]:
    preds = probs.argmax(1)
    rows = []
    for c, name in enumerate(classes):
        truth, guess = labels == c, preds == c
        support = int(truth.sum())
        auc = (float(skm.roc_auc_score(truth, probs[:, c]))
               if 0 < support < len(labels) else float("nan"))
        rows.append({
            "class": name, "support": support,
            "recall": float(guess[truth].mean()) if support else float("nan"),
            "precision": float(truth[guess].mean()) if guess.any() else float("nan"),
            "specificity": float((~guess[~truth]).mean()) if (~truth).any() else float("nan"),
            "auc": auc,
        })
    for row in rows:
        p, r = row["precision"], row["recall"]
        row["f1"] = float(2 * p * r / (p + r)) if p + r > 0 else 0.0
    return rows


def bootstrap_intervals(labels, probs, groups, n_boot: int = 1000, seed: int = 0,
                        classes=None) -> dict:
    """95% percentile intervals for every point metric and per-class recall/AUC
    (resampling.py scores all resamples at once)."""
    samples = bootstrap_samples(labels, probs, groups, n_boot, seed,
                                classes or range(np.asarray(probs).shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a metric NaN in some resamples
        return {k: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))]
                for k, v in samples.items() if not np.all(np.isnan(v))}


def confusion_matrix(labels, probs, n_classes: int) -> list[list[int]]:
    """Counts [true class][predicted class] of the top-class predictions."""
    return skm.confusion_matrix(labels, probs.argmax(1), labels=np.arange(n_classes)).tolist()


def evaluate_predictions(labels, probs, groups, classes, n_boot: int = 1000,
                         seed: int = 0) -> dict:
    """Point metrics, per-class table and group-bootstrap intervals, JSON-ready."""
    point = point_metrics(labels, probs)
    table = per_class(labels, probs, classes)
    intervals = bootstrap_intervals(labels, probs, groups, n_boot, seed, classes) if n_boot else {}
    return {
        "n_images": int(len(labels)), "n_groups": int(len(np.unique(groups))),
        "metrics": {k: {"value": v, "ci95": intervals.get(k)} for k, v in point.items()},
        "per_class": [{**row, "recall_ci95": intervals.get(f"recall[{row['class']}]"),
                       "auc_ci95": intervals.get(f"auc[{row['class']}]")} for row in table],
        "confusion_matrix": confusion_matrix(labels, probs, len(classes)),
        "bootstrap": {"resamples": n_boot, "unit": "group", "seed": seed},
    }


def paired_difference(labels, probs_a, probs_b, groups, metric: str = "balanced_accuracy",
                      n_boot: int = 1000, seed: int = 0) -> dict:
    """metric(b) - metric(a) on the same rows, with a 95% interval from one group bootstrap
    drawn for both (paired: each resample scores both models on the same groups).

    The interval excludes 0 when b's gain (or loss) over a holds beyond lesion-level chance.
    """
    labels = np.asarray(labels)
    n_classes = probs_a.shape[1]

    def score(probs):
        if metric == "balanced_accuracy":
            return balanced_accuracy(labels, probs.argmax(1), n_classes)
        if metric == "accuracy":
            return float((probs.argmax(1) == labels).mean())
        return classification_metrics(labels, probs)[metric]

    diffs = paired_samples(labels, probs_a, probs_b, groups, metric, n_boot, seed)
    a, b = score(probs_a), score(probs_b)
    unique = np.unique(np.asarray(groups))
    low, high = np.nanpercentile(diffs, [2.5, 97.5])
    return {"metric": metric, "a": float(a), "b": float(b), "difference": float(b - a),
            "ci95": [float(low), float(high)], "excludes_zero": bool(low > 0 or high < 0),
            "resamples": n_boot, "groups": int(len(unique))}
