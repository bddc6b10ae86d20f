"""The validation metrics training needs (early stopping, best checkpoints).

The full evaluation suite (intervals, calibration, subgroups) lives in
`multimodal.evaluation`; this keeps training free of it.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn import metrics as skm


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def macro_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Macro one-vs-rest AUC over the classes present in `labels` (NaN if fewer than 2)."""
    present = np.unique(labels)
    if len(present) < 2:
        return float("nan")
    aucs = [skm.roc_auc_score(labels == c, probs[:, c]) for c in present]
    return float(np.mean(aucs))


def _renormalised(probs: np.ndarray) -> np.ndarray:
    """Clipped away from 0 and summing to one in float64 (sklearn warns otherwise)."""
    p = np.clip(np.asarray(probs, np.float64), 1e-7, 1.0)
    return p / p.sum(1, keepdims=True)


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict:
    """Accuracy, balanced accuracy (ISIC's official metric), macro AUC, log loss."""
    preds = probs.argmax(-1)
    n_classes = probs.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes absent from a small split
        recall = skm.recall_score(labels, preds, labels=np.arange(n_classes), average=None,
                                  zero_division=0)
        present = np.bincount(labels, minlength=n_classes) > 0
    return {
        "accuracy": float((preds == labels).mean()),
        "balanced_accuracy": float(recall[present].mean()),
        "macro_auc": macro_auc(labels, probs),
        "log_loss": float(skm.log_loss(labels, _renormalised(probs), labels=np.arange(n_classes))),
    }
