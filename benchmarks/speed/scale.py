"""Cost at scale: each stage of the pipeline on synthetic HAM10000-like data of growing size,
wall time and peak memory per image, to see which stage grows faster than linearly.

    python -m benchmarks.speed.scale --sizes 1000 10000 100000 --out /tmp/scale
    python -m benchmarks.speed.scale --smoke          # 60 and 120 images, a minute (the test)

The data (`synth`, not a stage): lesion-like 600x450 JPEGs (a skin-toned gradient, two or
three blurred blobs of a class colour, sensor noise), in HAM10000's file layout and metadata
columns, the class mix of HAM10000 and 1-3 images per lesion (the same blobs shifted), made
by two processes. The stages, each in a fresh process (`--stage`), as the toolkit runs them:

- `split`: load and check the table, sha256 of every file, 256-bit perceptual hash of every
  picture and the near-duplicate search across lesions (`near_duplicates: all`), the grouped
  stratified split and its leak check (data/split/build.py `resolve_split`);
- `prepare_w1`, `prepare_w2`: ArrayRecord preparation at 128 px with 1 and 2 worker threads
  (data/records/prepare.py);
- `epoch`: one pass of the training input pipeline over the prepared training split (Grain,
  in-process with 2 threads: decode, flips, rotation, colour jitter, crop, normalise,
  metadata), batch 32;
- `features`: EfficientNet-Lite0 forward (random weights: the cost is the same) over every
  prepared image at 128 px, batch 64, jitted;
- `stacker`: the XGBoost stacker (ensemble/stacking.py) on N rows of 7 probabilities + 3
  metadata columns, 100 rounds without early stopping (so the work per row is fixed);
- `bootstrap`: the evaluation's 1,000-resample lesion bootstrap of every metric
  (evaluation/scoring.py `evaluate_predictions`) on N rows.

`--stages` runs some of them (the ones a stage reads from are added: split, then
prepare_w2). `--table-rows` sizes the last two apart (they need no images: up to 1M rows). What was measured
is kept in OUT/measured.json, so the command continues after a stop (`--fresh`: again). Peak
memory is the process's maximum resident set (ru_maxrss) minus what it held before the stage
began (imports, the model), per image or row; seconds are wall time of the stage alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from benchmarks.common import ROOT, publish

IMAGE_STAGES = ("split", "prepare_w1", "prepare_w2", "epoch", "features")
TABLE_STAGES = ("stacker", "bootstrap")
NEEDS = {"prepare_w1": ("split",), "prepare_w2": ("split",), "epoch": ("split", "prepare_w2"),
         "features": ("split", "prepare_w2")}  # split.csv, then the prepared records
CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
SHARE = np.array([327, 514, 1099, 115, 1113, 6705, 142], float) / 10015  # HAM10000's mix
SITES = ("back", "lower extremity", "trunk", "upper extremity", "abdomen", "face", "chest")
MARK = "SCALE_RESULT "


def _status_kb(field: str) -> int | None:
    """A /proc/self/status field in kB (Linux): VmRSS (now), VmHWM (peak since reset)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _start_kb() -> int:
    """What the process holds now, with its peak reset to it (so an earlier peak, the
    imports or a warm-up, cannot hide the stage's): Linux's clear_refs 5; elsewhere the peak
    so far, a lower bound of what the stage adds."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kb("VmRSS") or _peak_kb()
    except OSError:
        return _peak_kb()


def _peak_kb() -> int:
    return _status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# ---- the data ---------------------------------------------------------------------------

def _lesion_rows(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows, lesion = [], 0
    while len(rows) < n:
        label = CLASSES[rng.choice(7, p=SHARE)]
        age, sex, site = 5 * int(rng.integers(2, 18)), rng.choice(["male", "female"]), \
            rng.choice(SITES)
        for _ in range(min(n - len(rows), 1 + rng.choice(3, p=[0.75, 0.17, 0.08]))):
            rows.append({"lesion_id": f"SYN_L{lesion:07d}", "image_id": f"SYN_{len(rows):07d}",
                         "dx": label, "dx_type": "synthetic", "age": age, "sex": sex,
                         "localization": site, "lesion": lesion})
        lesion += 1
    return rows


def _picture(row: dict, seed: int):
    """A 600x450 lesion-like picture; the images of one lesion share its blobs, shifted."""
    from PIL import Image, ImageDraw, ImageFilter

    lesion = np.random.default_rng([seed, row["lesion"]])
    shot = np.random.default_rng([seed, row["lesion"], int(row["image_id"][4:])])
    skin = lesion.uniform([150, 100, 80], [245, 215, 190])
    ramp = np.linspace(-1, 1, 600)[None, :, None] * lesion.uniform(-30, 30, 3)
    image = Image.fromarray(np.clip(skin + ramp + np.zeros((450, 1, 3)), 0, 255)
                            .astype(np.uint8))
    draw = ImageDraw.Draw(image)
    c = CLASSES.index(row["dx"])
    dx, dy = shot.integers(-25, 26, 2)
    for _ in range(int(lesion.integers(2, 4))):
        x, y = lesion.integers(150, 450), lesion.integers(100, 350)
        rx, ry = lesion.integers(30, 140, 2)
        tone = (np.array([90 + 20 * c, 60 + 10 * c, 40 + 5 * c]) * lesion.uniform(0.6, 1.2))
        draw.ellipse([x + dx - rx, y + dy - ry, x + dx + rx, y + dy + ry],
                     fill=tuple(int(v) for v in np.clip(tone, 0, 255)))
    image = image.filter(ImageFilter.GaussianBlur(6))
    noise = shot.normal(0, 6, (450, 600, 1))
    return Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))


def _write_pictures(args) -> None:
    rows, folder, seed = args
    for row in rows:
        _picture(row, seed).save(os.path.join(folder, row["image_id"] + ".jpg"), quality=90)


def synth(root: str, n: int, seed: int = 0, processes: int = 2) -> float:
    """Write the synthetic set (module docstring) to root; seconds it took (0 when present)."""
    import csv
    from multiprocessing import Pool

    done = os.path.join(root, "DONE")
    if os.path.exists(done):
        return 0.0
    t0 = time.perf_counter()
    folder = os.path.join(root, "images")
    os.makedirs(folder, exist_ok=True)
    rows = _lesion_rows(n, seed)
    chunks = [(rows[i:i + 200], folder, seed) for i in range(0, n, 200)]
    if processes <= 1:  # in this process: no fork (unsafe in a process that runs JAX)
        for chunk in chunks:
            _write_pictures(chunk)
    else:
        with Pool(processes) as pool:
            pool.map(_write_pictures, chunks, chunksize=1)
    with open(os.path.join(root, "HAM10000_metadata.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, ["lesion_id", "image_id", "dx", "dx_type", "age", "sex",
                                    "localization"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    seconds = time.perf_counter() - t0
    with open(done, "w") as f:
        json.dump({"images": n, "seconds": seconds}, f)
    return seconds


# ---- the stages, each in its own process ------------------------------------------------

def _data_cfg(root: str):
    from multimodal.config import DataConfig

    return DataConfig(source="ham10000", options={"root": root}, near_duplicates="all",
                      verify="exists")


def stage_split(root: str) -> dict:
    from multimodal.data.split.build import load_table, resolve_split

    base, t0 = _start_kb(), time.perf_counter()
    table = load_table(_data_cfg(root))
    split = resolve_split(table, _data_cfg(root), save_to=os.path.join(root, "split.csv"))
    return {"seconds": time.perf_counter() - t0, "base_kb": base, "rows": len(split)}


def _table_and_split(root: str):
    import pandas as pd

    from multimodal.data.split.build import load_table

    table = load_table(_data_cfg(root))
    return table, pd.read_csv(os.path.join(root, "split.csv"), dtype=str)


def stage_prepare(root: str, workers: int) -> dict:
    import shutil

    from multimodal.data.records.prepare import prepare

    table, split = _table_and_split(root)
    out = os.path.join(root, f"prepared_w{workers}")
    shutil.rmtree(out, ignore_errors=True)
    base, t0 = _start_kb(), time.perf_counter()
    prepare(table, split, out, image_size=128, workers=workers, progress=False)
    return {"seconds": time.perf_counter() - t0, "base_kb": base}


def _loader(root: str, split: str, train: bool):
    from multimodal.data.pipeline import loaders
    from multimodal.data.pipeline.metadata import MetadataEncoder
    from multimodal.data.records import prepare

    out = os.path.join(root, "prepared_w2")
    manifest = prepare.read_manifest(out)
    source = prepare.open_split(out, split)
    encoder = MetadataEncoder(manifest["metadata"]).fit(prepare.split_frame(source, manifest))
    ops = ["flip_h", "flip_v", {"rotate": {"degrees": 20}}, "color_jitter"] if train else []
    return loaders.ExampleLoader(source, manifest["classes"], encoder, manifest["metadata"],
                                 ops, 128, loaders.Normalizer.named("imagenet"), train=train,
                                 seed=0)


def stage_epoch(root: str) -> dict:
    from multimodal.data.pipeline import loaders

    loader = _loader(root, "train", True)
    n = len(loader.source)
    plan = np.stack([np.arange(n), np.arange(n)], 1)
    base, t0, images = _start_kb(), time.perf_counter(), 0
    for batch in loaders.train_dataset(loader, plan, 32, workers=0, threads=2):
        images += len(batch["label"])
    return {"seconds": time.perf_counter() - t0, "base_kb": base, "images": images}


def stage_features(root: str) -> dict:
    import jax
    from flax import nnx

    from multimodal.config import ModelConfig
    from multimodal.data.pipeline import loaders
    from multimodal.models import build_model

    model = build_model(ModelConfig(encoder="efficientnet_lite0"), "image", 7, 0)
    encoder = model.encoder
    encoder.eval()
    forward = nnx.jit(lambda e, x: e(x))
    jax.block_until_ready(forward(encoder, np.zeros((64, 128, 128, 3), np.float32)))
    base = _start_kb()
    t0, images = time.perf_counter(), 0
    for split in ("train", "val", "test"):
        for batch in loaders.eval_dataset(_loader(root, split, False), 64, threads=2):
            jax.block_until_ready(forward(encoder, batch["image"]))
            images += int(batch["mask"].sum()) if "mask" in batch else len(batch["image"])
    return {"seconds": time.perf_counter() - t0, "images": images, "base_kb": base}


def _table(n: int, seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    y = rng.choice(7, size=n, p=SHARE)
    y[::8] = np.arange(len(y[::8])) % 7  # every class in every part, even in the smoke rows
    logits = rng.normal(0, 1, (n, 7)) + 2.0 * np.eye(7)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    groups = np.arange(n) // 1.34  # HAM10000: about 1.34 images per lesion
    X = pd.DataFrame(probs, columns=[f"prob_{c}" for c in CLASSES])
    X["age"], X["sex"], X["site"] = rng.integers(5, 90, n), rng.integers(0, 2, n), \
        rng.integers(0, 15, n)
    return X, y, groups.astype(np.int64), probs


def stage_stacker(n: int) -> dict:
    from multimodal.ensemble.stacking import Stacker

    X, y, groups, _ = _table(n)
    base = _start_kb()
    t0 = time.perf_counter()
    stacker = Stacker(list(CLASSES), n_estimators=100, early_stopping_rounds=None)
    stacker.fit(X, y, groups).predict_proba(X)
    return {"seconds": time.perf_counter() - t0, "base_kb": base}


def stage_bootstrap(n: int) -> dict:
    from multimodal.evaluation.scoring import evaluate_predictions

    _, y, groups, probs = _table(n)
    base = _start_kb()
    t0 = time.perf_counter()
    evaluate_predictions(y, probs, groups, list(CLASSES), 1000)
    return {"seconds": time.perf_counter() - t0, "base_kb": base}


def run_stage(stage: str, root: str, n: int) -> dict:
    """Run one stage in this process and return its measurements (each stage times itself
    and takes its memory baseline after its own imports and set-up)."""
    if stage == "split":
        out = stage_split(root)
    elif stage.startswith("prepare_w"):
        out = stage_prepare(root, int(stage[len("prepare_w"):]))
    elif stage == "epoch":
        out = stage_epoch(root)
    elif stage == "features":
        out = stage_features(root)
    elif stage == "stacker":
        out = stage_stacker(n)
    else:
        out = stage_bootstrap(n)
    seconds, base, peak = out.pop("seconds"), out.pop("base_kb"), _peak_kb()
    return {"stage": stage, "n": n, "seconds": seconds, "peak_kb": peak,
            "extra_kb": max(0, peak - base), **out}


def _child(stage: str, root: str, n: int, log) -> dict:
    """The stage in a fresh Python process (its own peak memory), its result line parsed."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.speed.scale", "--stage", stage,
                           "--root", root, "--n", str(n)], cwd=ROOT, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: stage {stage} at {n} failed:\n{done.stderr[-3000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith(MARK))
    result = json.loads(line[len(MARK):])
    log(f"{stage:>11} n={n:>8}: {result['seconds']:8.1f} s, peak {result['peak_kb'] / 1024:7.0f}"
        f" MB (+{result['extra_kb'] / 1024:.0f} MB)")
    return result


# ---- the table --------------------------------------------------------------------------

def _rows(results: list[dict], stages) -> tuple[list[str], dict]:
    lines, ratios = [], {}
    for stage in stages:
        mine = sorted((r for r in results if r["stage"] == stage), key=lambda r: r["n"])
        for r in mine:
            items = r.get("images") or r["n"]  # an epoch: the training split's images
            lines.append(f"| {stage} | {r['n']:,} | {items:,} | {r['seconds']:.1f} | "
                         f"{1e3 * r['seconds'] / items:.3f} | {r['peak_kb'] / 1024:.0f} | "
                         f"{1024 * r['extra_kb'] / items:,.0f} |")
        if len(mine) >= 2:  # the two largest sizes: cost per item at the largest / the next
            a, b = mine[-2], mine[-1]
            na, nb = a.get("images") or a["n"], b.get("images") or b["n"]
            ratios[stage] = {"sizes": [a["n"], b["n"]],
                             "time_ratio": (b["seconds"] / nb) / (a["seconds"] / na),
                             "memory_ratio": ((b["extra_kb"] / nb) / (a["extra_kb"] / na)
                                              if a["extra_kb"] else None)}
    return lines, ratios


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--table-rows", type=int, nargs="+", default=[10000, 100000, 1000000],
                        help="rows for the stacker and the bootstrap")
    parser.add_argument("--stages", nargs="+", default=[*IMAGE_STAGES, *TABLE_STAGES],
                        choices=[*IMAGE_STAGES, *TABLE_STAGES])
    parser.add_argument("--out", default="/tmp/multimodal_scale", help="data and prepared "
                        "folders (100k images: about 4 GB)")
    parser.add_argument("--fresh", action="store_true",
                        help="measure again what OUT/measured.json holds (default: reuse)")
    parser.add_argument("--smoke", action="store_true",
                        help="60 and 120 images, 500 and 1000 rows")
    parser.add_argument("--name", default="scale_cpu")
    parser.add_argument("--results", default=None, help="folder for the result files")
    parser.add_argument("--stage", help=argparse.SUPPRESS)  # a child: one stage
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(MARK + json.dumps(run_stage(args.stage, args.root, args.n)), flush=True)
        return
    if args.smoke:
        args.sizes, args.table_rows = [60, 120], [500, 1000]
    asked = set(args.stages)  # a stage reads what the ones before it wrote: add those
    for stage, before in NEEDS.items():
        if stage in asked:
            asked |= set(before)
    args.stages = [s for s in (*IMAGE_STAGES, *TABLE_STAGES) if s in asked]
    log = lambda line: print(line, flush=True)  # noqa: E731
    os.makedirs(args.out, exist_ok=True)
    kept = os.path.join(args.out, "measured.json")  # a stopped run keeps what it measured
    done = {}
    if os.path.exists(kept) and not args.fresh:
        with open(kept) as f:
            done = {(r["stage"], r["n"]): r for r in json.load(f)}

    def measure(stage, root, n):
        if (stage, n) not in done:
            done[(stage, n)] = _child(stage, root, n, log)
            with open(kept + ".tmp", "w") as f:
                json.dump(list(done.values()), f)
            os.replace(kept + ".tmp", kept)
        return done[(stage, n)]

    results, made = [], {}
    for n in args.sizes:
        root = os.path.join(args.out, f"n{n}")
        made[n] = synth(root, n)
        log(f"data n={n}: {made[n]:.0f} s to draw (0: drawn before)")
        results += [measure(s, root, n) for s in args.stages if s in IMAGE_STAGES]
    for n in args.table_rows:
        results += [measure(s, args.out, n) for s in args.stages if s in TABLE_STAGES]
    stages = list(args.stages)
    lines, ratios = _rows(results, stages)
    verdict = [f"| {s} | {r['sizes'][0]:,} -> {r['sizes'][1]:,} | {r['time_ratio']:.2f} | "
               + (f"{r['memory_ratio']:.2f}" if r["memory_ratio"] is not None else "-") + " |"
               for s, r in ratios.items()]
    table = ["# Cost at scale: time and memory per image (synthetic HAM10000-like data)", "",
             (f"Images: {', '.join(f'{n:,}' for n in args.sizes)} lesion-like 600x450 JPEGs; "
              f"table rows: {', '.join(f'{n:,}' for n in args.table_rows)}. Each stage in a fresh "
              "process (benchmarks/speed/scale.py says what each does); extra memory is the "
              "peak resident set minus what the process held before the stage."), "",
             "| stage | images or rows | items processed | seconds | ms per item | peak MB | "
             "extra bytes per item |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
             *lines, "",
             "Linear cost means a ratio near 1: cost per item at the largest size over that at "
             "the next size (the goal: within 1.25).", "",
             "| stage | sizes | time per item, ratio | extra memory per item, ratio |",
             "| --- | --- | ---: | ---: |", *verdict]
    publish(args.name, table, {"results": results, "ratios": ratios, "synth_seconds": made},
            **({"folder": args.results} if args.results else {}))


if __name__ == "__main__":
    main()
