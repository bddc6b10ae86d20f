"""Evaluation figures: confusion matrices, ROC curves, reliability diagram."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn import metrics as skm  # noqa: E402


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def confusion(cm, classes, path: str) -> None:
    cm = np.asarray(cm, float)
    rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = 2.5 + 0.55 * len(classes)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size))
    for ax, data, title, fmt in ((axes[0], cm, "Counts", "{:.0f}"),
                                 (axes[1], rows, "Row-normalised (recall on diagonal)", "{:.2f}")):
        im = ax.imshow(data, cmap="Blues", vmin=0)
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        top = data.max() or 1
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, fmt.format(data[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if data[i, j] > 0.6 * top else "black")
        fig.colorbar(im, ax=ax, fraction=0.046)
    _save(fig, path)


def roc_curves(labels, probs, classes, path: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 5.5))
    for c, name in enumerate(classes):
        truth = labels == c
        if 0 < truth.sum() < len(labels):
            fpr, tpr, _ = skm.roc_curve(truth, probs[:, c])
            ax.plot(fpr, tpr, label=f"{name} (AUC {skm.auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("ROC, one class vs rest")
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)


def reliability(labels, probs_by_name: dict, path: str, bins: int = 10) -> None:
    """Top-class confidence vs accuracy, one line per probability set (e.g. before/after T)."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    edges = np.linspace(0, 1, bins + 1)
    for name, probs in probs_by_name.items():
        conf, correct = probs.max(1), probs.argmax(1) == labels
        which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
        xs = [conf[which == b].mean() for b in range(bins) if (which == b).any()]
        ys = [correct[which == b].mean() for b in range(bins) if (which == b).any()]
        ax.plot(xs, ys, "o-", label=name)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
    ax.set_xlabel("confidence (top class)")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability diagram")
    ax.legend(fontsize=8)
    _save(fig, path)
