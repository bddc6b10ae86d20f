"""Training throughput (images/s) of the trainer's step, with and without its input pipeline,
against the same architecture in PyTorch, measured in one run on one machine.

    python -m benchmarks.speed.train_throughput --device cpu --models resnet50 efficientnet_lite0 \
        --size 224 --batches 8 16
    python -m benchmarks.speed.train_throughput --device gpu      # ResNet-50 + Lite0, 224 px, bf16
    python -m benchmarks.speed.train_throughput --smoke           # seconds, CPU: what the tests run

Per model and batch size:
  JAX step        the trainer's jitted step (forward, backward, AdamW) on a device-resident batch
  JAX + input     the same step fed by the trainer's input pipeline: synthetic 600x450 JPEGs
                  prepared once at --size (ArrayRecord), decoded, flipped/rotated and normalised
                  on the host by Grain (--workers processes), copied to the device each step
  input alone     that pipeline without a model: if it is below "JAX step", the host caps training
  torch           the same architecture (benchmarks/speed/torch_reference.py): fp32 eager on the CPU;
                  on the GPU channels-last, bf16 autocast, torch.compile, fused AdamW
Every figure is the median of --repeats timings of --steps steps after a warm-up (compilation).
--device gpu defaults to bf16 compute with fp32 master weights and batches 64..512; a batch
that does not fit JAX ends that model's sweep with an "out of memory" row (torch running out
alone is marked in its column, the JAX figures kept). JAX allocates GPU memory on demand here
(no 75% preallocation), so the two frameworks share the card. Peak memory (device / host) is
the process's peak so far: the largest batch of the sweep up to that row, not that row alone.
"""

from __future__ import annotations

import argparse
import os
import tempfile

# before JAX starts: allocate on demand, so the PyTorch peer in the same process finds memory
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from benchmarks.common import RESULTS, write_result  # noqa: E402
from benchmarks.speed import throughput_parts as parts  # noqa: E402

GPU = {"batches": [64, 128, 256, 512], "dtype": "bfloat16", "images": 2048, "steps": 20,
       "repeats": 3, "workers": max(1, (os.cpu_count() or 2) - 2)}
CPU = {"batches": [16], "dtype": "float32", "images": 256, "steps": 3, "repeats": 3,
       "workers": 0}
SMOKE = {"models": ["efficientnet_lite0"], "size": 32, "batches": [4], "images": 160,
         "steps": 1, "repeats": 1, "workers": 0, "dtype": "float32"}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--models", nargs="+", default=["resnet50", "efficientnet_lite0"])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batches", "--batch", type=int, nargs="+", help="global batch sizes to sweep")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], help="JAX compute dtype")
    p.add_argument("--steps", type=int)
    p.add_argument("--repeats", type=int)
    p.add_argument("--images", type=int, help="synthetic JPEGs behind the input pipeline")
    p.add_argument("--workers", type=int, help="Grain worker processes (0: in-process)")
    p.add_argument("--devices", type=int, nargs="+",
                   help="data-parallel device counts to sweep (default: all devices); on a CPU "
                        "set XLA_FLAGS=--xla_force_host_platform_device_count=N first")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
    p.add_argument("--smoke", action="store_true", help="tiny CPU run (the test's)")
    p.add_argument("--results", default=RESULTS, help="folder for the result files")
    p.add_argument("--name", help="result file name (default train_throughput_<platform>)")
    args = p.parse_args(argv)
    defaults = {**(GPU if args.device == "gpu" else CPU), **(SMOKE if args.smoke else {})}
    for key, value in defaults.items():
        if key in ("models", "size") and not args.smoke:
            continue
        if getattr(args, key) is None or args.smoke:
            setattr(args, key, value)
    return args


def out_of_memory(exc: Exception) -> bool:
    return "RESOURCE_EXHAUSTED" in str(exc) or "out of memory" in str(exc).lower()


# batches read untimed before "input alone" is timed: more than the pipeline buffers (Grain's
# read-ahead of 2 batches per worker and the batches workers finish during start-up)
INPUT_SKIP = 8


