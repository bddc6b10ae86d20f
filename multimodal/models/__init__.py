"""Models: image encoders by name, the metadata MLP and fusion classifiers."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from multimodal.config import expand

from multimodal.models.fusion import Classifier
from multimodal.models.registry import ENCODERS, _register_families, create_encoder

_register_families()  # ENCODERS lists every family from the first import on

__all__ = ["Classifier", "ENCODERS", "build_model", "create_encoder"]


def build_model(model_cfg, modality: str, num_classes: int, meta_dim: int, seed: int = 0
                ) -> Classifier:
    """The classifier a config describes (`model_cfg` is a `ModelConfig`).

    With `model_cfg.pretrained` the image encoder starts from ImageNet weights.
    """
    model = Classifier(
        num_classes, modality, meta_dim=meta_dim, encoder=model_cfg.encoder,
        encoder_options=model_cfg.encoder_options, fusion=model_cfg.fusion,
        meta_hidden=tuple(model_cfg.meta_hidden), dropout=model_cfg.dropout,
        modality_dropout=model_cfg.modality_dropout,
        dtype=jnp.bfloat16 if model_cfg.dtype == "bfloat16" else jnp.float32,
        rngs=nnx.Rngs(seed))
    if model_cfg.pretrained and model.encoder is not None:
        from multimodal.models.pretrained import load_pretrained_encoder

        load_pretrained_encoder(model.encoder, expand(model_cfg.pretrained))
    return model
