"""Xception (Chollet 2017), laid out like Keras applications so its ImageNet weights map.

Entry flow (two convolutions, three residual separable blocks), middle flow
(eight residual blocks of three separable convolutions), exit flow, global
average pooling. BatchNorm epsilon 1e-3 as in Keras. `width` scales channels
and `middle_blocks` the middle flow (tests use small variants of this code).

Pretrained weights (this family's loader, `model.pretrained: path/to/file.h5`): a Keras
Xception weight file, `.h5` or a Keras 3 `.keras` zip, read with h5py
(`keras_weights.py`). Keras feeds it x / 127.5 - 1 (`data.normalize: minus1_1`).
"""

from __future__ import annotations

import os

import jax.numpy as jnp
from flax import nnx

from multimodal.errors import ConfigError
from multimodal.models.keras_weights import xception_weights
from multimodal.models.layers import Conv, max_pool, same_padding
from multimodal.models.pretrained import load_weights
from multimodal.models.registry import DefaultCfg, Weights, register_family


def _bn(ch, dtype, rngs):
    return nnx.BatchNorm(ch, momentum=0.99, epsilon=1e-3, dtype=dtype, rngs=rngs)


class SeparableConv(nnx.Module):
    """Depthwise 3x3 then pointwise 1x1, no biases (Keras SeparableConv2D)."""

    def __init__(self, cin, cout, *, dtype, rngs):
        self.depthwise = Conv(cin, cin, (3, 3), feature_group_count=cin, use_bias=False,
                                  dtype=dtype, rngs=rngs)
        self.pointwise = Conv(cin, cout, (1, 1), use_bias=False, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        return self.pointwise(self.depthwise(x))


class SepBN(nnx.Module):
    def __init__(self, cin, cout, *, dtype, rngs):
        self.sep, self.bn = SeparableConv(cin, cout, dtype=dtype, rngs=rngs), _bn(cout, dtype, rngs)

    def __call__(self, x):
        return self.bn(self.sep(x))


class DownBlock(nnx.Module):
    """[ReLU] SepBN, ReLU SepBN, max-pool 3x3/2, plus a strided 1x1 residual."""

    def __init__(self, cin, c1, c2, *, first_relu=True, dtype, rngs):
        self.first_relu = first_relu
        self.sep1 = SepBN(cin, c1, dtype=dtype, rngs=rngs)
        self.sep2 = SepBN(c1, c2, dtype=dtype, rngs=rngs)
        self.res_conv = Conv(cin, c2, (1, 1), (2, 2), use_bias=False, dtype=dtype, rngs=rngs)
        self.res_bn = _bn(c2, dtype, rngs)

    def __call__(self, x):
        residual = self.res_bn(self.res_conv(x))
        y = self.sep1(nnx.relu(x) if self.first_relu else x)
        y = self.sep2(nnx.relu(y))
        y = max_pool(y, 3, 2, tuple(same_padding(n, 3, 2) for n in y.shape[1:3]))
        return y + residual


class MiddleBlock(nnx.Module):
    def __init__(self, ch, *, dtype, rngs):
        self.seps = nnx.List([SepBN(ch, ch, dtype=dtype, rngs=rngs) for _ in range(3)])

    def __call__(self, x):
        y = x
        for sep in self.seps:
            y = sep(nnx.relu(y))
        return x + y


class Xception(nnx.Module):
    def __init__(self, *, width=1.0, middle_blocks=8, dropout=0.0, dtype=jnp.float32,
                 rngs: nnx.Rngs):
        c = lambda n: max(8, int(n * width))  # noqa: E731
        self.conv1 = Conv(3, c(32), (3, 3), (2, 2), padding="VALID", use_bias=False,
                              dtype=dtype, rngs=rngs)
        self.bn1 = _bn(c(32), dtype, rngs)
        self.conv2 = Conv(c(32), c(64), (3, 3), padding="VALID", use_bias=False, dtype=dtype,
                              rngs=rngs)
        self.bn2 = _bn(c(64), dtype, rngs)
        self.entry = nnx.List([
            DownBlock(c(64), c(128), c(128), first_relu=False, dtype=dtype, rngs=rngs),
            DownBlock(c(128), c(256), c(256), dtype=dtype, rngs=rngs),
            DownBlock(c(256), c(728), c(728), dtype=dtype, rngs=rngs)])
        self.middle = nnx.List([MiddleBlock(c(728), dtype=dtype, rngs=rngs)
                                for _ in range(middle_blocks)])
        self.exit = DownBlock(c(728), c(728), c(1024), dtype=dtype, rngs=rngs)
        self.sep3 = SepBN(c(1024), c(1536), dtype=dtype, rngs=rngs)
        self.sep4 = SepBN(c(1536), c(2048), dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)
        self.embed_dim = c(2048)
        self.layer_order = ("conv1", "bn1", "conv2", "bn2", "entry", "middle", "exit", "sep3",
                            "sep4")

    def __call__(self, x, *, rngs=None):
        x = nnx.relu(self.bn1(self.conv1(x)))
        x = nnx.relu(self.bn2(self.conv2(x)))
        for block in (*self.entry, *self.middle, self.exit):
            x = block(x)
        x = nnx.relu(self.sep3(x))
        x = nnx.relu(self.sep4(x))
        return self.dropout(x.mean(axis=(1, 2)), rngs=rngs)


def _is_keras_file(name: str) -> bool:
    return name.endswith((".h5", ".keras"))


def _check_keras(name: str, encoder_name: str) -> None:
    if not os.path.exists(name):
        raise ConfigError(f"model.pretrained: no Keras weight file {name}")


def _load_keras(encoder, name: str) -> list[str]:
    if not os.path.exists(name):
        raise FileNotFoundError(f"no Keras weight file {name}")
    return load_weights(encoder, xception_weights(name, len(encoder.middle)))


XCEPTION = register_family(
    "xception", modules=(Xception,),
    default_cfg=DefaultCfg(299, "minus1_1", mean=(127.5,) * 3, std=(127.5,) * 3),
    weights=Weights("the path of a Keras Xception weight file (.h5, or a Keras 3 .keras zip)",
                    claims=_is_keras_file, check=_check_keras, load=_load_keras))


@XCEPTION.register
def xception(*, dtype=jnp.float32, rngs, width=1.0, middle_blocks=8, dropout=0.0):
    return Xception(width=width, middle_blocks=middle_blocks, dropout=dropout, dtype=dtype,
                    rngs=rngs)
