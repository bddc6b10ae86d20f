"""Layers shared by several encoder families."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

_TRUNC_STD = 0.87962566103423978  # std of a standard normal truncated to [-2, 2]


def host_init(key, shape, dtype=jnp.float32, scale: float = 1.0):
    """Truncated-normal kernel init with variance scale/fan_in, drawn with numpy.

    scale=1 is Flax's default (`lecun_normal`), scale=2 He init for layers
    followed by ReLU (deep plain stacks such as VGG need it). Drawing on the host
    avoids an XLA compilation per parameter shape, which made building a large
    network take 30 s on a 2-core CPU. The key still determines the values.
    """
    seed = int(jax.random.randint(key, (), 0, 2 ** 31 - 1))  # one compile, any shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    bad = np.abs(x) > 2
    while bad.any():
        x[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(x) > 2
    fan_in = int(np.prod(shape[:-1])) or 1
    return jnp.asarray(x * np.sqrt(scale / fan_in) / _TRUNC_STD, dtype)


Conv = partial(nnx.Conv, kernel_init=partial(host_init, scale=2.0))  # convolutions feed ReLUs
Linear = partial(nnx.Linear, kernel_init=host_init)


def same_padding(size: int, k: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding for one spatial axis (extra pixel at the end)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


class DepthwiseConv(nnx.Module):
    """k x k depthwise convolution ('SAME' padding), kernel shaped like nnx.Conv's [k, k, 1, C].

    impl='shift' writes it as k*k shifted multiply-adds, which XLA fuses into one
    loop; on CPU this is many times faster than XLA's grouped convolution
    (impl='grouped', `feature_group_count=C`). Both give the same result
    (tested); see benchmarks/feature_extraction.py for the measurements.
    """

    def __init__(self, channels: int, kernel: int = 3, stride: int = 1, *, use_bias=False,
                 impl: str = "shift", dtype=jnp.float32, rngs: nnx.Rngs):
        if impl not in ("shift", "grouped"):
            raise ValueError(f"impl must be 'shift' or 'grouped', not {impl!r}")
        self.kernel = nnx.Param(host_init(rngs.params(), (kernel, kernel, 1, channels), scale=2.0))
        self.bias = nnx.Param(jnp.zeros((channels,))) if use_bias else None
        self.k, self.stride, self.impl, self.dtype = kernel, stride, impl, dtype

    def __call__(self, x):
        x = x.astype(self.dtype)
        w = self.kernel[...].astype(self.dtype)
        k, s = self.k, self.stride
        pads = [same_padding(x.shape[1], k, s), same_padding(x.shape[2], k, s)]
        if self.impl == "grouped":
            y = jax.lax.conv_general_dilated(
                x, w, (s, s), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                feature_group_count=x.shape[-1])
        else:
            xp = jnp.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])
            oh, ow = -(-x.shape[1] // s), -(-x.shape[2] // s)
            y = 0
            for i in range(k):
                for j in range(k):
                    patch = xp[:, i:i + (oh - 1) * s + 1:s, j:j + (ow - 1) * s + 1:s, :]
                    y = y + patch * w[i, j, 0]
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


class ConvReLU(nnx.Module):
    """3x3 convolution, optional BatchNorm, ReLU (the plain CNN building block)."""

    def __init__(self, cin, cout, *, batch_norm, dtype, rngs):
        self.conv = Conv(cin, cout, (3, 3), use_bias=not batch_norm, dtype=dtype, rngs=rngs)
        self.norm = nnx.BatchNorm(cout, momentum=0.9, dtype=dtype, rngs=rngs) if batch_norm else None

    def __call__(self, x):
        x = self.conv(x)
        return nnx.relu(self.norm(x) if self.norm is not None else x)
