"""VGG-16 and VGG-19 (Simonyan & Zisserman 2015) with global average pooling.

The convolutional trunk as in Keras applications; the classifier is the
shared fusion head (transfer-learning reports replaced VGG's dense layers).
`batch_norm=True` gives the BN variant; `width` scales the channels.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from multimodal.models.layers import ConvReLU, max_pool
from multimodal.models.registry import DefaultCfg, register_family

PLANS = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}


class VGG(nnx.Module):
    def __init__(self, depth=16, *, width=1.0, batch_norm=False, dropout=0.0, dtype=jnp.float32,
                 rngs: nnx.Rngs):
        stages, cin = [], 3
        for stage, n in enumerate(PLANS[depth]):
            ch = max(8, int(min(512, 64 * 2 ** stage) * width))
            layers = []
            for _ in range(n):
                layers.append(ConvReLU(cin, ch, batch_norm=batch_norm, dtype=dtype, rngs=rngs))
                cin = ch
            stages.append(nnx.List(layers))
        self.stages = nnx.List(stages)
        self.dropout = nnx.Dropout(dropout)
        self.embed_dim = cin
        self.layer_order = ("stages",)

    def __call__(self, x, *, rngs=None):
        for stage in self.stages:
            for layer in stage:
                x = layer(x)
            x = max_pool(x, 2, 2)
        return self.dropout(x.mean(axis=(1, 2)), rngs=rngs)


# no pretrained weights: trained from scratch on dataset statistics, at the published size
VGG_FAMILY = register_family("vgg", modules=(VGG,), default_cfg=DefaultCfg(224))


@VGG_FAMILY.register
def vgg16(*, dtype=jnp.float32, rngs, width=1.0, batch_norm=False, dropout=0.0):
    return VGG(16, width=width, batch_norm=batch_norm, dropout=dropout, dtype=dtype, rngs=rngs)


@VGG_FAMILY.register
def vgg19(*, dtype=jnp.float32, rngs, width=1.0, batch_norm=False, dropout=0.0):
    return VGG(19, width=width, batch_norm=batch_norm, dropout=dropout, dtype=dtype, rngs=rngs)
