"""Input pipeline throughput: Grain against a plain Python loop doing the same work.

    python -m benchmarks.speed.input_pipeline --data ../shared/data/ham10000 --size 224 --images 512

Two inputs, each read by every pipeline in the same run, producing the same batches:

- `records`: the prepared ArrayRecord split (JPEG bytes already resized so the short
  side is `size`, what training reads). Every pipeline maps the same `ExampleLoader`
  (read record, decode the JPEG with PIL, augment, random crop, normalise, metadata
  row) over the same plan and stacks batches of `--batch`; the plain loop calls it in
  one thread, Grain in-process with 1 and all-cores threads and with 1 and 2 worker
  processes.
- `originals`: the original JPEG files; every pipeline maps the same function (open
  the file, decode, resize the short side to `size`, then the same augmentation,
  crop and normalisation); the plain loop against Grain in-process with 1 and
  all-cores threads.

Before timing, a first (warm-up) pass of every pipeline records a digest of each batch;
they must all be equal within an input, so the pipelines did the same work. Then
`--repeats` timed passes, interleaved (pipeline A, B, ... then again) so that a change
in machine load hits all of them alike; the table gives the median images/s and the
ratio of each pipeline's median time to that of the plain loop over the same input.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time

import numpy as np
from PIL import Image

from benchmarks.common import command_line, write_result

from multimodal.data.pipeline import loaders
from multimodal.data.records import prepare
from multimodal.data.images.augment import apply_ops, parse_ops
from multimodal.data.pipeline.metadata import MetadataEncoder
from multimodal.data.records.prepare import resize_short_side
from multimodal.data.sources import ham10000

OPS = ["flip_h", "flip_v", {"rotate": {"degrees": 20}}, "color_jitter"]


class OriginalLoader:
    """(position, index) -> example from an original image file: decode, resize, augment,
    crop, normalise; seeded by position like `loaders.ExampleLoader`."""

    def __init__(self, paths, labels, size, normalizer, seed=0):
        self.paths, self.labels = list(paths), np.asarray(labels, np.int32)
        self.ops, self.size, self.normalizer, self.seed = parse_ops(OPS), size, normalizer, seed

    def __call__(self, item) -> dict:
        position, index = int(item[0]), int(item[1])
        rng = np.random.default_rng([self.seed, position])
        with Image.open(self.paths[index]) as im:
            image = np.asarray(resize_short_side(im.convert("RGB"), self.size))
        image = apply_ops(image, self.ops, rng, train=True)
        image = self.normalizer(loaders.crop(image, self.size, rng))
        return {"image": image, "label": self.labels[index]}


def python_loop(loader, plan, batch):
    """The peer: the same per-example function in one thread, batches stacked like Grain's
    (remainder dropped)."""
    for start in range(0, len(plan) - batch + 1, batch):
        examples = [loader(item) for item in plan[start:start + batch]]
        yield {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def digest(batch) -> str:
    h = hashlib.sha1()
    for key in ("image", "label", "metadata", "metadata_mask"):
        if key in batch:
            h.update(np.ascontiguousarray(batch[key]).tobytes())
    return h.hexdigest()


def measure(pipelines: dict, n_images: int, repeats: int) -> dict:
    """{name: {"times": [...], "digests": [...]}}: one digest-recording warm-up pass each, then
    `repeats` interleaved timed passes."""
    out = {}
    for name, make in pipelines.items():
        digests = [digest(b) for b in make()]
        out[name] = {"digests": digests, "times": [], "cpu": []}
        print(f"  warm-up {name}: {len(digests)} batches", flush=True)
    for r in range(repeats):
        for name, make in pipelines.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in make():
                pass
            out[name]["times"].append(time.perf_counter() - t0)
            out[name]["cpu"].append(time.process_time() - c0)  # this process's threads only
            print(f"  repeat {r + 1} {name}: {n_images / out[name]['times'][-1]:.0f} img/s",
                  flush=True)
    return out


def table_rows(results: dict, n_images: int, peer: str) -> tuple[list[str], dict]:
    reference = results[peer]["digests"]
    peer_t = statistics.median(results[peer]["times"])
    lines, data = [], {}
    for name, r in results.items():
        if r["digests"] != reference:
            raise AssertionError(f"{name} produced other batches than {peer}")
        t = statistics.median(r["times"])
        cpu = statistics.median(r["cpu"])
        data[name] = {"median_s": t, "images_per_s": n_images / t, "ratio_to_loop": peer_t / t,
                      "times_s": r["times"], "process_cpu_s": r["cpu"]}
        cpu_cell = "(in workers)" if "worker" in name else f"{1000 * cpu / n_images:.1f}"
        lines.append(f"| {name} | {t:.2f} | {n_images / t:.0f} | {peer_t / t:.2f} | {cpu_cell} |")
    return lines, data


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.join("..", "shared", "data", "ham10000"))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=1024, help="first N images of the table")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-originals", action="store_true",
                        help="skip the comparison on the original files")
    parser.add_argument("--prepared", help="prepared-data folder (default: a temp folder)")
    args = parser.parse_args()

    table = ham10000.load(args.data)
    table = table.subset(table.frame["image_id"][: args.images])
    split = table.frame[["image_id", "group_id", "label"]].assign(split="train")
    out = args.prepared or tempfile.mkdtemp(prefix="bench_prepared_")
    manifest = prepare.prepare(table, split, out, args.size)
    source = prepare.open_split(out, "train")
    encoder = MetadataEncoder(manifest["metadata"]).fit(prepare.split_frame(source, manifest))
    normalizer = loaders.Normalizer.named("imagenet")
    loader = loaders.ExampleLoader(source, manifest["classes"], encoder, manifest["metadata"],
                                   OPS, args.size, normalizer, train=True, seed=0)
    n = len(source)
    plan = np.stack([np.arange(n), np.arange(n)], 1)
    timed = n - n % args.batch  # images per pass (whole batches)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load_before = os.getloadavg()

    def grain(fn, workers, threads):
        return lambda: loaders.train_dataset(fn, plan, args.batch, workers=workers,
                                             threads=threads)

    records = {"Python loop, 1 thread": lambda: python_loop(loader, plan, args.batch)}
    for threads in sorted({1, cores}):
        records[f"Grain in-process, {threads} thread(s)"] = grain(loader, 0, threads)
    for workers in (1, 2):
        records[f"Grain, {workers} worker process(es)"] = grain(loader, workers, 1)
    print("records:", flush=True)
    rec_lines, rec_data = table_rows(measure(records, timed, args.repeats), timed,
                                     "Python loop, 1 thread")

    orig_lines, orig_data, original_size = [], {}, ""
    if not args.no_originals:
        # the same rows, in the prepared split's order, from their original files
        paths = table.frame.set_index("image_id").loc[
            [source[i]["image_id"].decode() for i in range(n)], "image_path"]
        labels = [source[i]["label"] for i in range(n)]
        original = OriginalLoader(paths, labels, args.size, normalizer)
        with Image.open(paths.iloc[0]) as im:
            original_size = "x".join(map(str, im.size))
        originals = {"Python loop, 1 thread": lambda: python_loop(original, plan, args.batch)}
        for threads in sorted({1, cores}):
            originals[f"Grain in-process, {threads} thread(s)"] = grain(original, 0, threads)
        print("originals:", flush=True)
        orig_lines, orig_data = table_rows(measure(originals, timed, args.repeats), timed,
                                           "Python loop, 1 thread")
    load_after = os.getloadavg()

    header = ["| pipeline | median s / pass | images/s | ratio to the Python loop | CPU ms / image |",
              "| --- | ---: | ---: | ---: | ---: |"]
    command = command_line()
    title = (f"# Input pipeline throughput ({n} HAM10000 images, {args.size} px, batch "
             f"{args.batch}, augmentation {OPS})")
    method = (f"Each pass: {timed} images in {timed // args.batch} batches. One warm-up pass per "
              "pipeline, whose batch digests are equal across the pipelines of an input (same "
              f"work, same batches), then the median of {args.repeats} interleaved passes. "
              f"{cores} CPU cores; load average (1 min) {load_before[0]:.2f} before, "
              f"{load_after[0]:.2f} after. Every pass builds its pipeline anew, so the worker-"
              "process rows include starting the workers each pass, which training pays once "
              "per run (its iterator covers all epochs). CPU ms / image: CPU time of this "
              "process's threads per image (median pass), the work done whatever the load.")
    records_title = (f"## Prepared records (ArrayRecord, JPEG with short side {args.size} px): "
                     "decode + augment + crop + normalise + metadata")
    lines = [f"Command: `{command}`", "", title, "", method, "", records_title, "",
             *header, *rec_lines]
    if orig_lines:
        originals_title = (f"## Original files (JPEG, {original_size} px): decode + resize to "
                           f"{args.size} px + augment + crop + normalise")
        lines += ["", originals_title, "", *header, *orig_lines]
    path = write_result("input_pipeline", "\n".join(lines),
                        {"command": command, "records": rec_data, "originals": orig_data,
                         "images": n, "images_per_pass": timed, "size": args.size, "batch": args.batch,
                         "repeats": args.repeats, "augment": OPS,
                         "load_average_before_after": [load_before, load_after]})
    print("\n".join(lines))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
