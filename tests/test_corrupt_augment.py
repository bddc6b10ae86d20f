"""The `corrupt` augmentation (multimodal/data/images/corrupt.py): the corruption benchmark's
families applied in training, seeded, never a held-out family, strengths between the chosen
levels, bad options refused when the config is read."""

from __future__ import annotations

import numpy as np
import pytest

from multimodal.data.images import corrupt, shift
from multimodal.data.images.augment import apply_ops, parse_ops
from multimodal.errors import ConfigError


def picture(seed=0, h=64, w=80):
    rng = np.random.default_rng(seed)
    base = rng.uniform(60, 200, (1, 1, 3)) + 30 * rng.normal(size=(h, w, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def test_seeded_deterministic_training_only_and_shape_kept():
    ops = parse_ops([{"corrupt": {"p": 1.0}}])
    image = picture()
    a = apply_ops(image, ops, np.random.default_rng(3), train=True)
    b = apply_ops(image, ops, np.random.default_rng(3), train=True)
    assert np.array_equal(a, b) and a.shape == image.shape and a.dtype == np.uint8
    assert np.array_equal(apply_ops(image, ops, np.random.default_rng(3), train=False), image)
    assert np.array_equal(apply_ops(image, parse_ops([{"corrupt": {"p": 0.0}}]),
                                    np.random.default_rng(3), train=True), image)


def test_held_out_families_are_never_drawn_and_the_others_all_are(monkeypatch):
    drawn = []

    def spy(family, fn):
        def run(x, level, rng):
            drawn.append(family)
            return fn(x, level, rng)
        return run

    for family in corrupt.default_families():
        monkeypatch.setitem(shift._SEVERED, family, spy(family, shift._SEVERED[family]))
    ops = parse_ops([{"corrupt": {"p": 1.0, "hold_out": ["noise", "levels"]}}])
    image = picture(h=32, w=40)
    for seed in range(200):
        apply_ops(image, ops, np.random.default_rng(seed), train=True)
    assert set(drawn) == set(shift.FAMILIES) - {"noise", "levels", "squash"}


@pytest.mark.parametrize("family", ["blur", "noise", "jpeg", "black_corners"])
def test_strengths_lie_between_the_chosen_levels(family):
    rng = np.random.default_rng(0)
    levels = shift.SEVERITY[family]
    for _ in range(50):
        value = corrupt._strength(family, [2, 4], rng)
        for got, a, b in zip(np.atleast_1d(value), np.atleast_1d(levels[1]),
                             np.atleast_1d(levels[3])):
            assert min(a, b) <= got <= max(a, b)
    assert isinstance(corrupt._strength("jpeg", [1, 5], rng), int)


@pytest.mark.parametrize("options, message", [
    ({"p": 1.5}, "p 1.5"),
    ({"severities": [0, 3]}, "severities"),
    ({"severities": []}, "severities"),
    ({"families": ["squash"]}, "the `squash` op"),
    ({"hold_out": ["glare"]}, "not among"),
    ({"families": ["blur"], "hold_out": ["blur"]}, "every family is held out"),
])
def test_bad_options_are_refused_when_the_config_is_read(options, message):
    with pytest.raises(ConfigError, match=message):
        parse_ops([{"corrupt": options}])
