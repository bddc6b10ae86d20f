"""The group bootstrap, vectorised: a resample is a count per row, its metrics weighted sums.

Drawing groups with replacement and stacking their rows is the same as giving every row the
number of times its group was drawn. Every metric of `scoring.point_metrics` and the
per-class recall and AUC is a function of weighted counts, so a block of resamples is scored
at once with matrix products instead of one sklearn call per metric per resample: the same
draws (`rng.integers(groups, size=groups)` per resample, in order), the same values up to
float rounding, at a cost linear in rows x resamples and memory bounded by `_BLOCK_CELLS`.

AUC is the Mann-Whitney statistic, ties counted one half: what sklearn's `roc_auc_score`
computes as the area under the ROC curve.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

_BLOCK_CELLS = 4_000_000  # resamples x rows held at once (32 MB of float64 weights)
_ECE_BINS = 15


def resample_weights(groups, n_boot: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Blocks of (resamples, rows) weights: how often each row's group was drawn."""
    rng = np.random.default_rng(seed)
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(inverse.max()) + 1 if len(inverse) else 0
    block = max(1, _BLOCK_CELLS // max(1, len(inverse)))
    for start in range(0, n_boot, block):
        counts = np.stack([np.bincount(rng.integers(n_groups, size=n_groups),
                                       minlength=n_groups)
                           for _ in range(min(block, n_boot - start))])
        yield counts[:, inverse].astype(np.float64)


def _per_row(labels: np.ndarray, probs: np.ndarray) -> dict:
    """What each row contributes, computed once for all resamples."""
    n, k = probs.shape
    preds = probs.argmax(1)
    # one-hot rows, O(rows x classes): only the confusion matrix's row and column sums and
    # its diagonal are needed, never the whole matrix (k^2 columns: 13,000 for 114 classes)
    truth, guess = np.zeros((n, k)), np.zeros((n, k))
    truth[np.arange(n), labels] = 1.0
    guess[np.arange(n), preds] = 1.0
    renormalised = np.clip(np.asarray(probs, np.float64), 1e-7, 1.0)
    renormalised /= renormalised.sum(1, keepdims=True)
    eps = np.finfo(np.float64).eps
    conf = probs.max(1).astype(np.float64)
    edges = np.linspace(0, 1, _ECE_BINS + 1)
    bins = np.zeros((n, _ECE_BINS))
    bins[np.arange(n), np.clip(np.digitize(conf, edges[1:-1]), 0, _ECE_BINS - 1)] = 1.0
    return {"truth": truth, "guess": guess, "hit": truth * (preds == labels)[:, None],
            "bins": bins,
            "bins_correct": bins * (preds == labels)[:, None], "bins_conf": bins * conf[:, None],
            "loss": -np.log(np.clip(renormalised[np.arange(n), labels], eps, 1 - eps)),
            "auc": [_auc_layout(labels == c, probs[:, c]) for c in range(k)]}


def _auc_layout(truth: np.ndarray, score: np.ndarray) -> tuple:
    """Rows sorted by score, the starts of runs of equal scores, positives in that order."""
    order = np.argsort(score, kind="stable")
    ranked = score[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    return order, starts, truth[order].astype(np.float64)


def _auc(weights: np.ndarray, layout: tuple) -> np.ndarray:
    order, starts, positive = layout
    w = weights[:, order]
    pos = np.add.reduceat(w * positive, starts, axis=1)
    neg = np.add.reduceat(w * (1.0 - positive), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(1) / (pos.sum(1) * neg.sum(1))


def _safe_divide(a: np.ndarray, b: np.ndarray, empty: float) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), empty)


def _mean_over(values: np.ndarray, present: np.ndarray, weights=None) -> np.ndarray:
    w = present.astype(np.float64) if weights is None else np.where(present, weights, 0.0)
    return _safe_divide((np.nan_to_num(values) * w).sum(1), w.sum(1), np.nan)


def resampled_metrics(labels, probs, weights: np.ndarray, names=None) -> dict:
    """Each metric of `scoring.point_metrics` (and recall[name], auc[name] per class) for every
    resample (row of `weights`), as arrays of length resamples."""
    labels, probs = np.asarray(labels), np.asarray(probs)
    rows = _per_row(labels, probs)
    return _metrics(rows, weights, probs.shape[1], names)


def _metrics(rows: dict, weights: np.ndarray, k: int, names=None, aucs: bool = True) -> dict:
    total = weights.sum(1)
    support, predicted = weights @ rows["truth"], weights @ rows["guess"]
    hits = weights @ rows["hit"]
    present = support > 0
    recall = _safe_divide(hits, support, np.nan)
    precision = _safe_divide(hits, predicted, 0.0)
    f1 = _safe_divide(2 * precision * np.nan_to_num(recall), precision + np.nan_to_num(recall),
                      0.0)
    auc = (np.stack([_auc(weights, layout) for layout in rows["auc"]], axis=1) if aucs
           else np.full((len(weights), k), np.nan))  # the costliest part: only when asked
    counts = weights @ rows["bins"]
    gap = np.abs(_safe_divide(weights @ rows["bins_correct"], counts, 0.0)
                 - _safe_divide(weights @ rows["bins_conf"], counts, 0.0))
    out = {"accuracy": hits.sum(1) / total,
           "balanced_accuracy": _mean_over(recall, present),
           "macro_auc": np.where(present.sum(1) >= 2, _mean_over(auc, present), np.nan),
           "log_loss": (weights @ rows["loss"]) / total,
           "ece": ((counts / total[:, None]) * gap).sum(1),
           "macro_precision": _mean_over(precision, present),
           "macro_recall": _mean_over(recall, present),
           "macro_f1": _mean_over(f1, present),
           "weighted_precision": _mean_over(precision, present, support),
           "weighted_recall": _mean_over(recall, present, support),
           "weighted_f1": _mean_over(f1, present, support)}
    for c, name in enumerate(names if names is not None else range(k)):
        out[f"recall[{name}]"] = recall[:, c]
        out[f"auc[{name}]"] = np.where(present[:, c] & (support[:, c] < total), auc[:, c],
                                       np.nan)
    return out


def bootstrap_samples(labels, probs, groups, n_boot: int, seed: int = 0,
                      names=None) -> dict[str, np.ndarray]:
    """Every metric over `n_boot` group resamples (arrays of length n_boot)."""
    labels, probs = np.asarray(labels), np.asarray(probs)
    rows = _per_row(labels, probs)
    blocks = [_metrics(rows, w, probs.shape[1], names)
              for w in resample_weights(groups, n_boot, seed)]
    return {key: np.concatenate([b[key] for b in blocks]) for key in blocks[0]} if blocks else {}


def paired_samples(labels, probs_a, probs_b, groups, metric: str, n_boot: int,
                   seed: int = 0) -> np.ndarray:
    """metric(b) - metric(a) over `n_boot` group resamples, both scored on each resample."""
    labels = np.asarray(labels)
    rows_a, rows_b = _per_row(labels, np.asarray(probs_a)), _per_row(labels, np.asarray(probs_b))
    k, aucs = np.asarray(probs_a).shape[1], "auc" in metric
    diffs = [_metrics(rows_b, w, k, aucs=aucs)[metric] - _metrics(rows_a, w, k, aucs=aucs)[metric]
             for w in resample_weights(groups, n_boot, seed)]
    return np.concatenate(diffs) if diffs else np.zeros(0)
