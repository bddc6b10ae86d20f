"""Input pipeline throughput: Grain over prepared ArrayRecord vs a plain PIL loop.

    python benchmarks/input_pipeline.py --data ../shared/data/ham10000 --size 224 --images 1024

Both paths do the same work per image (decode, resize to `size` on the short side,
random crop, flips, rotation, colour jitter, normalisation); the PIL loop reads the
original JPEG files one by one in one process. Reports the median images/s of
`--repeats` passes for the PIL loop, Grain in-process with 1 and all-cores threads,
and Grain with 1, 2 and all cores as worker processes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import median_time, write_result  # noqa: E402

from multimodal.data import pipeline, prepare  # noqa: E402
from multimodal.data.augment import apply_ops, parse_ops  # noqa: E402
from multimodal.data.metadata import MetadataEncoder  # noqa: E402
from multimodal.data.prepare import resize_short_side  # noqa: E402
from multimodal.data.sources import ham10000  # noqa: E402

OPS = ["flip_h", "flip_v", {"rotate": {"degrees": 20}}, "color_jitter"]


def pil_loop(paths, size, normalizer, seed=0):
    ops = parse_ops(OPS)
    for i, path in enumerate(paths):
        rng = np.random.default_rng([seed, i])
        with Image.open(path) as im:
            image = np.asarray(resize_short_side(im.convert("RGB"), size))
        image = apply_ops(image, ops, rng, train=True)
        normalizer(pipeline.crop(image, size, rng))


def grain_pass(loader, n, batch, workers, threads):
    plan = np.stack([np.arange(n), np.arange(n) % len(loader.source)], 1)
    for _ in pipeline.train_dataset(loader, plan, batch, workers=workers, threads=threads):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.join("..", "shared", "data", "ham10000"))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prepared", help="prepared-data folder (default: a temp folder)")
    args = parser.parse_args()

    table = ham10000.load(args.data)
    table = table.subset(table.frame["image_id"][: args.images])
    split = table.frame[["image_id", "group_id", "label"]].assign(split="train")
    out = args.prepared or tempfile.mkdtemp(prefix="bench_prepared_")
    manifest = prepare.prepare(table, split, out, args.size)
    source = prepare.open_split(out, "train")
    encoder = MetadataEncoder(manifest["metadata"]).fit(prepare.split_frame(source, manifest))
    normalizer = pipeline.Normalizer.named("imagenet")
    loader = pipeline.ExampleLoader(source, manifest["classes"], encoder, manifest["metadata"],
                                    OPS, args.size, normalizer, train=True, seed=0)
    n = len(source)
    cores = os.cpu_count() or 1
    rows = {}
    t, _ = median_time(lambda: pil_loop(table.frame["image_path"], args.size, normalizer),
                       args.repeats)
    rows["PIL loop, 1 process"] = n / t
    for threads in sorted({1, cores}):
        t, _ = median_time(lambda: grain_pass(loader, n, args.batch, 0, threads), args.repeats)
        rows[f"Grain, in-process, {threads} thread(s)"] = n / t
    for workers in sorted({1, 2, cores}):
        t, _ = median_time(lambda: grain_pass(loader, n, args.batch, workers, 1), args.repeats)
        rows[f"Grain, {workers} worker process(es)"] = n / t
    base = rows["PIL loop, 1 process"]
    lines = [f"# Input pipeline throughput ({n} HAM10000 images, {args.size} px, augmentation "
             f"{OPS}, batch {args.batch})", "",
             f"Median of {args.repeats} passes after one warm-up pass; {cores} CPU cores.", "",
             "| pipeline | images/s | ratio to PIL loop |", "| --- | ---: | ---: |"]
    lines += [f"| {k} | {v:.0f} | {v / base:.2f} |" for k, v in rows.items()]
    path = write_result("input_pipeline", "\n".join(lines),
                        {"images_per_s": rows, "images": n, "size": args.size})
    print("\n".join(lines))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
