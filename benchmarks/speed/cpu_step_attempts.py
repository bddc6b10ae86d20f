"""What the CPU training step is made of, and what each attempt to speed it up does: one table.

    python -m benchmarks.speed.cpu_step_attempts --models efficientnet_lite0 resnet50 --size 128 \
        --batch 32 [--smoke]

Each row runs in a fresh process (XLA flags are read once, at start-up), the trainer's jitted
step on a synthetic device-resident batch (benchmarks/speed/throughput_parts.py), the median of
--repeats timings of --steps steps after warm-up. In the same run and on the same machine:
- parts: forward (training mode, loss), forward + backward (value_and_grad), the whole step
  (+ AdamW update and state write-back): where the time goes;
- attempts: XLA CPU flags of the installed jaxlib (fast math, XNNPACK on/off and its fusions,
  oneDNN, single-threaded Eigen), bf16 compute, donating the train state, batch size;
- the same architecture's step in PyTorch (fp32 eager, all cores), the peer every ratio uses.
Results: one ledger of every run, benchmarks/results/cpu_step_ledger.{md,json}: each run appends
its rows there, labelled --name (--smoke runs go to cpu_step_ledger_smoke instead).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks.common import RESULTS, ROOT, command_line, machine
from benchmarks.speed.cpu_step_ledger import LEDGER, append_runs, run_record

# name -> (extra XLA_FLAGS, extra options for the measuring process, what it tries)
ATTEMPTS = {
    "default": ("", {}, "the trainer as shipped"),
    "fast_math": ("--xla_cpu_enable_fast_math=true", {}, "unsafe fast math in XLA's CPU codegen"),
    "no_xnnpack": ("--xla_cpu_use_xnnpack=false", {}, "XNNPACK off (what it gives by default)"),
    "xnn_fusions": ("--xla_cpu_experimental_xnn_fusion_type=dot,eltwise,reduce", {},
                    "XNNPACK also for dots, elementwise and reductions"),
    "xnn_graph": ("--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY", {},
                  "greedy XNNPACK subgraph fusion"),
    "onednn": ("--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true", {},
               "oneDNN kernels for convolutions and matmuls"),
    "eigen_1_thread": ("--xla_cpu_multi_thread_eigen=false", {}, "Eigen single-threaded"),
    "bf16": ("", {"dtype": "bfloat16"}, "bf16 compute, fp32 master weights"),
    "donate": ("", {"donate": True}, "train state donated to the step (no copy of it)"),
    "depthwise_autodiff": ("", {"encoder_options": {"depthwise_impl": "shift_autodiff"}},
                           "depthwise backward by JAX autodiff (before the hand-written one; "
                           "Lite0 only)"),
    "pointwise_autodiff": ("", {"pointwise": "matmul_autodiff"},
                           "1x1 convolutions as matmuls, backward by JAX autodiff (before the "
                           "hand-written one)"),
    "max_pool_autodiff": ("", {"max_pool_backward": "autodiff"},
                          "max pooling's backward by JAX autodiff of reduce-window (before the "
                          "shifted-slice one)"),
    "kernel_grad_xla": ("", {"kernel_grad": "xla"},
                        "k x k kernel gradients all by XLA (before 'taps per image' for "
                        "outputs of 16x16 and up)"),
    "pointwise_conv": ("", {"pointwise": "conv"},
                       "1x1 convolutions through XLA's convolution (before they became matmuls)"),
}
WHAT = {name: attempt[2] for name, attempt in ATTEMPTS.items()}


def measure(model: str, size: int, batch: int, steps: int, repeats: int, dtype: str = "float32",
            donate: bool = False, parts: bool = False, torch: bool = False,
            encoder_options: dict | None = None, pointwise: str = "matmul",
            max_pool_backward: str = "shifted", kernel_grad: str = "taps_per_image") -> dict:
    """In this process: images/s of the JAX step (and its parts), or of the torch step."""
    from benchmarks.speed import throughput_parts as tp
    from multimodal.models import layers

    layers.POINTWISE, layers.MAX_POOL_BACKWARD = pointwise, max_pool_backward
    layers.KERNEL_GRAD = kernel_grad
    if torch:
        step, _ = tp.torch_step(model, batch, size, "cpu")
        return {"torch": tp.rate(step, batch, steps, repeats)[0]}
    import time

    import jax

    if donate:  # the trainer's step with its state argument donated
        from functools import partial

        from multimodal.training import trainer
        trainer._pure_step = partial(jax.jit, static_argnums=(0, 1, 2, 7), donate_argnums=(3,))(
            trainer._pure_step.__wrapped__)
    synthetic_step, _, _ = tp.jax_step(model, batch, size, dtype,
                                       encoder_options=encoder_options)
    t0 = time.perf_counter()
    synthetic_step()
    row = {"compile_s": time.perf_counter() - t0,
           "step": tp.rate(synthetic_step, batch, steps, repeats)[0]}
    if parts:
        row.update(part_rates(model, batch, size, steps, repeats, encoder_options))
    return row


def part_rates(model_name: str, batch: int, size: int, steps: int, repeats: int,
               encoder_options: dict | None = None) -> dict:
    """Forward alone and forward + backward, the same model, loss and batch as the step."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    from benchmarks.speed import throughput_parts as tp
    from multimodal.models import Classifier

    model = Classifier(7, "image", encoder=model_name,
                       encoder_options={"dropout": 0.0, **(encoder_options or {})}, dropout=0.0,
                       rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)  # merged inside jit, as the trainer's step does
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(batch, size, size, 3)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 7, batch))

    def loss(model, images, labels):  # BatchNorm's statistics are updated, then dropped
        n = images.shape[0]
        logits = model(images, jnp.zeros((n, 0)), jnp.zeros(n),
                       rngs=nnx.Rngs(dropout=jax.random.key(0)))
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    forward = jax.jit(lambda s, x, y: loss(nnx.merge(graphdef, s), x, y))
    backward = jax.jit(lambda s, x, y: nnx.value_and_grad(loss)(nnx.merge(graphdef, s), x, y))
    rates = {}
    for name, fn in (("forward", forward), ("forward_backward", backward)):
        rates[name] = tp.rate(lambda: jax.block_until_ready(fn(state, images, labels)), batch,
                              steps, repeats)[0]
    return rates


