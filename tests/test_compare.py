"""Paired comparisons of two evaluations (multimodal/evaluation/compare.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from multimodal.errors import DataError
from multimodal.evaluation.compare import compare
from multimodal.evaluation.scoring import paired_difference

CLASSES = ["a", "b", "c"]


def frame(labels, probs, ids=None):
    ids = ids if ids is not None else [f"img{i}" for i in range(len(labels))]
    out = pd.DataFrame({"image_id": ids, "group_id": [f"g{i // 2}" for i in range(len(labels))],
                        "label": [CLASSES[k] for k in labels]})
    for k, c in enumerate(CLASSES):
        out[f"prob_{c}"] = probs[:, k]
        out[f"logit_{c}"] = np.log(probs[:, k])
    return out


def test_a_model_against_itself_differs_by_exactly_zero():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    probs = rng.dirichlet(np.ones(3), 60)
    r = paired_difference(labels, probs, probs, np.arange(60) // 2, n_boot=50)
    assert r["difference"] == 0 and r["ci95"] == [0.0, 0.0] and not r["excludes_zero"]


def test_a_clearly_better_model_has_an_interval_above_zero():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 90)
    guess = rng.dirichlet(np.ones(3), 90)
    right = np.full((90, 3), 0.05)
    right[np.arange(90), labels] = 0.9
    r = paired_difference(labels, guess, right, np.arange(90) // 3, n_boot=200)
    assert r["b"] == 1.0 and r["difference"] > 0.4 and r["excludes_zero"]
    assert r["ci95"][0] > 0


def test_rows_are_matched_by_id_and_must_carry_the_same_labels():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 40)
    probs = rng.dirichlet(np.ones(3), 40)
    a = frame(labels, probs)
    b = frame(labels, probs).iloc[::-1].iloc[:30]  # another order, fewer rows
    result = compare(a, b, n_boot=20)
    assert result["rows"] == 30 and result["rows_only_in_a"] == 10
    assert all(r["difference"] == 0 for r in result["metrics"].values())
    relabelled = frame((labels + 1) % 3, probs)
    with pytest.raises(DataError, match="different labels"):
        compare(a, relabelled, n_boot=5)
    with pytest.raises(DataError, match="share no image id"):
        compare(a, frame(labels, probs, ids=[f"x{i}" for i in range(40)]), n_boot=5)


def test_the_paired_balanced_accuracy_is_the_shared_metric():
    from multimodal.metrics import classification_metrics

    rng = np.random.default_rng(3)
    labels = rng.choice(4, 80, p=[0.5, 0.3, 0.2, 0.0])  # one class absent, as in small splits
    a, b = rng.dirichlet(np.ones(4), 80), rng.dirichlet(np.ones(4), 80)
    r = paired_difference(labels, a, b, np.arange(80), n_boot=10)
    assert r["a"] == pytest.approx(classification_metrics(labels, a)["balanced_accuracy"])
    assert r["b"] == pytest.approx(classification_metrics(labels, b)["balanced_accuracy"])
