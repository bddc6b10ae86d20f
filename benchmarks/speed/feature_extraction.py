"""EfficientNet-Lite0 inference (feature extraction) on the CPU: JAX formulations vs torch.

    python -m benchmarks.speed.feature_extraction --size 224 --batches 1 8 32

Same run, same random images: our JAX Lite0 encoder (eval mode, jitted) with the
depthwise convolution written as k*k shifted multiply-adds (`shift`, the default) or
as XLA's grouped convolution (`grouped`, feature_group_count = channels), `shift` with
every BatchNorm folded into its convolution (`shift_folded`, what extract_features.py
runs), against the same architecture in torch (eval, inference_mode, all cores).
Median of `--repeats` timings after a warm-up (the JAX warm-up includes compilation).
The JAX formulations are checked to agree on the same ImageNet weights before timing.

`--extract CONFIG` also times scripts/extract_features.py over the whole dataset of
CONFIG into a fresh root (removed afterwards); `--extract-set` passes overrides, e.g.
an existing `data.prepared_dir` so only the encoder pass is timed.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from benchmarks.common import median_time, run_script, write_result


def jax_forward(impl, batch, size, seed=0):
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from multimodal.models import create_encoder

    base, _, fold = impl.partition("_")
    encoder = create_encoder("efficientnet_lite0", depthwise_impl=base, rngs=nnx.Rngs(seed))
    encoder.eval()
    if fold:  # "shift_folded": BatchNorm folded into the kernels
        encoder = encoder.folded()
    images = jnp.asarray(np.random.default_rng(0).normal(size=(batch, size, size, 3)),
                         jnp.float32)
    forward = nnx.jit(lambda m, x: m(x))
    return lambda: jax.block_until_ready(forward(encoder, images)), encoder, images


def torch_forward(batch, size, threads):
    import torch

    from benchmarks.speed.torch_reference import EfficientNetLite0

    torch.set_num_threads(threads)
    model = EfficientNetLite0().eval()
    images = torch.from_numpy(np.random.default_rng(0).normal(size=(batch, 3, size, size))
                              .astype(np.float32))

    def run():
        with torch.inference_mode():
            model.trunk(images).mean((2, 3))
    return run


def time_extraction(args) -> dict:
    import json
    import shutil
    import tempfile
    import time

    root = tempfile.mkdtemp(prefix="feature-extraction-")
    try:
        t0 = time.perf_counter()
        run_script("scripts/extract_features.py", "--config", args.extract, "--root", root,
                   "--batch-size", str(args.extract_batch), "--no-progress",
                   *[x for s in args.extract_set for x in ("--set", s)])
        seconds = time.perf_counter() - t0
        (cache,) = os.listdir(os.path.join(root, "features"))
        with open(os.path.join(root, "features", cache, "key.json")) as f:
            images = json.load(f)["shape"][0]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"images": images, "seconds": seconds, "images_per_s": images / seconds}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--impls", nargs="+", default=["shift_folded", "shift", "grouped"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--name", default="feature_extraction_cpu")
    parser.add_argument("--extract", metavar="CONFIG", help="also time a full extraction")
    parser.add_argument("--extract-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--extract-batch", type=int, default=8)
    args = parser.parse_args()
    import jax
    import torch

    threads = os.cpu_count()
    # correctness first: the formulations on the same (ImageNet) weights and real photos
    from skimage import data as photos

    from multimodal.models.pretrained import load_pretrained_encoder

    _, enc, _ = jax_forward("shift", 2, args.size)
    grouped = jax_forward("grouped", 2, args.size)[1]
    for module in (enc, grouped):
        load_pretrained_encoder(module, "efficientnet_lite0")
    x = np.stack([(np.asarray(p[:args.size, :args.size], np.float32) - 127) / 128
                  for p in (photos.chelsea(), photos.coffee())])
    a = np.asarray(enc(x))
    diffs = {name: float(np.abs(a - np.asarray(module(x))).max())
             for name, module in (("grouped", grouped), ("shift_folded", enc.folded()))}
    print(f"max |diff| against shift: {diffs} (embedding std {a.std():.3f})", flush=True)

    rows, data = [], {"max_abs_diff_vs_shift": diffs, "results": []}
    for batch in args.batches:
        rates = {}
        for impl in args.impls:
            fn = jax_forward(impl, batch, args.size)[0]
            t, times = median_time(fn, args.repeats)
            rates[f"jax_{impl}"] = batch / t
        t, _ = median_time(torch_forward(batch, args.size, threads), args.repeats)
        rates["torch"] = batch / t
        data["results"].append({"batch": batch, **rates})
        cells = " | ".join(f"{rates[f'jax_{i}']:.1f}" for i in args.impls)
        rows.append(f"| {batch} | {cells} | {rates['torch']:.1f} | "
                    f"{rates['jax_' + args.impls[0]] / rates['torch']:.2f} |")
        print(rows[-1], flush=True)
    best = {k: max(r[k] for r in data["results"]) for k in data["results"][0] if k != "batch"}
    data["best"] = best
    lines = [f"# EfficientNet-Lite0 forward (feature extraction), {args.size} px, float32, CPU", "",
             f"JAX {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} with "
             f"{threads} threads. Images/s, median of {args.repeats} timings after a warm-up. "
             "Against `shift`, max abs difference of the ImageNet Lite0 embeddings of two photos: "
             + ", ".join(f"`{k}` {v:.1e}" for k, v in diffs.items()) + ".",
             "", "| batch | " + " | ".join(f"JAX {i} img/s" for i in args.impls)
             + " | torch img/s | JAX " + args.impls[0] + " / torch |",
             "| ---: | " + " | ".join("---:" for _ in args.impls) + " | ---: | ---: |", *rows, "",
             "Best batch each: " + ", ".join(f"{k} {v:.1f} img/s" for k, v in best.items())
             + f"; JAX {args.impls[0]} / torch at their best batches: "
             f"{best['jax_' + args.impls[0]] / best['torch']:.2f}."]
    if args.extract:
        data["extraction"] = time_extraction(args)
        e = data["extraction"]
        lines += ["", f"Whole dataset: `scripts/extract_features.py --config {args.extract}` "
                  f"(batch {args.extract_batch}, overrides {args.extract_set or 'none'}) cached "
                  f"{e['images']} images in {e['seconds'] / 60:.1f} min ({e['images_per_s']:.1f} "
                  "img/s, reading and decoding included)."]
    path = write_result(args.name, "\n".join(lines), data)
    print("\n".join(lines))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
