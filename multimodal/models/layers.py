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


# How 1x1 convolutions run, kept switchable to measure against: "matmul" (with the backward pass
# below), "matmul_autodiff" (the same matmul, JAX's backward) or "conv" (XLA's convolution).
POINTWISE = "matmul"


def conv_or_matmul(lhs, rhs, window_strides, padding, *, lhs_dilation=None, rhs_dilation=None,
                   dimension_numbers=None, feature_group_count=1, **kwargs):
    """`jax.lax.conv_general_dilated`, except a 1x1 convolution (no padding, dilation or groups)
    becomes a strided slice and a matmul over channels. Same values (tested); its backward pass
    is then two matmuls, where XLA's CPU backend ran both gradients as general convolutions.
    ResNet-50's bottlenecks and Lite0's expand and project layers are 1x1: their CPU training
    step is 1.51x and 1.12x faster (benchmarks/results/cpu_step_ledger.md, run
    cpu_step_pointwise). Larger kernels stay XLA convolutions; where their output is large, their kernel gradient is a matmul per
    image and tap (`conv_taps_backward`)."""
    simple = (lhs.ndim == 4 and feature_group_count == 1
              and kwargs.get("batch_group_count", 1) == 1
              and all(d == 1 for d in (*(lhs_dilation or (1,)), *(rhs_dilation or (1,))))
              and getattr(dimension_numbers, "lhs_spec", None) == (0, 3, 1, 2)  # NHWC and HWIO
              and getattr(dimension_numbers, "rhs_spec", None) == (3, 2, 0, 1))  # (nnx.Conv)
    pads = (jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
            if simple and isinstance(padding, str) else padding)
    extra = {k: v for k, v in kwargs.items() if k != "batch_group_count"}  # precision, ...
    asked = any(v is not None for v in extra.values())  # then the custom VJPs step aside
    if (simple and rhs.shape[:2] == (1, 1) and POINTWISE != "conv"
            and all(tuple(p) == (0, 0) for p in pads)):
        sh, sw = window_strides
        x = lhs[:, ::sh, ::sw, :] if (sh, sw) != (1, 1) else lhs
        if POINTWISE == "matmul_autodiff" or asked:
            return jax.lax.dot_general(x, rhs[0, 0], (((3,), (0,)), ((), ())), **extra)
        return pointwise(x, rhs[0, 0])
    if simple and not asked and _taps_kernel_grad_fits(lhs.shape, rhs.shape, window_strides,
                                                       pads):
        return conv_taps_backward(lhs, rhs, tuple(window_strides),
                                  tuple(tuple(int(v) for v in p) for p in pads))
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count, **kwargs)


@jax.custom_vjp
def pointwise(x, w):
    """x [N, H, W, Cin] @ w [Cin, Cout]. Its own backward pass because autodiff's kernel
    gradient contracts N*H*W, the major axis of both operands, and XLA's CPU backend then
    recomputes BatchNorm's backward a second time, writing it transposed: 0.82 s of a 5.4 s
    ResNet-50 step (128 px, batch 32, traced). Here the narrower operand is transposed alone (the
    barrier keeps XLA from folding the transpose back into the dot): transposes 1.05 -> 0.55 s
    (benchmarks/results/profile_step_resnet50*.md); the step 1.08-1.38x faster (ResNet-50 and
    Lite0, 128 and 224 px, benchmarks/results/cpu_step_ledger.md, runs cpu_step_backward_*)."""
    return jax.lax.dot_general(x, w, (((3,), (0,)), ((), ())))


def _pointwise_fwd(x, w):
    return pointwise(x, w), (x, w)


def _pointwise_bwd(residuals, g):
    x, w = residuals
    dx = jax.lax.dot_general(g, w, (((3,), (1,)), ((), ())))
    x2, g2 = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
    if x2.shape[1] <= g2.shape[1]:  # transpose the narrower one, on its own
        dw = jax.lax.optimization_barrier(x2.T) @ g2
    else:
        dw = (jax.lax.optimization_barrier(g2.T) @ x2).T
    return dx, dw.astype(w.dtype)


