"""GFLOP/s of the kernels a ResNet-50 training step is made of, JAX (XLA CPU) against PyTorch
(oneDNN) in one run: what is left between the two steps once the graph-level waste is gone.

    python -m benchmarks.speed.kernel_rates

Shapes are ResNet-50's at 128 px, batch 32: a 1x1 layer as a matmul (its forward and both
gradients are matmuls of this size), a 3x3 convolution forward, its input gradient and its
kernel gradient (each framework's own autodiff), float32, both cores. Median of --repeats calls
after warm-up. Results: benchmarks/results/kernel_rates_cpu.{md,json}.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from benchmarks.common import median_time, publish

# (label, kind, N, H, Cin, Cout, k, stride)
CASES = [("1x1 as matmul, 32x32x256 -> 128", "dot", 32, 32, 256, 128, 1, 1),
         ("3x3, 32x32x64 -> 64", "conv", 32, 32, 64, 64, 3, 1),
         ("3x3, 16x16x128 -> 128", "conv", 32, 16, 128, 128, 3, 1),
         ("3x3, 8x8x256 -> 256", "conv", 32, 8, 256, 256, 3, 1),
         ("3x3 stride 2, 32x32x128 -> 128", "conv", 32, 32, 128, 128, 3, 2)]


def inputs(kind, n, h, cin, cout, k, s):
    """The same float32 arrays for both frameworks (NHWC / HWIO; torch gets NCHW / OIHW views)."""
    rng = np.random.default_rng(0)
    if kind == "dot":
        return [rng.normal(size=v).astype(np.float32) for v in ((n * h * h, cin), (cin, cout))]
    oh = -(-h // s)
    return [rng.normal(size=v).astype(np.float32)
            for v in ((n, h, h, cin), (k, k, cin, cout), (n, oh, oh, cout))]


def jax_ops(kind, k, s, arrays):
    import jax

    if kind == "dot":
        a, b = map(jax.numpy.asarray, arrays)
        f = jax.jit(lambda a, b: a @ b)
        return {"forward": lambda: f(a, b).block_until_ready()}
    x, w, g = map(jax.numpy.asarray, arrays)

    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (s, s), [(k // 2, k // 2)] * 2,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
    fwd = jax.jit(conv)
    dx = jax.jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0])
    dw = jax.jit(lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0])
    return {"forward": lambda: fwd(x, w).block_until_ready(),
            "input grad": lambda: dx(x, w, g).block_until_ready(),
            "kernel grad": lambda: dw(x, w, g).block_until_ready()}


def torch_ops(kind, k, s, arrays):
    """Each op returns its result in the JAX layout (converted outside the timed call)."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    if kind == "dot":
        a, b = map(torch.from_numpy, arrays)
        return {"forward": (lambda: a @ b, lambda y: y.numpy())}
    x, w, g = (torch.from_numpy(v).permute(*order).contiguous()
               for v, order in zip(arrays, ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))))
    conv, grad, pad = torch.nn.functional.conv2d, torch.nn.grad, k // 2
    nhwc, hwio = (lambda y: y.permute(0, 2, 3, 1).numpy()), (lambda y: y.permute(2, 3, 1, 0).numpy())
    return {"forward": (lambda: conv(x, w, stride=s, padding=pad), nhwc),
            "input grad": (lambda: grad.conv2d_input(x.shape, w, g, stride=s, padding=pad), nhwc),
            "kernel grad": (lambda: grad.conv2d_weight(x, w.shape, g, stride=s, padding=pad),
                            hwio)}


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--smoke", action="store_true", help="one small case, one call (the test's)")
    p.add_argument("--results", default=None, help="folder for the result files")
    args = p.parse_args()
    cases = ([("1x1 as matmul", "dot", 2, 4, 8, 4, 1, 1), ("3x3 stride 2, 8x8x8 -> 16", "conv",
                                                             2, 8, 8, 16, 3, 2)]
             if args.smoke else CASES)
    repeats = 1 if args.smoke else args.repeats
    rows = []
    for label, kind, n, h, cin, cout, k, s in cases:
        oh = -(-h // s)
        flops = 2 * n * oh * oh * cout * cin * k * k  # each of forward, input and kernel grad
        arrays = inputs(kind, n, h, cin, cout, k, s)
        ours, theirs = jax_ops(kind, k, s, arrays), torch_ops(kind, k, s, arrays)
        for op in ours:
            (run_torch, to_jax_layout), want = theirs[op], np.asarray(ours[op]())
            # both sides do the same work: the same result, up to float32 summation order
            error = float(np.abs(to_jax_layout(run_torch()) - want).max() / np.abs(want).max())
            t_jax, t_torch = median_time(ours[op], repeats)[0], median_time(run_torch, repeats)[0]
            rows.append({"case": label, "op": op, "gflop": flops / 1e9, "max_rel_diff": error,
                         "jax_ms": t_jax * 1e3, "torch_ms": t_torch * 1e3,
                         "jax_gflops": flops / t_jax / 1e9, "torch_gflops": flops / t_torch / 1e9})
            print(rows[-1], flush=True)
    lines = ["# Kernel rates on the CPU: JAX (XLA CPU) against PyTorch (oneDNN), float32", "",
             f"Median of {repeats} calls after warm-up, {os.cpu_count()} threads each; GFLOP/s "
             "= 2 x multiply-adds / time; the two results agree to the largest relative difference "
             f"{max(r['max_rel_diff'] for r in rows):.1e}.", "",
             "| layer | op | GFLOP | JAX ms | torch ms | JAX GFLOP/s | torch GFLOP/s | JAX / torch |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['case']} | {r['op']} | {r['gflop']:.2f} | {r['jax_ms']:.1f} | "
              f"{r['torch_ms']:.1f} | {r['jax_gflops']:.0f} | {r['torch_gflops']:.0f} | "
              f"{r['torch_ms'] / r['jax_ms']:.2f} |" for r in rows]
    kwargs = {"folder": args.results} if args.results else {}
    publish("kernel_rates_cpu_smoke" if args.smoke else "kernel_rates_cpu", lines,
            {"rows": rows, "args": vars(args)}, **kwargs)


if __name__ == "__main__":
    main()
