"""Where the CPU training step spends its time, op by op: a jax.profiler trace of the trainer's
step, its XLA ops summed by name and by kind.

    python -m benchmarks.speed.profile_step --model efficientnet_lite0 --size 128 --batch 32

XLA's CPU runtime marks every op it runs in the trace when started with
--xla_cpu_enable_xprof_traceme=true (set here before JAX starts). The trace of --steps steps
after warm-up is read back with jax.profiler.ProfileData; op times are wall time on the
thread that ran them, so with several threads their sum can exceed the step. Results:
benchmarks/results/profile_step_<model>.{md,json}; the raw trace stays in --trace-dir (open it
in Perfetto / TensorBoard).
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import time

os.environ["XLA_FLAGS"] = " ".join(
    f for f in (os.environ.get("XLA_FLAGS", ""), "--xla_cpu_enable_xprof_traceme=true") if f)
from benchmarks.common import write_result  # noqa: E402
from benchmarks.speed import throughput_parts as tp  # noqa: E402


def kind(name: str) -> str:
    """The op's family: its name without XLA's numeric suffix (`ynn_fusion.347` ->
    `ynn_fusion`: ops XLA hands to YNNPACK, convolutions and matmuls; `transpose_copy_fusion`,
    `clamp_pad_fusion`, ... XLA's own loops)."""
    return re.sub(r"\.\d+$", "", name)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--depthwise-impl", choices=["shift", "shift_autodiff", "grouped"],
                   help="EfficientNet-Lite's depthwise convolution (default: the encoder's)")
    p.add_argument("--pointwise", choices=["matmul", "matmul_autodiff", "conv"],
                   help="how 1x1 convolutions run (default: layers.POINTWISE)")
    p.add_argument("--max-pool-backward", choices=["shifted", "autodiff"],
                   help="max pooling's backward (default: layers.MAX_POOL_BACKWARD)")
    p.add_argument("--trace-dir", default="runs/profile_step")
    p.add_argument("--results", default=None, help="folder for the result files")
    args = p.parse_args()
    import jax
    from jax.profiler import ProfileData

    from multimodal.models import layers
    layers.POINTWISE = args.pointwise or layers.POINTWISE
    layers.MAX_POOL_BACKWARD = args.max_pool_backward or layers.MAX_POOL_BACKWARD
    options = {"depthwise_impl": args.depthwise_impl} if args.depthwise_impl else None
    step, _, _ = tp.jax_step(args.model, args.batch, args.size, "float32",
                             encoder_options=options)
    step()  # compile outside the trace
    folder = os.path.join(args.trace_dir, f"{args.model}_{args.size}_{args.batch}")
    t0 = time.perf_counter()
    with jax.profiler.trace(folder):
        for _ in range(args.steps):
            step()
    wall = (time.perf_counter() - t0) / args.steps
    path = sorted(glob.glob(os.path.join(folder, "**", "*.xplane.pb"), recursive=True))[-1]
    by_name, by_kind = collections.Counter(), collections.Counter()
    count = collections.Counter()
    for plane in ProfileData.from_file(path).planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            if "python" in line.name.lower():
                continue
            for event in line.events:
                name = event.name
                if not re.match(r"^[a-z_][\w.\-]*$", name) or name.startswith(("Pjit", "Thunk")):
                    continue
                by_name[name] += event.duration_ns / 1e9 / args.steps
                count[name] += 1
    for name, seconds in by_name.items():
        by_kind[kind(name)] += seconds
    total = sum(by_name.values())
    lines = [f"# Where the training step's time goes: {args.model}, {args.size} px, batch "
             f"{args.batch}, float32, {len(jax.devices())} CPU device(s)", "",
             f"jax.profiler trace of {args.steps} steps after warm-up (XLA CPU op markers on); "
             f"wall time per step {wall:.2f} s (traced), op time summed over threads "
             f"{total:.2f} s. 1x1 convolutions: `{layers.POINTWISE}`; max pooling's backward: "
             f"`{layers.MAX_POOL_BACKWARD}` (multimodal/models/layers.py).", "", "| op family (name without its number) | seconds per step | share | ops |",
             "| --- | ---: | ---: | ---: |"]
    members = collections.Counter(kind(n) for n in by_name)
    lines += [f"| `{k}` | {s:.3f} | {s / total:.0%} | {members[k]} |"
              for k, s in by_kind.most_common(args.top)]
    lines += ["", f"Top {args.top} ops by time:", "", "| op | seconds per step | share | calls "
              "per step |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| `{n}` | {s:.3f} | {s / total:.0%} | {count[n] / args.steps:.0f} |"
              for n, s in by_name.most_common(args.top)]
    text = "\n".join(lines)
    print(text)
    kwargs = {"folder": args.results} if args.results else {}
    suffix = "".join(f"_{v}" for v in (args.depthwise_impl, args.pointwise,
                                       args.max_pool_backward and "pool_" + args.max_pool_backward) if v)
    print("->", write_result(f"profile_step_{args.model}{suffix}", text,
                             {"by_name": dict(by_name), "by_kind": dict(by_kind), "wall_s": wall,
                              "args": vars(args)}, **kwargs))


if __name__ == "__main__":
    main()
