"""The course reports' small CNNs, as image encoders.

- `small_cnn`: 4 conv blocks (32-64-128-256 filters, 3x3, ReLU, 2x2 max-pool),
  global average pooling, then a dense layer with dropout (the reports' head).
- `small_cnn_bn`: 3 blocks (32-64-128) with BatchNorm after each convolution.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from multimodal.models.layers import ConvReLU, Linear, max_pool
from multimodal.models.registry import DefaultCfg, register_family


class ConvBlock(ConvReLU):
    """Convolution, optional BatchNorm, ReLU, 2x2 max-pool."""

    def __call__(self, x):
        return max_pool(super().__call__(x), 2, 2)


class SmallCNN(nnx.Module):
    def __init__(self, widths=(32, 64, 128, 256), *, batch_norm=False, dense=256, dropout=0.3,
                 dtype=jnp.float32, rngs: nnx.Rngs):
        chans = (3, *widths)
        self.blocks = nnx.List([ConvBlock(a, b, batch_norm=batch_norm, dtype=dtype, rngs=rngs)
                                for a, b in zip(chans[:-1], chans[1:])])
        self.dense = Linear(widths[-1], dense, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)
        self.embed_dim = dense
        self.layer_order = ("blocks", "dense")

    def __call__(self, x, *, rngs=None):
        for block in self.blocks:
            x = block(x)
        x = x.mean(axis=(1, 2))
        return self.dropout(nnx.relu(self.dense(x)), rngs=rngs)


# from scratch: dataset statistics, the configs' small images
SMALL_CNN = register_family("small_cnn", modules=(SmallCNN,), default_cfg=DefaultCfg(64))


@SMALL_CNN.register
def small_cnn(*, dtype=jnp.float32, rngs, dropout=0.3, dense=256, widths=(32, 64, 128, 256)):
    return SmallCNN(tuple(widths), batch_norm=False, dense=dense, dropout=dropout, dtype=dtype,
                    rngs=rngs)


@SMALL_CNN.register
def small_cnn_bn(*, dtype=jnp.float32, rngs, dropout=0.3, dense=128, widths=(32, 64, 128)):
    return SmallCNN(tuple(widths), batch_norm=True, dense=dense, dropout=dropout, dtype=dtype,
                    rngs=rngs)
