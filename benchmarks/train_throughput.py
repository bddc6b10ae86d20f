"""Training throughput (images/s) of our JAX encoders against the same architecture in PyTorch.

    python benchmarks/train_throughput.py --models resnet50 efficientnet_lite0 --size 224 --batch 16

One optimiser step = forward, backward and AdamW update on a random batch
(synthetic data isolates the model; benchmarks/input_pipeline.py measures the
input side). Each framework gets one warm-up step (compilation for JAX), then
the median of `--repeats` timings of `--steps` steps. Both run fp32 on the CPU
with all cores; on a GPU pass --dtype bfloat16 for the JAX side.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import median_time, write_result  # noqa: E402


def jax_step_fn(name, batch, size, dtype):
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from multimodal.models import Classifier
    from multimodal.training.trainer import LossSpec, Stepper

    model = Classifier(7, "image", encoder=name, encoder_options={"dropout": 0.0}, dropout=0.0,
                       rngs=nnx.Rngs(0),
                       dtype=jnp.bfloat16 if dtype == "bfloat16" else jnp.float32)
    stepper = Stepper(model, nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param))
    rng = np.random.default_rng(0)
    data = {"image": jnp.asarray(rng.normal(size=(batch, size, size, 3)), dtype),
            "label": jnp.asarray(rng.integers(0, 7, batch)), "metadata": jnp.zeros((batch, 0)),
            "metadata_mask": jnp.zeros(batch)}
    spec, key, class_w = LossSpec("cross_entropy", 0.0, 2.0), jax.random.key(0), jnp.ones(7)
    params = sum(x.size for x in jax.tree.leaves(nnx.state(model.encoder, nnx.Param)))
    # the trainer's own step (loss, AdamW update), as train.py runs it
    return lambda: stepper(spec, data, key, class_w)[0].block_until_ready(), params


def torch_step_fn(name, batch, size):
    import torch

    from torch_reference import EfficientNetLite0, ResNet50, parameter_count

    torch.set_num_threads(os.cpu_count() or 1)
    model = {"resnet50": ResNet50, "efficientnet_lite0": EfficientNetLite0}[name]()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    images = torch.randn(batch, 3, size, size)
    labels = torch.randint(0, 7, (batch,))

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        opt.step()

    return step, parameter_count(model) - parameter_count(model.head)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet50", "efficientnet_lite0"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    import jax
    import torch

    rows, data = [], {}
    for name in args.models:
        jstep, jparams = jax_step_fn(name, args.batch, args.size, args.dtype)
        t0 = time.perf_counter()
        jstep()
        compile_s = time.perf_counter() - t0
        jt, jtimes = median_time(lambda: [jstep() for _ in range(args.steps)], args.repeats, 0)
        tstep, tparams = torch_step_fn(name, args.batch, args.size)
        tt, ttimes = median_time(lambda: [tstep() for _ in range(args.steps)], args.repeats, 1)
        j_rate, t_rate = args.batch * args.steps / jt, args.batch * args.steps / tt
        data[name] = {"jax_images_per_s": j_rate, "torch_images_per_s": t_rate,
                      "jax_first_step_s": compile_s, "jax_times": jtimes, "torch_times": ttimes,
                      "encoder_params": {"jax": int(jparams), "torch": int(tparams)}}
        rows.append(f"| {name} | {jparams / 1e6:.2f}M / {tparams / 1e6:.2f}M | {j_rate:.2f} | "
                    f"{t_rate:.2f} | {j_rate / t_rate:.2f} | {compile_s:.0f} s |")
        print(rows[-1], flush=True)
    lines = [f"# Training throughput, {args.size} px, batch {args.batch}, {args.dtype} (JAX) / "
             f"fp32 (torch), AdamW, synthetic batches", "",
             f"JAX {jax.__version__} on {jax.devices()[0].platform}, torch {torch.__version__} "
             f"with {torch.get_num_threads()} threads. Median of {args.repeats} timings of "
             f"{args.steps} steps after warm-up.", "",
             "| model | encoder params (JAX / torch) | JAX img/s | torch img/s | JAX / torch | "
             "JAX first step (compile) |", "| --- | --- | ---: | ---: | ---: | ---: |", *rows]
    path = write_result("train_throughput_" + jax.devices()[0].platform, "\n".join(lines), data)
    print("\n".join(lines))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
