"""Temperature scaling (Guo et al. 2017) and operating points chosen on validation."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from multimodal.errors import DataError


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising validation NLL of softmax(logits / T)."""
    def nll(log_t):
        lp = log_softmax(logits / np.exp(log_t), axis=1)
        return -lp[np.arange(len(labels)), labels].mean()

    result = minimize_scalar(nll, bounds=(-3, 3), method="bounded")
    return float(np.exp(result.x))


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    return softmax(logits / temperature, axis=1)


def threshold_for_sensitivity(scores: np.ndarray, truth: np.ndarray, target: float) -> float:
    """Highest threshold on `scores` whose sensitivity on `truth` reaches `target`."""
    positives = np.sort(scores[truth])[::-1]
    if len(positives) == 0:
        raise DataError("no positive examples to choose an operating point on")
    k = int(np.ceil(target * len(positives)))
    return float(positives[min(k, len(positives)) - 1])


def operating_point(scores, truth, threshold: float) -> dict:
    flagged = scores >= threshold
    return {"threshold": float(threshold),
            "sensitivity": float(flagged[truth].mean()) if truth.any() else float("nan"),
            "specificity": float((~flagged[~truth]).mean()) if (~truth).any() else float("nan"),
            "flagged_share": float(flagged.mean())}
