"""Metadata MLP and the classifier that fuses it with an image encoder.

One code path for the three modalities:
- `image`: image encoder -> linear head;
- `meta`: metadata MLP -> linear head;
- `image+meta`: both, fused by
  - `concat`: late fusion, [image embedding, metadata embedding] -> head;
  - `film`: metadata scales and shifts the image embedding (MetaBlock/FiLM style);
  - `logit`: image head + learned weight * metadata head (logit-level fusion).

Cached features: `features_from` is a call argument (static under jit); the trainer
passes it for a run trained on a feature cache, and `predict_split` while it predicts
from one. With it set ("pooled", or a block index k) the `image` argument holds
the encoder's cached output (pooled embeddings, or the activations after block
k, run through the blocks above it), so the cached part of the encoder is not
run again. Evaluating such a run (and ensembling it) reads the same cache while
it exists, unless flip TTA or another dataset is asked for: then `features_from`
is None and the same model takes images.

Missing metadata: `metadata_mask` is 0 for an example whose metadata is absent;
its metadata input is zeroed and the mask is given to the MLP, so the model
knows. Modality dropout hides metadata from a random share of training
examples, so an image+meta model still predicts well without metadata.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from multimodal.config import FUSIONS, MODALITIES
from multimodal.models.layers import Linear
from multimodal.models.registry import create_encoder
from multimodal.errors import ConfigError



class MetadataMLP(nnx.Module):
    """Metadata vector (+ its presence flag) -> embedding."""

    def __init__(self, meta_dim, hidden=(64, 64), dropout=0.1, *, dtype=jnp.float32, rngs):
        dims = (meta_dim + 1, *hidden)
        self.layers = nnx.List([Linear(a, b, dtype=dtype, rngs=rngs)
                                for a, b in zip(dims[:-1], dims[1:])])
        self.dropout = nnx.Dropout(dropout)
        self.embed_dim = dims[-1]

    def __call__(self, metadata, mask, *, rngs=None):
        x = jnp.concatenate([metadata * mask[:, None], mask[:, None]], axis=-1)
        for layer in self.layers:
            x = self.dropout(nnx.relu(layer(x)), rngs=rngs)
        return x


class ModalityDropout(nnx.Module):
    """Zero a random share of the metadata masks in training."""

    def __init__(self, rate: float):
        self.rate = rate
        self.deterministic = False  # set by model.train() / model.eval()

    def __call__(self, mask, *, rngs=None):
        if self.deterministic or self.rate == 0:
            return mask
        if rngs is None:
            raise ValueError("modality dropout in training needs rngs (a 'dropout' stream)")
        keep = jax.random.bernoulli(rngs.dropout(), 1 - self.rate, mask.shape)
        return mask * keep.astype(mask.dtype)


class Classifier(nnx.Module):
    def __init__(self, num_classes: int, modality: str = "image+meta", *, meta_dim: int = 0,
                 encoder: str = "small_cnn", encoder_options: dict | None = None,
                 fusion: str = "concat", meta_hidden=(64, 64), dropout: float = 0.3,
                 modality_dropout: float = 0.0, dtype=jnp.float32, rngs: nnx.Rngs):
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, not {modality!r}")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, not {fusion!r}")
        uses_image, uses_meta = modality in ("image", "image+meta"), modality in ("meta",
                                                                                 "image+meta")
        if uses_meta and meta_dim == 0:
            raise ConfigError(f"modality {modality!r} needs metadata columns (meta_dim is 0)")
        self.modality, self.fusion = modality, fusion
        self.encoder = (create_encoder(encoder, dtype=dtype, rngs=rngs, **(encoder_options or {}))
                        if uses_image else None)
        self.meta = (MetadataMLP(meta_dim, tuple(meta_hidden), dropout=min(dropout, 0.2),
                                 dtype=dtype, rngs=rngs) if uses_meta else None)
        self.modality_dropout = ModalityDropout(modality_dropout if modality == "image+meta"
                                                else 0.0)
        self.dropout = nnx.Dropout(dropout)
        img_dim = self.encoder.embed_dim if uses_image else 0
        meta_emb = self.meta.embed_dim if uses_meta else 0
        if modality == "image+meta" and fusion == "film":
            self.film = Linear(meta_emb, 2 * img_dim, dtype=dtype, rngs=rngs,
                                   kernel_init=nnx.initializers.zeros)  # starts as identity
            head_in = img_dim
        elif modality == "image+meta" and fusion == "logit":
            self.meta_head = Linear(meta_emb, num_classes, dtype=dtype, rngs=rngs)
            self.meta_weight = nnx.Param(jnp.zeros(()))  # sigmoid(0) = 0.5
            head_in = img_dim
        else:
            head_in = img_dim + meta_emb
        self.head = Linear(head_in, num_classes, dtype=dtype, rngs=rngs)

    def embed(self, image, metadata, metadata_mask, *, features_from=None, rngs=None):
        """Pre-head features (what stacking and feature caches use)."""
        parts = []
        if self.encoder is not None:
            if features_from is None:
                parts.append(self.encoder(image, rngs=rngs))
            elif features_from == "pooled":
                parts.append(image)
            else:
                parts.append(self.encoder.head(image, start=features_from, rngs=rngs))
        if self.meta is not None:
            mask = self.modality_dropout(metadata_mask, rngs=rngs)
            parts.append(self.meta(metadata, mask, rngs=rngs))
        return parts

    def __call__(self, image, metadata, metadata_mask, *, features_from=None, rngs=None):
        """Logits. `features_from` ("pooled" or a block index k): `image` holds a feature
        cache's rows (pooled embeddings, or activations after block k) instead of images."""
        parts = self.embed(image, metadata, metadata_mask, features_from=features_from,
                           rngs=rngs)
        if self.modality == "image+meta" and self.fusion == "film":
            scale, shift = jnp.split(self.film(parts[1]), 2, axis=-1)
            x = parts[0] * (1 + scale) + shift
        elif self.modality == "image+meta" and self.fusion == "logit":
            image_logits = self.head(self.dropout(parts[0], rngs=rngs))
            weight = jax.nn.sigmoid(self.meta_weight[...])
            return (image_logits + weight * self.meta_head(parts[1])).astype(jnp.float32)
        else:
            x = jnp.concatenate(parts, axis=-1)
        return self.head(self.dropout(x, rngs=rngs)).astype(jnp.float32)
