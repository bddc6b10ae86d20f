"""Corruption augmentation: the corruption benchmark's families (shift.py) as a training op,
so a model sees other cameras while it learns (MedMNIST-C, Di Salvo et al. 2024: training with
domain-specific corruptions beats generic augmentation).

    augment:
      - corrupt: {p: 0.5, severities: [1, 3], hold_out: [vignette, levels]}

With probability `p` one family is drawn (uniformly, from `families`, default every family
but squash, minus `hold_out`) and applied at a strength drawn uniformly between its
parameters at the lowest and the highest of `severities` (blur's radius and alias each, JPEG's
quality rounded). The test copies use the exact level parameters and their own seeds, so the
training draws are not the test pictures' draws. Held-out families are never applied, so the
benchmark can report robustness to shifts never trained on apart. Squash is left out: it
changes the picture's shape, which the `squash` op already covers as geometry.
"""

from __future__ import annotations

import numpy as np

# shift's names are read at call time, not import time: shift imports augment, which imports
# this module to register the op, so shift may be half-initialised here
from multimodal.data.images import shift
from multimodal.data.images.augment import register
from multimodal.errors import ConfigError


def default_families() -> tuple[str, ...]:
    return tuple(f for f in shift.FAMILIES if f != "squash")


def check(p=0.5, severities=(1, 2, 3), families=None, hold_out=()) -> None:
    """The op's options, refused at config time: p in [0, 1], severities among 1-5,
    known families other than squash, at least one family left after the held-out ones."""
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p <= 1:
        raise ConfigError(f"data.augment corrupt: p {p!r} must be a number in [0, 1]")
    if (not isinstance(severities, (list, tuple)) or not severities
            or any(s not in (1, 2, 3, 4, 5) or isinstance(s, bool) for s in severities)):
        raise ConfigError(f"data.augment corrupt: severities {severities!r} must be a list of "
                          "levels 1-5", "e.g. severities: [1, 3]")
    known = default_families()
    for key, names in (("families", families or known), ("hold_out", hold_out)):
        if not isinstance(names, (list, tuple)):
            raise ConfigError(f"data.augment corrupt: {key} {names!r} must be a list")
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ConfigError(f"data.augment corrupt: {key} {unknown} not among "
                              f"{list(known)}" + (" (squash is the `squash` op)"
                                                  if "squash" in unknown else ""))
    if not set(families or known) - set(hold_out):
        raise ConfigError("data.augment corrupt: every family is held out",
                          "hold out fewer families")


def _strength(family: str, severities, rng):
    levels = shift.SEVERITY[family]
    low, high = levels[min(severities) - 1], levels[max(severities) - 1]
    t = rng.random()
    if isinstance(low, tuple):
        return tuple(a + t * (b - a) for a, b in zip(low, high))
    value = low + t * (high - low)
    return int(round(value)) if family == "jpeg" else value


@register("corrupt", random=True, check=check)
def corrupt(image, rng, p=0.5, severities=(1, 2, 3), families=None, hold_out=()):
    if rng.random() >= p:
        return image
    allowed = [f for f in (families or default_families()) if f not in set(hold_out)]
    family = allowed[int(rng.integers(len(allowed)))]
    out, _ = shift._SEVERED[family](np.asarray(image), _strength(family, severities, rng), rng)
    return out