def measure(args, name, batch, folder, work, devices=None) -> dict:
    """One row: JAX step, JAX + input, input alone, torch; memory."""
    synthetic_step, run, params = parts.jax_step(name, batch, args.size, args.dtype, devices)
    import jax
    row = {"model": name, "batch": batch, "params": params,
           "devices": devices or len(jax.devices())}
    import time
    t0 = time.perf_counter()
    synthetic_step()
    row["compile_s"] = time.perf_counter() - t0
    row["jax"], _ = parts.rate(synthetic_step, batch, args.steps, args.repeats)
    n_batches = args.steps * (args.repeats + 1) + 1
    timed, skip = max(args.steps * args.repeats, 8), INPUT_SKIP + 2 * args.workers
    data = iter(parts.input_pipeline(folder, os.path.join(work, f"in_{batch}"), args.size,
                                     batch, args.workers, n_batches + timed + skip + 2,
                                     args.dtype))
    row["input"] = parts.sustained_rate(data, batch, timed, skip)

    def fed_step():
        return run(next(data))

    def fed_steps():
        losses = [fed_step() for _ in range(args.steps)]
        losses[-1].block_until_ready()
    row["jax_input"], _ = parts.rate(fed_steps, batch * args.steps, 1, args.repeats)
    row["device_peak_mb"] = parts.device_peak_mb()
    if not args.no_torch:
        try:
            tstep, tparams = parts.torch_step(name, batch, args.size, args.device)
            row["torch"], _ = parts.rate(tstep, batch, args.steps, args.repeats)
            row["torch_params"] = tparams
        except Exception as exc:  # noqa: BLE001 - torch out of memory: keep the JAX figures
            if not out_of_memory(exc):
                raise
            row["torch_error"] = "out of memory"
    row["host_peak_mb"] = parts.host_peak_mb()
    return row


def table_line(r) -> str:
    if "error" in r:
        return f"| {r['model']} | {r['batch']} | | {r['error']} | | | | | | | |"
    torch_rate = r.get("torch")
    ratio = (lambda x: f"{x / torch_rate:.2f}") if torch_rate else (lambda x: "-")
    torch_cell = f"{torch_rate:.1f}" if torch_rate else r.get("torch_error", "-")
    peak = f"{r['device_peak_mb']:.0f}" if r.get("device_peak_mb") else "-"
    return (f"| {r['model']} | {r['batch']} | {r['devices']} | {r['jax']:.1f} | {r['jax_input']:.1f} | "
            f"{r['input']:.1f} | {torch_cell} | {ratio(r['jax'])} | "
            f"{ratio(r['jax_input'])} | {r['compile_s']:.0f} | {peak} / {r['host_peak_mb']:.0f} |")


def scaling_lines(rows) -> list[str]:
    """Data-parallel scaling of the JAX step: speedup over one device at the same global batch,
    and efficiency = speedup / devices (1.0 is perfect)."""
    base = {(r["model"], r["batch"]): r["jax"] for r in rows
            if "error" not in r and r["devices"] == 1}
    out = [f"- {r['model']}, batch {r['batch']}, {r['devices']} devices: speedup "
           f"{r['jax'] / base[r['model'], r['batch']]:.2f}x, efficiency "
           f"{r['jax'] / base[r['model'], r['batch']] / r['devices']:.2f}"
           for r in rows if "error" not in r and r["devices"] > 1
           and (r["model"], r["batch"]) in base]
    return ["", "Scaling (JAX step, same global batch):", *out] if out else []


def main(argv=None):
    args = parse(argv)
    import jax

    platform = jax.devices()[0].platform
    if (args.device == "gpu") != (platform == "gpu"):
        raise SystemExit(f"--device {args.device}, but JAX runs on {platform}")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        os.environ["MULTIMODAL_PREPARED"] = os.path.join(work, "prepared")
        folder = parts.write_images(os.path.join(work, "images"), args.images)
        for name in args.models:
            for devices in args.devices or [None]:
                for batch in sorted(args.batches):
                    try:
                        rows.append(measure(args, name, batch, folder, work, devices))
                    except Exception as exc:  # noqa: BLE001 - only out-of-memory ends a sweep
                        if not out_of_memory(exc):
                            raise
                        rows.append({"model": name, "batch": batch, "error": "out of memory"})
                        break
                    print(table_line(rows[-1]), flush=True)
    lines = [f"# Training throughput, {args.size} px, JAX {args.dtype} on {len(jax.devices())} "
             f"{platform} device(s)", "",
             f"JAX {jax.__version__}; input pipeline: {args.images} synthetic 600x450 JPEGs "
             f"prepared at {args.size} px, Grain with {args.workers} worker process(es). Median "
             f"of {args.repeats} timings of {args.steps} steps after warm-up; images/s.", "",
             "| model | batch | devices | JAX step | JAX + input | input alone | torch | "
             "JAX / torch | JAX + input / torch | compile s | peak MB (device / host) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
             *map(table_line, rows)]
    lines += scaling_lines(rows)
    name = args.name or ("train_throughput_smoke" if args.smoke else
                         f"train_throughput_{platform}")
    path = write_result(name, "\n".join(lines), {"rows": rows, "args": vars(args)},
                        folder=args.results)
    print("\n".join(lines))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
