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


def balanced_accuracy(labels: np.ndarray, preds: np.ndarray, n_classes: int) -> float:
    """Mean recall over the classes present in `labels` (fast: no sklearn; for resampling
    loops). Equal to classification_metrics' balanced_accuracy of the same predictions."""
    support = np.bincount(labels, minlength=n_classes)
    hits = np.bincount(labels[preds == labels], minlength=n_classes)
    return float((hits[support > 0] / support[support > 0]).mean())


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict:
    """Accuracy, balanced accuracy (ISIC's official metric), F1 weighted by class support
    (what the Fitzpatrick17k report selected on), macro AUC, log loss."""
    preds = probs.argmax(-1)
    n_classes = probs.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes absent from a small split
        recall = skm.recall_score(labels, preds, labels=np.arange(n_classes), average=None,
                                  zero_division=0)
        present = np.bincount(labels, minlength=n_classes) > 0
        weighted_f1 = skm.f1_score(labels, preds, labels=np.flatnonzero(present),
                                   average="weighted", zero_division=0)
    return {
        "accuracy": float((preds == labels).mean()),
        "balanced_accuracy": float(recall[present].mean()),
        "weighted_f1": float(weighted_f1),
        "macro_auc": macro_auc(labels, probs),
        "log_loss": float(skm.log_loss(labels, _renormalised(probs), labels=np.arange(n_classes))),
    }


# -- segmentation (binary lesion masks) -------------------------------------------------
def mask_counts(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per image (first axis) true positive, false positive and false negative pixels of
    binary masks of any trailing shape."""
    pred = np.asarray(pred, bool).reshape(len(pred), -1)
    target = np.asarray(target, bool).reshape(len(target), -1)
    tp = (pred & target).sum(1)
    return tp, (pred & ~target).sum(1), (~pred & target).sum(1)


def dice_iou(tp, fp, fn) -> tuple[np.ndarray, np.ndarray]:
    """Dice 2TP / (2TP + FP + FN) and IoU TP / (TP + FP + FN) of counts (arrays or sums);
    an image whose mask and prediction are both empty scores 1 (nothing to find, nothing
    claimed)."""
    tp, fp, fn = (np.asarray(x, np.float64) for x in (tp, fp, fn))
    union = tp + fp + fn
    dice = np.where(union > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 1.0)
    iou = np.where(union > 0, tp / np.maximum(union, 1), 1.0)
    return dice, iou


def segmentation_metrics(pred: np.ndarray, target: np.ndarray) -> dict:
    """Mean per-image Dice and IoU (`dice`, `iou`: what early stopping reads) and the pooled
    ones (all pixels as one image: large lesions weigh more)."""
    tp, fp, fn = mask_counts(pred, target)
    dice, iou = dice_iou(tp, fp, fn)
    pooled_dice, pooled_iou = dice_iou(tp.sum(), fp.sum(), fn.sum())
    return {"dice": float(dice.mean()), "iou": float(iou.mean()),
            "pooled_dice": float(pooled_dice), "pooled_iou": float(pooled_iou)}
