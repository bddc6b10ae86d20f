"""Inception-v3 (Szegedy et al. 2016), laid out like Keras applications (mixed0..mixed10).

Inputs of at least 75 px. `width` scales every branch (tests use narrow variants).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from multimodal.errors import ConfigError
from multimodal.models.layers import Conv, max_pool
from multimodal.models.registry import DefaultCfg, register_family

MIN_INPUT = 75


class ConvBN(nnx.Module):
    """Convolution (no bias) + BatchNorm without scale (epsilon 1e-3) + ReLU, as Keras's conv2d_bn."""

    def __init__(self, cin, cout, kernel, stride=1, padding="SAME", *, dtype, rngs):
        self.conv = Conv(cin, cout, kernel, (stride, stride), padding=padding,
                             use_bias=False, dtype=dtype, rngs=rngs)
        self.bn = nnx.BatchNorm(cout, momentum=0.99, epsilon=1e-3, use_scale=False, dtype=dtype,
                                rngs=rngs)

    def __call__(self, x):
        return nnx.relu(self.bn(self.conv(x)))


class Chain(nnx.Module):
    def __init__(self, cin, specs, *, dtype, rngs):
        """specs: [(cout, (kh, kw), stride, padding)] applied in order."""
        layers = []
        for cout, kernel, stride, padding in specs:
            layers.append(ConvBN(cin, cout, kernel, stride, padding, dtype=dtype, rngs=rngs))
            cin = cout
        self.layers, self.out = nnx.List(layers), cin

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def _avg_pool(x):
    return nnx.avg_pool(x, (3, 3), (1, 1), padding="SAME", count_include_pad=False)


class Mixed(nnx.Module):
    """Parallel branches concatenated; `pool` is 'avg' (then a 1x1) or 'max' (no conv)."""

    def __init__(self, cin, branches, pool, pool_out=0, *, dtype, rngs, split_tails=None):
        self.branches = nnx.List([Chain(cin, b, dtype=dtype, rngs=rngs) for b in branches])
        # Inception-E branches end in a 1x3 and a 3x1 side by side
        self.tails = nnx.List([nnx.List([ConvBN(self.branches[i].out, c, k, dtype=dtype, rngs=rngs)
                                         for c, k in tails]) for i, tails in (split_tails or [])])
        self.tail_index = tuple(i for i, _ in (split_tails or []))  # static: hashable
        self.pool = pool
        self.pool_conv = ConvBN(cin, pool_out, (1, 1), dtype=dtype, rngs=rngs) if pool == "avg" \
            else None
        self.out = sum(b.out for i, b in enumerate(self.branches) if i not in self.tail_index) + \
            sum(c for _, t in (split_tails or []) for c, _ in t) + (pool_out if pool == "avg" else cin)

    def __call__(self, x):
        outs = []
        for i, branch in enumerate(self.branches):
            y = branch(x)
            if i in self.tail_index:
                outs += [tail(y) for tail in self.tails[self.tail_index.index(i)]]
            else:
                outs.append(y)
        if self.pool == "avg":
            outs.append(self.pool_conv(_avg_pool(x)))
        else:
            outs.append(max_pool(x, 3, 2))
        return jnp.concatenate(outs, axis=-1)


class InceptionV3(nnx.Module):
    def __init__(self, *, width=1.0, dropout=0.0, dtype=jnp.float32, rngs: nnx.Rngs):
        c = lambda n: max(4, int(n * width))  # noqa: E731
        kw = dict(dtype=dtype, rngs=rngs)
        self.stem1 = Chain(3, [(c(32), (3, 3), 2, "VALID"), (c(32), (3, 3), 1, "VALID"),
                               (c(64), (3, 3), 1, "SAME")], **kw)
        self.stem2 = Chain(c(64), [(c(80), (1, 1), 1, "VALID"), (c(192), (3, 3), 1, "VALID")], **kw)
        mixed, cin = [], c(192)

        def a(cin, pool_features):
            return Mixed(cin, [[(c(64), (1, 1), 1, "SAME")],
                               [(c(48), (1, 1), 1, "SAME"), (c(64), (5, 5), 1, "SAME")],
                               [(c(64), (1, 1), 1, "SAME"), (c(96), (3, 3), 1, "SAME"),
                                (c(96), (3, 3), 1, "SAME")]], "avg", c(pool_features), **kw)

        def cc(cin, c7):
            return Mixed(cin, [[(c(192), (1, 1), 1, "SAME")],
                               [(c(c7), (1, 1), 1, "SAME"), (c(c7), (1, 7), 1, "SAME"),
                                (c(192), (7, 1), 1, "SAME")],
                               [(c(c7), (1, 1), 1, "SAME"), (c(c7), (7, 1), 1, "SAME"),
                                (c(c7), (1, 7), 1, "SAME"), (c(c7), (7, 1), 1, "SAME"),
                                (c(192), (1, 7), 1, "SAME")]], "avg", c(192), **kw)

        def e(cin):
            return Mixed(cin, [[(c(320), (1, 1), 1, "SAME")], [(c(384), (1, 1), 1, "SAME")],
                               [(c(448), (1, 1), 1, "SAME"), (c(384), (3, 3), 1, "SAME")]],
                         "avg", c(192), split_tails=[(1, [(c(384), (1, 3)), (c(384), (3, 1))]),
                                                     (2, [(c(384), (1, 3)), (c(384), (3, 1))])],
                         **kw)

        for pool_features in (32, 64, 64):
            mixed.append(a(cin, pool_features))
            cin = mixed[-1].out
        mixed.append(Mixed(cin, [[(c(384), (3, 3), 2, "VALID")],
                                 [(c(64), (1, 1), 1, "SAME"), (c(96), (3, 3), 1, "SAME"),
                                  (c(96), (3, 3), 2, "VALID")]], "max", **kw))
        cin = mixed[-1].out
        for c7 in (128, 160, 160, 192):
            mixed.append(cc(cin, c7))
            cin = mixed[-1].out
        mixed.append(Mixed(cin, [[(c(192), (1, 1), 1, "SAME"), (c(320), (3, 3), 2, "VALID")],
                                 [(c(192), (1, 1), 1, "SAME"), (c(192), (1, 7), 1, "SAME"),
                                  (c(192), (7, 1), 1, "SAME"), (c(192), (3, 3), 2, "VALID")]],
                           "max", **kw))
        cin = mixed[-1].out
        for _ in range(2):
            mixed.append(e(cin))
            cin = mixed[-1].out
        self.mixed = nnx.List(mixed)
        self.dropout = nnx.Dropout(dropout)
        self.embed_dim = cin
        self.layer_order = ("stem1", "stem2", "mixed")

    def __call__(self, x, *, rngs=None):
        if min(x.shape[1:3]) < MIN_INPUT:
            raise ConfigError(f"Inception-v3 needs inputs of at least {MIN_INPUT} px, got {x.shape[1:3]}")
        x = self.stem1(x)
        x = max_pool(x, 3, 2)
        x = self.stem2(x)
        x = max_pool(x, 3, 2)
        for block in self.mixed:
            x = block(x)
        return self.dropout(x.mean(axis=(1, 2)), rngs=rngs)


# no pretrained weights: trained from scratch on dataset statistics, at the published size
INCEPTION = register_family("inception", modules=(InceptionV3,),
                            default_cfg=DefaultCfg(299, min_input_size=MIN_INPUT))


@INCEPTION.register
def inception_v3(*, dtype=jnp.float32, rngs, width=1.0, dropout=0.0):
    return InceptionV3(width=width, dropout=dropout, dtype=dtype, rngs=rngs)
