"""ResNet v1 (He et al. 2016: 18 basic-block, 50 bottleneck) and ResNet-50 v2 (pre-activation).

`width` scales every stage's channels (1.0 = the published networks); tests
use narrow variants of the same code.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from multimodal.models.layers import Conv, max_pool
from multimodal.models.registry import DefaultCfg, register_family


def _bn(ch, dtype, rngs):
    return nnx.BatchNorm(ch, momentum=0.9, epsilon=1e-5, dtype=dtype, rngs=rngs)


def _conv(cin, cout, k, stride, dtype, rngs):
    return Conv(cin, cout, (k, k), (stride, stride), padding=((k // 2, k // 2),) * 2,
                    use_bias=False, dtype=dtype, rngs=rngs)


class BasicBlock(nnx.Module):
    expansion = 1

    def __init__(self, cin, ch, stride, *, dtype, rngs):
        self.conv1, self.bn1 = _conv(cin, ch, 3, stride, dtype, rngs), _bn(ch, dtype, rngs)
        self.conv2, self.bn2 = _conv(ch, ch, 3, 1, dtype, rngs), _bn(ch, dtype, rngs)
        self.proj = (nnx.Sequential(_conv(cin, ch, 1, stride, dtype, rngs), _bn(ch, dtype, rngs))
                     if stride != 1 or cin != ch else None)

    def __call__(self, x):
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return nnx.relu(y + (self.proj(x) if self.proj is not None else x))


class Bottleneck(nnx.Module):
    expansion = 4

    def __init__(self, cin, ch, stride, *, dtype, rngs):
        out = ch * 4
        self.conv1, self.bn1 = _conv(cin, ch, 1, 1, dtype, rngs), _bn(ch, dtype, rngs)
        self.conv2, self.bn2 = _conv(ch, ch, 3, stride, dtype, rngs), _bn(ch, dtype, rngs)
        self.conv3, self.bn3 = _conv(ch, out, 1, 1, dtype, rngs), _bn(out, dtype, rngs)
        self.proj = (nnx.Sequential(_conv(cin, out, 1, stride, dtype, rngs), _bn(out, dtype, rngs))
                     if stride != 1 or cin != out else None)

    def __call__(self, x):
        y = nnx.relu(self.bn1(self.conv1(x)))
        y = nnx.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return nnx.relu(y + (self.proj(x) if self.proj is not None else x))


class PreActBottleneck(nnx.Module):
    """v2: BN-ReLU before each convolution; the identity path stays clean."""
    expansion = 4

    def __init__(self, cin, ch, stride, *, dtype, rngs):
        out = ch * 4
        self.bn1, self.conv1 = _bn(cin, dtype, rngs), _conv(cin, ch, 1, 1, dtype, rngs)
        self.bn2, self.conv2 = _bn(ch, dtype, rngs), _conv(ch, ch, 3, stride, dtype, rngs)
        self.bn3, self.conv3 = _bn(ch, dtype, rngs), _conv(ch, out, 1, 1, dtype, rngs)
        self.proj = _conv(cin, out, 1, stride, dtype, rngs) if stride != 1 or cin != out else None

    def __call__(self, x):
        pre = nnx.relu(self.bn1(x))
        shortcut = self.proj(pre) if self.proj is not None else x
        y = self.conv1(pre)
        y = self.conv2(nnx.relu(self.bn2(y)))
        y = self.conv3(nnx.relu(self.bn3(y)))
        return y + shortcut


class ResNet(nnx.Module):
    def __init__(self, block, depths, *, width=1.0, preact=False, dropout=0.0,
                 dtype=jnp.float32, rngs: nnx.Rngs):
        stem = max(8, int(64 * width))
        self.stem_conv = _conv(3, stem, 7, 2, dtype, rngs)
        self.stem_bn = None if preact else _bn(stem, dtype, rngs)
        blocks, cin = [], stem
        for stage, depth in enumerate(depths):
            ch = max(8, int(64 * width * 2 ** stage))
            for i in range(depth):
                blocks.append(block(cin, ch, 2 if i == 0 and stage > 0 else 1, dtype=dtype,
                                    rngs=rngs))
                cin = ch * block.expansion
        self.blocks = nnx.List(blocks)
        self.final_bn = _bn(cin, dtype, rngs) if preact else None
        self.dropout = nnx.Dropout(dropout)
        self.embed_dim = cin
        self.layer_order = ("stem_conv", "stem_bn", "blocks", "final_bn")

    def __call__(self, x, *, rngs=None):
        x = self.stem_conv(x)
        if self.stem_bn is not None:
            x = nnx.relu(self.stem_bn(x))
        x = max_pool(x, 3, 2, ((1, 1), (1, 1)))
        for block in self.blocks:
            x = block(x)
        if self.final_bn is not None:
            x = nnx.relu(self.final_bn(x))
        return self.dropout(x.mean(axis=(1, 2)), rngs=rngs)


# no pretrained weights: trained from scratch on dataset statistics, at the published size
RESNET = register_family("resnet", modules=(ResNet,), default_cfg=DefaultCfg(224))


@RESNET.register
def resnet18(*, dtype=jnp.float32, rngs, width=1.0, dropout=0.0):
    return ResNet(BasicBlock, (2, 2, 2, 2), width=width, dropout=dropout, dtype=dtype, rngs=rngs)


@RESNET.register
def resnet50(*, dtype=jnp.float32, rngs, width=1.0, dropout=0.0):
    return ResNet(Bottleneck, (3, 4, 6, 3), width=width, dropout=dropout, dtype=dtype, rngs=rngs)


@RESNET.register
def resnet50v2(*, dtype=jnp.float32, rngs, width=1.0, dropout=0.0):
    return ResNet(PreActBottleneck, (3, 4, 6, 3), width=width, preact=True, dropout=dropout,
                  dtype=dtype, rngs=rngs)
