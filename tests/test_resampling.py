"""The vectorised group bootstrap (multimodal/evaluation/resampling.py) against the loop it
replaced: the same draws, so the same resamples, so every interval equal up to rounding."""

from __future__ import annotations

import numpy as np
import pytest

from multimodal.evaluation import resampling
from multimodal.evaluation.scoring import (bootstrap_intervals, paired_difference, per_class,
                                           point_metrics)
from multimodal.metrics import classification_metrics


def _reference_samples(labels, probs, groups, n_boot, seed, classes):
    """The loop the module replaced: rows of the drawn groups stacked, sklearn on each."""
    rng = np.random.default_rng(seed)
    unique, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(unique))]
    samples = {}
    for _ in range(n_boot):
        idx = np.concatenate([members[g] for g in rng.integers(len(unique), size=len(unique))])
        values = point_metrics(labels[idx], probs[idx])
        for row in per_class(labels[idx], probs[idx], classes):
            values[f"recall[{row['class']}]"] = row["recall"]
            values[f"auc[{row['class']}]"] = row["auc"]
        for key, value in values.items():
            samples.setdefault(key, []).append(value)
    return {k: np.asarray(v, np.float64) for k, v in samples.items()}


def _data(seed=0, n=240, k=4):
    """Uneven groups, a rare class absent from some resamples, tied scores, a class never
    predicted."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n // 3), rng.integers(1, 6, n // 3))[:n]
    labels = rng.choice(k - 1, len(groups), p=[0.55, 0.3, 0.15])
    labels[groups < 2] = k - 1  # the rare class: two groups, missed by about 1 resample in 8
    logits = rng.normal(size=(len(groups), k)) + 1.5 * np.eye(k)[labels]
    logits[:, 3] -= 3  # class 3 almost never the top class
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, np.round(probs, 2) / np.round(probs, 2).sum(1, keepdims=True), groups


@pytest.mark.parametrize("seed", [0, 1])
def test_every_resampled_metric_equals_the_loop_it_replaced(seed):
    labels, probs, groups = _data(seed)
    classes = ["a", "b", "c", "d"]
    want = _reference_samples(labels, probs, groups, 60, seed, classes)
    got = resampling.bootstrap_samples(labels, probs, groups, 60, seed, classes)
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-9, atol=1e-12, err_msg=key)
    assert np.isnan(want["recall[d]"]).any()  # the data reached the absent-class branch


def test_blocks_of_resamples_draw_what_one_block_draws(monkeypatch):
    labels, probs, groups = _data(2)
    whole = resampling.bootstrap_samples(labels, probs, groups, 25, 3)
    monkeypatch.setattr(resampling, "_BLOCK_CELLS", len(labels) * 4)  # blocks of 4 resamples
    blocked = resampling.bootstrap_samples(labels, probs, groups, 25, 3)
    for key in whole:  # the same resamples; sums in another blocking may round differently
        np.testing.assert_allclose(whole[key], blocked[key], rtol=1e-12, atol=1e-15)


def test_intervals_and_paired_differences_match_the_loop():
    labels, probs_a, groups = _data(4)
    probs_b = np.roll(probs_a, 1, axis=1) * 0.3 + probs_a * 0.7  # another model, same rows
    want = _reference_samples(labels, probs_a, groups, 40, 0, range(4))
    got = bootstrap_intervals(labels, probs_a, groups, 40, 0)
    for key, values in want.items():
        if not np.all(np.isnan(values)):
            assert got[key] == pytest.approx([np.nanpercentile(values, 2.5),
                                               np.nanpercentile(values, 97.5)], abs=1e-9), key
    unique, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(unique))]
    for metric in ("balanced_accuracy", "macro_auc", "accuracy"):
        rng = np.random.default_rng(7)
        diffs = []
        for _ in range(30):
            idx = np.concatenate([members[g] for g in rng.integers(len(unique),
                                                                   size=len(unique))])
            diffs.append(classification_metrics(labels[idx], probs_b[idx])[metric]
                         - classification_metrics(labels[idx], probs_a[idx])[metric])
        out = paired_difference(labels, probs_a, probs_b, groups, metric, 30, seed=7)
        assert out["ci95"] == pytest.approx(list(np.nanpercentile(diffs, [2.5, 97.5])),
                                            abs=1e-9), metric
        full = classification_metrics(labels, probs_b)[metric] - \
            classification_metrics(labels, probs_a)[metric]
        assert out["difference"] == pytest.approx(full, abs=1e-12)


def test_a_resample_of_every_group_once_is_the_point_estimate():
    labels, probs, groups = _data(6)
    got = resampling.resampled_metrics(labels, probs, np.ones((1, len(labels))))
    point = point_metrics(labels, probs)
    for key, value in point.items():
        assert got[key][0] == pytest.approx(value, abs=1e-9), key


def test_edge_cases_equal_the_loop_float32_one_class_resamples_many_classes():
    """float32 probabilities as predictions.csv gives them (ECE then differs at float32
    rounding: the loop averaged in float32); three groups, so some resamples hold one class
    (macro AUC and per-class AUC undefined); 30 classes, most absent from any resample."""
    rng = np.random.default_rng(8)
    labels = np.array([0] * 5 + [1] * 4 + [2] * 3)
    groups = np.repeat([0, 1, 2], [5, 4, 3])
    probs = rng.dirichlet(np.ones(3), len(labels)).astype(np.float32)
    want = _reference_samples(labels, probs, groups, 40, 1, range(3))
    got = resampling.bootstrap_samples(labels, probs, groups, 40, 1, range(3))
    assert np.isnan(want["macro_auc"]).any() and np.isnan(want["auc[0]"]).any()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-9 if key != "ece" else 1e-5,
                                   atol=1e-12 if key != "ece" else 1e-6, err_msg=key)
    labels = rng.integers(0, 30, 300)
    probs = rng.dirichlet(np.ones(30), 300).astype(np.float32)
    groups = np.arange(300) // 2
    want = _reference_samples(labels, probs, groups, 10, 2, range(30))
    got = resampling.bootstrap_samples(labels, probs, groups, 10, 2, range(30))
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-9 if key != "ece" else 1e-5,
                                   atol=1e-12 if key != "ece" else 1e-6, err_msg=key)
