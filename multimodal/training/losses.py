"""Classification losses over integer labels, with per-example weights (padding = 0)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights normalised to mean 1 over the training examples."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (n_classes * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32)


def cross_entropy(logits, labels, *, label_smoothing=0.0, weights=None, example_mask=None):
    n = logits.shape[-1]
    targets = jax.nn.one_hot(labels, n)
    if label_smoothing:
        targets = targets * (1 - label_smoothing) + label_smoothing / n
    per_example = -(targets * jax.nn.log_softmax(logits)).sum(-1)
    return _reduce(per_example, labels, weights, example_mask)


def focal(logits, labels, *, gamma=2.0, weights=None, example_mask=None, label_smoothing=0.0):
    """Focal loss (Lin et al. 2017): down-weights well-classified examples."""
    log_p = jax.nn.log_softmax(logits)
    log_pt = jnp.take_along_axis(log_p, labels[:, None], axis=-1)[:, 0]
    per_example = -((1 - jnp.exp(log_pt)) ** gamma) * log_pt
    return _reduce(per_example, labels, weights, example_mask)


def _reduce(per_example, labels, weights, example_mask):
    w = jnp.ones_like(per_example)
    if weights is not None:
        w = w * jnp.asarray(weights)[labels]
    if example_mask is not None:
        w = w * example_mask
    return (per_example * w).sum() / jnp.maximum(w.sum(), 1e-8)
