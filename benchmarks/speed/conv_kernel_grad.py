"""Where XLA's CPU convolution backward pass is slow, and whether matmuls do better: one layer
at a time, ResNet-50's shapes at 128 px input, batch 32.

    python -m benchmarks.speed.conv_kernel_grad [--batch 32] [--repeats 5]

Per layer (median of --repeats, milliseconds, one process, after warm-up): the forward
convolution; the input gradient and the kernel gradient as JAX's autodiff gives them (both are
XLA convolutions); and the kernel gradient written as matmuls: per kernel tap over shifted
slices of the input ('taps'; 'taps per image': the same with the output gradient transposed
alone and one matmul per image and tap, as `multimodal.models.layers.conv_taps_backward` runs
it), or as one matmul over the k*k slices concatenated on channels ('im2col'). A 1x1 layer needs no slices: `multimodal.models.layers.conv_or_matmul` runs those
as matmuls (benchmarks/results/cpu_step_ledger.md, run cpu_step_pointwise). Every variant is checked against
autodiff before it is timed. Results: benchmarks/results/conv_kernel_grad_cpu.{md,json}.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from benchmarks.common import median_time, write_result
from multimodal.models.layers import conv_taps_backward

DN = ("NHWC", "HWIO", "NHWC")
# (spatial size, input channels, output channels, kernel, stride): ResNet-50 at 128 px
LAYERS = [(32, 64, 64, 3, 1), (16, 128, 128, 3, 1), (8, 256, 256, 3, 1), (4, 512, 512, 3, 1),
          (32, 128, 128, 3, 2), (128, 3, 64, 7, 2), (32, 256, 64, 1, 1)]


def conv(x, w, s, pad):
    return lax.conv_general_dilated(x, w, (s, s), pad, dimension_numbers=DN)


def slices(x, g, k, s, pad):
    xp = jnp.pad(x, [(0, 0), pad[0], pad[1], (0, 0)])
    oh, ow = g.shape[1:3]
    return [xp[:, i:i + (oh - 1) * s + 1:s, j:j + (ow - 1) * s + 1:s, :]
            for i in range(k) for j in range(k)]


def taps(x, g, k, s, pad):
    return jnp.stack([jnp.einsum("nhwc,nhwd->cd", xs, g) for xs in slices(x, g, k, s, pad)]
                     ).reshape(k, k, x.shape[-1], g.shape[-1])


def taps_per_image(x, g, k, s, pad):
    """The kernel gradient the layers use for large outputs: `layers.conv_taps_backward`'s own
    VJP (the output gradient transposed alone, one matmul per image and tap; its input
    gradient is unused here and XLA drops it)."""
    w = jnp.zeros((k, k, x.shape[-1], g.shape[-1]), x.dtype)
    pads = tuple(tuple(p) for p in pad)
    return jax.vjp(lambda w: conv_taps_backward(x, w, (s, s), pads), w)[1](g)[0]


def im2col(x, g, k, s, pad):
    cols = jnp.concatenate(slices(x, g, k, s, pad), axis=-1)
    return jnp.einsum("nhwc,nhwd->cd", cols, g).reshape(k, k, x.shape[-1], g.shape[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--smoke", action="store_true", help="batch 2, one repeat")
    args = p.parse_args()
    if args.smoke:
        args.batch, args.repeats = 2, 1
    rng = np.random.default_rng(0)
    rows = []
    for h, c, d, k, s in LAYERS:
        pad = [(k // 2, k // 2)] * 2
        x = jnp.asarray(rng.normal(size=(args.batch, h, h, c)), jnp.float32)
        w = jnp.asarray(rng.normal(size=(k, k, c, d)), jnp.float32)
        g = jnp.asarray(rng.normal(size=conv(x, w, s, pad).shape), jnp.float32)
        fns = {"forward": (jax.jit(lambda x, w: conv(x, w, s, pad)), (x, w)),
               "input grad (XLA)": (jax.jit(lambda w, g: jax.vjp(
                   lambda x: conv(x, w, s, pad), x)[1](g)[0]), (w, g)),
               "kernel grad (XLA)": (jax.jit(lambda x, g: jax.vjp(
                   lambda w: conv(x, w, s, pad), w)[1](g)[0]), (x, g)),
               "kernel grad (taps)": (jax.jit(lambda x, g: taps(x, g, k, s, pad)), (x, g)),
               "kernel grad (taps per image)": (jax.jit(
                   lambda x, g: taps_per_image(x, g, k, s, pad)), (x, g)),
               "kernel grad (im2col)": (jax.jit(lambda x, g: im2col(x, g, k, s, pad)), (x, g))}
        want = fns["kernel grad (XLA)"][0](x, g)
        scale = float(jnp.abs(want).max())
        row = {"layer": f"{h}x{h}x{c} -> {d}, {k}x{k} stride {s}"}
        for name, (fn, a) in fns.items():
            if "taps" in name or "im2col" in name:  # a wrong slice is off by O(1), float ~1e-6
                err = float(jnp.abs(fn(*a) - want).max()) / scale
                assert err < 1e-3, (row["layer"], name, err)
            row[name] = 1e3 * median_time(lambda: fn(*a).block_until_ready(),
                                          args.repeats)[0]
        rows.append(row)
        print(row, flush=True)
    names = [n for n in rows[0] if n != "layer"]
    lines = [f"# Convolution backward on the CPU, layer by layer (ResNet-50 shapes, batch "
             f"{args.batch}), milliseconds", "",
             f"Median of {args.repeats} after warm-up, one process, float32. XLA = JAX's "
             "autodiff of `lax.conv_general_dilated`.", "",
             "| layer | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    lines += ["| " + r["layer"] + " | " + " | ".join(f"{r[n]:.1f}" for n in names) + " |"
              for r in rows]
    name = "conv_kernel_grad_cpu_smoke" if args.smoke else "conv_kernel_grad_cpu"
    print("\n".join(lines))
    print("->", write_result(name, "\n".join(lines), {"rows": rows, "args": vars(args)}))


if __name__ == "__main__":
    main()
