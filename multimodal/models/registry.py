"""Image encoders by name (timm-style): `create_encoder("resnet18", rngs=...)`.

Every encoder is an `nnx.Module` with the constructor `(*, dtype, rngs, **options)`,
attributes `embed_dim` and `layer_order` (top-level layers in forward order, used
by two-stage fine-tuning), and `__call__(images, *, rngs=None) -> [B, embed_dim]`.
"""

from __future__ import annotations

from typing import Callable

ENCODERS: dict[str, Callable] = {}


def register_encoder(name: str):
    def wrap(factory):
        if name in ENCODERS:
            raise ValueError(f"encoder {name!r} registered twice")
        ENCODERS[name] = factory
        return factory
    return wrap


def _register_families() -> None:
    """Import every family module once; each registers its encoders."""
    from multimodal.models import (efficientnet_lite, inception, resnet,  # noqa: F401
                                   small_cnn, vgg, xception)


def create_encoder(name: str, **kwargs):
    _register_families()

    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; known: {sorted(ENCODERS)}")
    return ENCODERS[name](**kwargs)
