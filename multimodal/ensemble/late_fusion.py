"""Weighted late fusion: a convex combination of member probabilities fitted on validation."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize


def combine(probs: list[np.ndarray], weights) -> np.ndarray:
    return np.tensordot(np.asarray(weights), np.stack(probs), axes=1)


def fit_weights(probs: list[np.ndarray], labels: np.ndarray,
                class_balanced: bool = True) -> np.ndarray:
    """Weights on the simplex minimising the (class-balanced) log loss on validation.

    Parametrised as softmax(theta), so they stay positive and sum to one.
    """
    if len(probs) == 1:
        return np.ones(1)
    stack = np.clip(np.stack(probs), 1e-7, 1.0)
    picked = stack[:, np.arange(len(labels)), labels]  # [members, n]
    counts = np.bincount(labels, minlength=stack.shape[2]).astype(float)
    w_row = (1.0 / counts[labels]) if class_balanced else np.ones(len(labels))
    w_row = w_row / w_row.sum()

    def loss(theta):
        w = np.exp(theta - theta.max())
        w /= w.sum()
        return -(w_row * np.log(w @ picked)).sum()

    best = minimize(loss, np.zeros(len(probs)), method="Nelder-Mead",
                    options={"xatol": 1e-4, "fatol": 1e-7})
    w = np.exp(best.x - best.x.max())
    return w / w.sum()