def child(args) -> None:
    print(json.dumps(measure(**json.loads(args.child))), flush=True)


def spawn(options: dict, flags: str) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = " ".join(f for f in (env.get("XLA_FLAGS", ""), flags) if f)
    out = subprocess.run([sys.executable, "-m", __spec__.name, "--child", json.dumps(options)],
                         env=env, cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        errors = [line for line in out.stderr.splitlines() if "Error" in line or "error" in line]
        return {"error": (errors or out.stderr.strip().splitlines() or ["failed"])[-1][:160]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["efficientnet_lite0", "resnet50"])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--batches", type=int, nargs="*", default=[16, 64],
                   help="other batch sizes for the default step and torch")
    p.add_argument("--attempts", nargs="+", default=list(ATTEMPTS), choices=list(ATTEMPTS))
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="tiny: 32 px, batch 4, 1 step")
    p.add_argument("--results", default=None,
                   help="folder of the ledger (default benchmarks/results)")
    p.add_argument("--name", default="cpu_step_attempts", help="this run's name in the ledger")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    if args.smoke:
        args.size, args.batch, args.batches, args.steps, args.repeats = 32, 4, [], 1, 1
        args.models, args.attempts = args.models[:1], ["default", "donate"]
    rows = []
    for model in args.models:
        common = {"model": model, "size": args.size, "steps": args.steps,
                  "repeats": args.repeats}
        for batch in dict.fromkeys([args.batch, *args.batches]):  # each batch once
            torch = spawn({**common, "batch": batch, "torch": True}, "")
            rows.append({"model": model, "batch": batch, "attempt": "torch", **torch})
            print(rows[-1], flush=True)
            for attempt in (args.attempts if batch == args.batch else ["default"]):
                if attempt == "depthwise_autodiff" and not model.startswith("efficientnet"):
                    continue  # no depthwise convolutions in the others
                if attempt == "max_pool_autodiff" and model.startswith("efficientnet"):
                    continue  # no max pooling in EfficientNet
                flags, options, _ = ATTEMPTS[attempt]
                parts = attempt == "default" and batch == args.batch
                result = spawn({**common, "batch": batch, "parts": parts, **options}, flags)
                rows.append({"model": model, "batch": batch, "attempt": attempt,
                             "torch_peer": torch.get("torch"), **result})
                print(rows[-1], flush=True)
    print("\n".join(report(args, rows)))
    ledger = f"{LEDGER}_smoke" if args.smoke else LEDGER
    name = f"{args.name}_smoke" if args.smoke else args.name
    run = run_record(name, vars(args), rows, command_line(), time.strftime("%Y-%m-%d %H:%M:%S"),
                     machine(), what=WHAT)
    print("->", append_runs(args.results or RESULTS, [run], ledger))


def report(args, rows) -> list[str]:
    lines = [f"# CPU training step: parts and attempts, {args.size} px, float32 unless stated",
             "", f"Median of {args.repeats} timings of {args.steps} steps after warm-up, images/s;"
             " every row in its own process; torch = the same architecture, fp32 eager, measured "
             "in the same run at the same batch.", "",
             "| model | batch | attempt | what it tries | JAX step img/s | torch img/s | "
             "JAX / torch | vs default | compile s |",
             "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    default = {(r["model"], r["batch"]): r.get("step") for r in rows if r["attempt"] == "default"}
    for r in rows:
        if r["attempt"] == "torch":
            continue
        what = ATTEMPTS[r["attempt"]][2]
        if "error" in r:
            lines.append(f"| {r['model']} | {r['batch']} | {r['attempt']} | {what} | "
                         f"failed: {r['error']} | | | | |")
            continue
        peer, base = r.get("torch_peer"), default.get((r["model"], r["batch"]))
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['attempt']} | {what} | {r['step']:.2f} | "
            f"{peer:.2f} | {r['step'] / peer:.2f} | {r['step'] / base:.2f} | "
            f"{r['compile_s']:.0f} |" if peer and base else
            f"| {r['model']} | {r['batch']} | {r['attempt']} | {what} | {r['step']:.2f} | | | | |")
    lines += ["", "Where the time goes (default attempt, seconds per batch of "
              f"{args.batch}; backward = forward + backward - forward, update = step - (forward + "
              "backward), which also holds BatchNorm's running statistics and the state write):",
              "", "| model | forward | backward | update and the rest | step |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if r["attempt"] == "default" and r["batch"] == args.batch and "forward" in r:
            f, fb, s = (args.batch / r[k] for k in ("forward", "forward_backward", "step"))
            lines.append(f"| {r['model']} | {f:.2f} ({f / s:.0%}) | {fb - f:.2f} "
                         f"({(fb - f) / s:.0%}) | {s - fb:.2f} ({(s - fb) / s:.0%}) | {s:.2f} |")
    return lines


if __name__ == "__main__":
    main()
