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


POINTWISE_AS_MATMUL = True  # False: every convolution through XLA's (to measure against)


def conv_or_matmul(lhs, rhs, window_strides, padding, *, lhs_dilation=None, rhs_dilation=None,
                   dimension_numbers=None, feature_group_count=1, **kwargs):
    """`jax.lax.conv_general_dilated`, except a 1x1 convolution (no padding, dilation or groups)
    becomes a strided slice and a matmul over channels. Same values (tested); its backward pass
    is then two matmuls, where XLA's CPU backend ran both gradients as general convolutions.
    ResNet-50's bottlenecks and Lite0's expand and project layers are 1x1: their CPU training
    step is 1.51x and 1.12x faster (benchmarks/results/cpu_step_pointwise.md). The same trick
    for 3x3 kernel gradients (shifted slices or im2col, then matmuls) was 1.2-1.6x slower
    than XLA's own (benchmarks/results/conv_kernel_grad_cpu.md), so those stay convolutions."""
    no_pad = padding in ("SAME", "VALID") or all(tuple(p) == (0, 0) for p in padding)
    plain = (POINTWISE_AS_MATMUL and rhs.shape[:-2] == (1, 1) and lhs.ndim == 4 and no_pad
             and feature_group_count == 1 and kwargs.get("batch_group_count", 1) == 1
             and all(d == 1 for d in (*(lhs_dilation or (1,)), *(rhs_dilation or (1,))))
             and getattr(dimension_numbers, "lhs_spec", None) == (0, 3, 1, 2))  # NHWC (nnx.Conv)
    if not plain:
        return jax.lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count, **kwargs)
    sh, sw = window_strides
    x = lhs[:, ::sh, ::sw, :] if (sh, sw) != (1, 1) else lhs
    kwargs.pop("batch_group_count", None)
    return jax.lax.dot_general(x, rhs[0, 0], (((3,), (0,)), ((), ())), **kwargs)


Conv = partial(nnx.Conv, kernel_init=partial(host_init, scale=2.0),  # convolutions feed ReLUs
               conv_general_dilated=conv_or_matmul)
Linear = partial(nnx.Linear, kernel_init=host_init)


def same_padding(size: int, k: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding for one spatial axis (extra pixel at the end)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def _shifted_sum(xp, w, k, s, oh, ow):
    """sum over (i, j) of the stride-`s` window of `xp` at offset (i, j) times w[i, j]."""
    y = 0
    for i in range(k):
        for j in range(k):
            y = y + xp[:, i:i + (oh - 1) * s + 1:s, j:j + (ow - 1) * s + 1:s, :] * w[i, j, 0]
    return y


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def shift_depthwise(x, w, k: int, s: int, pads):
    """Depthwise k x k convolution as shifted multiply-adds, with a backward pass written for
    the CPU: the input gradient is the output gradient (dilated by the stride) convolved with
    the flipped kernel, one fused loop like the forward; the kernel gradient is one variadic
    reduction. Autodiff of the forward instead sums k*k padded copies and makes k*k passes
    over the activations for the kernel gradient (a third of Lite0's training step on 2 cores,
    benchmarks/results/profile_step_efficientnet_lite0.md)."""
    xp = jnp.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])
    return _shifted_sum(xp, w, k, s, -(-x.shape[1] // s), -(-x.shape[2] // s))


def _shift_depthwise_fwd(x, w, k, s, pads):
    return shift_depthwise(x, w, k, s, pads), (x, w)


def _shift_depthwise_bwd(k, s, pads, residuals, g):
    x, w = residuals
    (h, wd), (oh, ow) = x.shape[1:3], g.shape[1:3]
    # dx[u] = sum_i gd[u + before - i] w[i], gd = g dilated by s: a stride-1 shifted sum over
    # gd padded by k-1-before in front and cropped or padded at the back to length size+k-1
    edges = [(k - 1 - before, size + before - (out - 1) * s - 1, s - 1)
             for (before, _), size, out in ((pads[0], h, oh), (pads[1], wd, ow))]
    gp = jax.lax.pad(g, jnp.zeros((), g.dtype), [(0, 0, 0), *edges, (0, 0, 0)])
    dx = _shifted_sum(gp, w[::-1, ::-1], k, 1, h, wd)
    # dw[i, j] = sum over (n, h, w) of window(i, j) * g: the k*k sums as one variadic reduce,
    # one pass over x and g (k*k separate sums read both k*k times: 1.4-3.9x slower per layer)
    xp = jnp.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])
    xp, g32 = xp.astype(jnp.float32), g.astype(jnp.float32)  # bf16: f32 products and sums
    taps = tuple(xp[:, i:i + (oh - 1) * s + 1:s, j:j + (ow - 1) * s + 1:s, :] * g32
                 for i in range(k) for j in range(k))
    sums = jax.lax.reduce(taps, tuple(jnp.zeros((), jnp.float32) for _ in taps),
                          lambda a, b: tuple(u + v for u, v in zip(a, b)), (0, 1, 2))
    dw = jnp.stack(sums).reshape(k, k, 1, -1)
    return dx.astype(x.dtype), dw.astype(w.dtype)


shift_depthwise.defvjp(_shift_depthwise_fwd, _shift_depthwise_bwd)


class DepthwiseConv(nnx.Module):
    """k x k depthwise convolution ('SAME' padding), kernel shaped like nnx.Conv's [k, k, 1, C].

    impl='shift' writes it as k*k shifted multiply-adds, which XLA fuses into one
    loop; on CPU this is many times faster than XLA's grouped convolution
    (impl='grouped', `feature_group_count=C`; benchmarks/feature_extraction.py), and its
    backward pass is written by hand (`shift_depthwise`). impl='shift_autodiff' is the same
    forward with JAX's own backward, kept to measure against
    (benchmarks/cpu_step_attempts.py). All three give the same values and gradients (tested).
    """

    def __init__(self, channels: int, kernel: int = 3, stride: int = 1, *, use_bias=False,
                 impl: str = "shift", dtype=jnp.float32, rngs: nnx.Rngs):
        if impl not in ("shift", "shift_autodiff", "grouped"):
            raise ValueError(f"impl must be 'shift', 'shift_autodiff' or 'grouped', not {impl!r}")
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
        elif self.impl == "shift":
            y = shift_depthwise(x, w, k, s, tuple(pads))
        else:  # shift_autodiff: the same forward, JAX's own backward (kept to measure against)
            xp = jnp.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])
            y = _shifted_sum(xp, w, k, s, -(-x.shape[1] // s), -(-x.shape[2] // s))
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
