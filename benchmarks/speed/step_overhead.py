"""Per-step overhead of nnx.jit against jax.jit over the split state (the trainer's Stepper).

    python -m benchmarks.speed.step_overhead --models efficientnet_lite0 resnet50 --batch 64

nnx.jit walks the model's Python object graph on every call; the trainer splits
(model, optimizer) once and jits a pure function of the arrays. The gap matters
most when the step itself is cheap: heads training on cached pooled features
(`train.py --features`), where the encoder is in the model but never runs. Both
columns run the same `classifier.train_step` on the same batch; median of `--repeats`
timings of `--steps` steps after warm-up.
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.common import median_time, write_result


def steppers(name: str, batch: int, meta_dim: int = 20):
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from multimodal.models import Classifier
    from multimodal.training.classifier import LossSpec, train_step
    from multimodal.training.trainer import Stepper

    def fresh():
        model = Classifier(7, "image+meta", meta_dim=meta_dim, encoder=name, rngs=nnx.Rngs(0))
        return model, nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)

    rng = np.random.default_rng(0)
    model, _ = fresh()
    batch_arrays = {"image": jnp.asarray(rng.normal(size=(batch, model.encoder.embed_dim)),
                                         jnp.float32),
                    "metadata": jnp.asarray(rng.normal(size=(batch, meta_dim)), jnp.float32),
                    "metadata_mask": jnp.ones(batch), "label": jnp.asarray(rng.integers(0, 7, batch))}
    spec, key, class_w = LossSpec("cross_entropy", 0.0, 2.0), jax.random.key(0), jnp.ones(7)
    graph_jit = nnx.jit(train_step, static_argnums=(0, 6))
    model, opt = fresh()
    stepper = Stepper(*fresh(), features_from="pooled")

    def run_graph():
        graph_jit(spec, model, opt, batch_arrays, key, class_w, "pooled")[0].block_until_ready()

    def run_split():
        stepper(spec, batch_arrays, key, class_w)[0].block_until_ready()

    leaves = len(jax.tree.leaves(nnx.state((model, opt))))
    return run_graph, run_split, leaves


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "resnet50"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows, data = [], {}
    for name in args.models:
        run_graph, run_split, leaves = steppers(name, args.batch)
        g, g_times = median_time(lambda: [run_graph() for _ in range(args.steps)], args.repeats, 1)
        s, s_times = median_time(lambda: [run_split() for _ in range(args.steps)], args.repeats, 1)
        g_ms, s_ms = 1000 * g / args.steps, 1000 * s / args.steps
        data[name] = {"nnx_jit_ms": g_ms, "split_jit_ms": s_ms, "state_leaves": leaves,
                      "nnx_jit_times": g_times, "split_jit_times": s_times}
        rows.append(f"| {name} | {leaves} | {g_ms:.1f} | {s_ms:.1f} | {g / s:.1f}x |")
        print(rows[-1], flush=True)
    lines = [f"# Train-step overhead: heads on cached pooled features, batch {args.batch}", "",
             f"Median of {args.repeats} timings of {args.steps} steps after warm-up; same "
             "`classifier.train_step`, image+meta concat head, AdamW.", "",
             "| encoder in the model | state arrays | nnx.jit ms/step | jax.jit on split state "
             "ms/step | speed-up |", "| --- | ---: | ---: | ---: | ---: |", *rows]
    path = write_result("step_overhead_cpu", "\n".join(lines), data)
    print("\n".join(lines))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