pointwise.defvjp(_pointwise_fwd, _pointwise_bwd)


# Where a k x k (k > 1) kernel gradient runs as "taps per image" (below) instead of XLA's: each
# image's output holds at least this many pixels and both sides this many channels, the range
# measured (conv_kernel_grad_cpu.md: 1.34-1.59x faster than XLA's at 16x16 and up with 64-128
# channels, 7-57x slower at 8x8 and 4x4, even at a 3-channel stem). "xla": never.
KERNEL_GRAD, TAPS_MIN_PIXELS, TAPS_MIN_CHANNELS = "taps_per_image", 256, 64


def _taps_kernel_grad_fits(x_shape, w_shape, strides, pads) -> bool:
    if (KERNEL_GRAD != "taps_per_image" or w_shape[0] * w_shape[1] == 1
            or min(w_shape[2:]) < TAPS_MIN_CHANNELS):
        return False
    out = [(n + lo + hi - k) // s + 1
           for n, (lo, hi), k, s in zip(x_shape[1:3], pads, w_shape[:2], strides)]
    return out[0] * out[1] >= TAPS_MIN_PIXELS


def _conv(x, w, strides, pads):
    return jax.lax.conv_general_dilated(x, w, strides, pads,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_taps_backward(x, w, strides, pads):
    """XLA's convolution (NHWC, HWIO) whose kernel gradient is, per kernel tap, one matmul per
    image of the shifted input slice with the output gradient (transposed alone, as in
    `pointwise`), summed over images: XLA's CPU kernel gradient ran at 26-55 GFLOP/s on
    ResNet-50's large 3x3 layers against oneDNN's 131-176 (kernel_rates_cpu.md). The input
    gradient stays XLA's."""
    return _conv(x, w, strides, pads)


def _conv_taps_fwd(x, w, strides, pads):
    return _conv(x, w, strides, pads), (x, w)


def _window(xp, i, j, strides, oh, ow):
    """The oh x ow window of padded NHWC `xp` that kernel tap (i, j) sees at these strides."""
    sh, sw = strides
    return xp[:, i:i + (oh - 1) * sh + 1:sh, j:j + (ow - 1) * sw + 1:sw, :]


def _conv_taps_bwd(strides, pads, residuals, g):
    x, w = residuals
    (kh, kw), (oh, ow), n = w.shape[:2], g.shape[1:3], x.shape[0]
    dx = jax.vjp(lambda x: _conv(x, w, strides, pads), x)[1](g)[0]
    xp = jnp.pad(x, [(0, 0), *pads, (0, 0)])
    gt = jax.lax.optimization_barrier(g.reshape(n, oh * ow, -1).transpose(0, 2, 1))
    per_tap = [jax.lax.dot_general(
        gt, _window(xp, i, j, strides, oh, ow).reshape(n, oh * ow, -1),
        (((2,), (1,)), ((0,), (0,)))).sum(0).T for i in range(kh) for j in range(kw)]
    return dx, jnp.stack(per_tap).reshape(w.shape).astype(w.dtype)


conv_taps_backward.defvjp(_conv_taps_fwd, _conv_taps_bwd)


Conv = partial(nnx.Conv, kernel_init=partial(host_init, scale=2.0),  # convolutions feed ReLUs
               conv_general_dilated=conv_or_matmul)
Linear = partial(nnx.Linear, kernel_init=host_init)


def same_padding(size: int, k: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding for one spatial axis (extra pixel at the end)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


MAX_POOL_BACKWARD = "shifted"  # or "autodiff" (XLA's, to measure against)


def max_pool(x, k: int, s: int, pads=((0, 0), (0, 0))):
    """k x k max pooling of NHWC `x`, stride s, padded ((top, bottom), (left, right)) with -inf.
    The forward is XLA's reduce-window. Its autodiff backward runs on XLA's CPU backend as a
    variadic reduce-window carrying argmax indices; the one below (which tap won, then k*k
    masked pads) takes ResNet-50's pooling from 0.18 to 0.05 s of the traced step (128 px,
    batch 32, benchmarks/results/profile_step_resnet50*.md), the same gradient, ties included."""
    if MAX_POOL_BACKWARD == "autodiff":
        return _reduce_window_max(x, k, s, pads)
    return _max_pool_shifted_backward(x, k, s, pads)


def _reduce_window_max(x, k, s, pads):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, k, k, 1), (1, s, s, 1),
                                 ((0, 0), *pads, (0, 0)))


@partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool_shifted_backward(x, k, s, pads):
    return _reduce_window_max(x, k, s, pads)


def _max_pool_fwd(x, k, s, pads):
    y = _reduce_window_max(x, k, s, pads)
    return y, (x, y)


def _max_pool_bwd(k, s, pads, residuals, g):
    # which tap of each window holds its maximum (the first, like reduce-window), as a small
    # int array on its own: then each input pixel sums the k*k padded masked gradients it can
    # receive. Autodiff of a chain of maxima instead re-derives the chain inside that sum.
    x, y = residuals
    xp = jnp.pad(x, [(0, 0), *pads, (0, 0)], constant_values=-jnp.inf)
    (oh, ow), (hp, wp) = g.shape[1:3], xp.shape[1:3]
    taps = [(i, j) for i in range(k) for j in range(k)]
    first = jnp.full(y.shape, len(taps) - 1, jnp.int8)
    for t in reversed(range(len(taps) - 1)):
        i, j = taps[t]
        first = jnp.where(_window(xp, i, j, (s, s), oh, ow) == y, jnp.int8(t), first)
    first = jax.lax.optimization_barrier(first)
    zero = jnp.zeros((), g.dtype)
    dxp = 0
    for t, (i, j) in enumerate(taps):
        edges = [(i, hp - i - (oh - 1) * s - 1, s - 1), (j, wp - j - (ow - 1) * s - 1, s - 1)]
        dxp = dxp + jax.lax.pad(jnp.where(first == t, g, zero), zero,
                                [(0, 0, 0), *edges, (0, 0, 0)])
    (top, _), (left, _) = pads
    return (dxp[:, top:top + x.shape[1], left:left + x.shape[2], :],)


_max_pool_shifted_backward.defvjp(_max_pool_fwd, _max_pool_bwd)


def _shifted_sum(xp, w, k, s, oh, ow):
    """sum over (i, j) of the stride-`s` window of `xp` at offset (i, j) times w[i, j]."""
    y = 0
    for i in range(k):
        for j in range(k):
            y = y + _window(xp, i, j, (s, s), oh, ow) * w[i, j, 0]
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
    taps = tuple(_window(xp, i, j, (s, s), oh, ow) * g32 for i in range(k) for j in range(k))
    sums = jax.lax.reduce(taps, tuple(jnp.zeros((), jnp.float32) for _ in taps),
                          lambda a, b: tuple(u + v for u, v in zip(a, b)), (0, 1, 2))
    dw = jnp.stack(sums).reshape(k, k, 1, -1)
    return dx.astype(x.dtype), dw.astype(w.dtype)


shift_depthwise.defvjp(_shift_depthwise_fwd, _shift_depthwise_bwd)


class DepthwiseConv(nnx.Module):
    """k x k depthwise convolution ('SAME' padding), kernel shaped like nnx.Conv's [k, k, 1, C].

    impl='shift' writes it as k*k shifted multiply-adds, which XLA fuses into one
    loop; on CPU this is many times faster than XLA's grouped convolution
    (impl='grouped', `feature_group_count=C`; benchmarks/speed/feature_extraction.py), and its
    backward pass is written by hand (`shift_depthwise`). impl='shift_autodiff' is the same
    forward with JAX's own backward, kept to measure against
    (benchmarks/speed/cpu_step_attempts.py). All three give the same values and gradients (tested).
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
