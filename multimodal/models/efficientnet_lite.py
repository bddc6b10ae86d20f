"""EfficientNet-Lite0/1/2 (Tan & Le 2019; the 'lite' variants for mobile accelerators).

Lite differs from EfficientNet-B: no squeeze-excite, ReLU6 instead of swish,
and the stem (32) and head (1280) widths and the first/last stage depths are
not scaled. TF 'SAME' padding and BatchNorm epsilon 1e-3 match the
published weights (see `multimodal.models.pretrained`); inputs are expected
as (x - 127) / 128 (`data.normalize: minus1_1` is within 0.4% of that).
Module names follow the lukemelas EfficientNet-PyTorch layout so weights map
one to one.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from flax import nnx

from multimodal.models.layers import Conv, DepthwiseConv, same_padding
from multimodal.models.registry import register_encoder

# (kernel, stride, expand ratio, output filters, repeats) of EfficientNet-B0
BASE_BLOCKS = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
               (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
# name: (width multiplier, depth multiplier, resolution, dropout)
VARIANTS = {"lite0": (1.0, 1.0, 224, 0.2), "lite1": (1.0, 1.1, 240, 0.2),
            "lite2": (1.1, 1.2, 260, 0.3)}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    filters *= width
    new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if new < 0.9 * filters:
        new += divisor
    return int(new)


def _bn(ch, dtype, rngs):
    return nnx.BatchNorm(ch, momentum=0.99, epsilon=1e-3, dtype=dtype, rngs=rngs)


class SameConv(nnx.Module):
    """Convolution with TF 'SAME' padding computed from the input size."""

    def __init__(self, cin, cout, k, stride=1, *, dtype, rngs):
        self.conv = Conv(cin, cout, (k, k), (stride, stride), padding="VALID",
                             use_bias=False, dtype=dtype, rngs=rngs)
        self.k, self.stride = k, stride

    def __call__(self, x):
        if self.k == 1 and self.stride == 1:
            return self.conv(x)
        pads = [same_padding(x.shape[i], self.k, self.stride) for i in (1, 2)]
        return self.conv(jnp.pad(x, [(0, 0), *pads, (0, 0)]))


class MBConv(nnx.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project (no SE), ReLU6."""

    def __init__(self, cin, cout, k, stride, expand, *, depthwise_impl, dtype, rngs):
        mid = cin * expand
        self.expand_conv = SameConv(cin, mid, 1, dtype=dtype, rngs=rngs) if expand != 1 else None
        self.bn0 = _bn(mid, dtype, rngs) if expand != 1 else None
        self.depthwise_conv = DepthwiseConv(mid, k, stride, impl=depthwise_impl, dtype=dtype,
                                            rngs=rngs)
        self.bn1 = _bn(mid, dtype, rngs)
        self.project_conv = SameConv(mid, cout, 1, dtype=dtype, rngs=rngs)
        self.bn2 = _bn(cout, dtype, rngs)
        self.residual = stride == 1 and cin == cout

    def __call__(self, x):
        y = x
        if self.expand_conv is not None:
            y = nnx.relu6(self.bn0(self.expand_conv(y)))
        y = nnx.relu6(self.bn1(self.depthwise_conv(y)))
        y = self.bn2(self.project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(nnx.Module):
    def __init__(self, variant="lite0", *, width=None, depth=None, dropout=None,
                 depthwise_impl="shift", dtype=jnp.float32, rngs: nnx.Rngs):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, not {variant!r}")
        w, d, self.resolution, default_dropout = VARIANTS[variant]
        w, d = width or w, depth or d
        self.conv_stem = SameConv(3, 32, 3, 2, dtype=dtype, rngs=rngs)
        self.bn0 = _bn(32, dtype, rngs)
        blocks, cin = [], 32
        for i, (k, s, e, filters, repeats) in enumerate(BASE_BLOCKS):
            cout = round_filters(filters, w)
            if 0 < i < len(BASE_BLOCKS) - 1:  # lite keeps the first and last stage depths
                repeats = int(math.ceil(repeats * d))
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, k, s if r == 0 else 1, e,
                                     depthwise_impl=depthwise_impl, dtype=dtype, rngs=rngs))
                cin = cout
        self.blocks = nnx.List(blocks)
        self.conv_head = SameConv(cin, 1280, 1, dtype=dtype, rngs=rngs)
        self.bn1 = _bn(1280, dtype, rngs)
        self.dropout = nnx.Dropout(default_dropout if dropout is None else dropout)
        self.embed_dim = 1280
        self.layer_order = ("conv_stem", "bn0", "blocks", "conv_head", "bn1")

    def features(self, x, upto: int | None = None):
        """Activations after the stem and the first `upto` blocks (all when None)."""
        x = nnx.relu6(self.bn0(self.conv_stem(x)))
        for block in self.blocks[:upto]:
            x = block(x)
        return x

    def head(self, x, *, start: int | None = None, rngs=None):
        """Blocks from `start` on, the 1x1 head, pooling and dropout."""
        for block in self.blocks[start:] if start is not None else ():
            x = block(x)
        x = nnx.relu6(self.bn1(self.conv_head(x)))
        return self.dropout(x.mean(axis=(1, 2)), rngs=rngs)

    def __call__(self, x, *, rngs=None):
        return self.head(self.features(x), rngs=rngs)

    def folded(self) -> EfficientNetLite:
        """Inference copy with BatchNorm folded into the kernels: 15% faster on CPU
        (benchmarks/feature_extraction.py); feature extraction uses it."""
        return fold_batchnorm(self)


class _Shift(nnx.Module):
    """What a BatchNorm leaves behind once folded into the convolution before it."""

    def __init__(self, bias):
        self.bias = nnx.Param(bias)

    def __call__(self, x):
        return x + self.bias[...].astype(x.dtype)


def fold_batchnorm(encoder: EfficientNetLite) -> EfficientNetLite:
    """An inference-only copy with every BatchNorm folded into its convolution's kernel.

    BN(conv(x, W)) = conv(x, W * s) + (beta - mean * s), s = gamma / sqrt(var + eps),
    per output channel (the kernels' last axis, depthwise ones included).
    """
    folded = nnx.clone(encoder)
    folded.eval()

    def fold(conv, owner, name):
        bn = getattr(owner, name)
        scale = bn.scale[...] / jnp.sqrt(bn.var[...] + bn.epsilon)
        conv.kernel.value = conv.kernel[...] * scale
        setattr(owner, name, _Shift(bn.bias[...] - bn.mean[...] * scale))

    fold(folded.conv_stem.conv, folded, "bn0")
    for block in folded.blocks:
        if block.expand_conv is not None:
            fold(block.expand_conv.conv, block, "bn0")
        fold(block.depthwise_conv, block, "bn1")
        fold(block.project_conv.conv, block, "bn2")
    fold(folded.conv_head.conv, folded, "bn1")
    return folded


def _factory(variant):
    def build(*, dtype=jnp.float32, rngs, dropout=None, width=None, depth=None,
              depthwise_impl="shift"):
        return EfficientNetLite(variant, width=width, depth=depth, dropout=dropout,
                                depthwise_impl=depthwise_impl, dtype=dtype, rngs=rngs)
    return build


for _name in VARIANTS:
    register_encoder(f"efficientnet_{_name}")(_factory(_name))
