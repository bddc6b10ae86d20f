"""Lesion segmentation on HAM10000: a U-Net trained on the CPU and evaluated on the grouped
test split (the same lesion-grouped split as the classification benchmarks: split_seed 0).

    python -m benchmarks.quality.segmentation                       # full run, results to
        # benchmarks/results/segmentation_ham10000_cpu.md/.json
    python -m benchmarks.quality.segmentation --limit 300 --set train.epochs=1 --set data.image_size=32
        # tiny check of the whole path (about a minute): whole lesions up to ~300 images
        # drawn from each part of the same split; results in --out, not benchmarks/results
    python -m benchmarks.quality.segmentation --classify configs/ham10000.yaml --classify-set \
        train.epochs=8      # also: does cropping to the predicted lesion help a classifier?

Runs scripts/train.py (configs/ham10000_unet.yaml: 128 px, the 200x150 pictures and
their masks squashed to a square, U-Net depth 4 / width 16, BCE + Dice, early stopping on
validation Dice) then scripts/evaluate.py (Dice and IoU, mean per image and pooled, with
95% lesion-bootstrap intervals; the full-frame masks apart), and tabulates them with the
training time and images/s.

`--classify CONFIG` then measures segmentation-aware classification: scripts/crop_lesions.py
cuts every image of CONFIG's dataset to a square around the U-Net's predicted lesion, and
an image-only classifier is trained and evaluated on the whole pictures and on the crops,
both on the U-Net run's grouped split (test balanced accuracy with lesion-bootstrap
intervals).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from benchmarks import common
from benchmarks.common import cell, evaluation_row, run_script, write_result


def limited_split(config: str, overrides, limit: int, out: str, seed: int = 0) -> str:
    """The config's grouped split, cut to whole lesions of about `limit` images (each part
    keeps its share), written to `out`/split_limit<limit>.csv."""
    import numpy as np
    import pandas as pd

    from multimodal.config import load_config
    from multimodal.data.split import grouped
    from multimodal.data.split.build import load_table, resolve_split

    cfg = load_config(config, overrides)
    table = load_table(cfg.data, masks=True)
    split = resolve_split(table, cfg.data)
    rng = np.random.default_rng(seed)
    keep = []
    for _, part in split.groupby("split"):
        groups = rng.permutation(np.array(sorted(part["group_id"].unique())))
        target = max(1, round(limit * len(part) / len(split)))
        sizes = part.groupby("group_id").size()
        chosen = groups[:max(1, int(np.searchsorted(sizes[groups].cumsum().to_numpy(),
                                                    target)) + 1)]
        keep.append(part[part["group_id"].isin(chosen)])
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"split_limit{limit}.csv")
    grouped.save_split(pd.concat(keep), path)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/ham10000_unet.yaml")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--limit", type=int,
                        help="tiny mode: about this many images (whole lesions); results go "
                             "to --out instead of benchmarks/results")
    parser.add_argument("--tta", action="store_true", help="evaluate with the four flips")
    parser.add_argument("--classify", metavar="CONFIG",
                        help="also train an image classifier of CONFIG on whole pictures and on "
                             "lesion crops from the U-Net's masks (same split)")
    parser.add_argument("--classify-set", action="append", default=[],
                        help="overrides for the classifiers (repeatable)")
    parser.add_argument("--out", default="runs/segmentation")
    parser.add_argument("--name", default="segmentation_ham10000_cpu")
    args = parser.parse_args()
    overrides = list(args.set)
    if args.limit:
        overrides.append(f"data.split_file={limited_split(args.config, args.set, args.limit, args.out)}")
        common.RESULTS = args.out  # a tiny run is a check, not a measurement
    workdir = os.path.join(args.out, "unet")
    t0 = time.perf_counter()
    run_script("scripts/train.py", "--config", args.config, "--task", "segmentation",
               "--workdir", workdir, "--no-progress", *[x for s in overrides for x in ("--set", s)])
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_script("scripts/evaluate.py", "--checkpoint", workdir, *(["--tta"] if args.tta else []))
    eval_s = time.perf_counter() - t0
    with open(os.path.join(workdir, "eval", "metrics.json")) as f:
        result = json.load(f)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        history = [json.loads(line) for line in f]
    with open(os.path.join(workdir, "config.yaml")) as f:
        config_text = f.read()
    m = result["metrics"]
    rate = statistics.median(r["images_per_s"] for r in history)
    best = max(history, key=lambda r: r["val_dice"])
    command = common.command_line()
    lines = [
        f"# U-Net lesion segmentation on HAM10000 ({args.config}, overrides "
        f"{args.set or 'none'}{f', limit {args.limit} images' if args.limit else ''})", "",
        f"Command: `{command}`", "",
        f"Test split: {result['n_images']} images of {result['n_groups']} lesions (grouped, "
        f"split_seed 0), {result['n_full_frame']} full-frame masks reported apart; masks "
        f"compared at {result['resolution']}. Intervals: 95% bootstrap over lesions "
        f"({result['bootstrap']['resamples']} resamples). TTA {'on' if args.tta else 'off'}.", "",
        "| Dice (mean per image) | IoU (mean per image) | pooled Dice | pooled IoU | "
        "Dice with full-frame | epochs (best) | train minutes | train img/s (median) |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |",
        f"| {cell(m['dice']['value'], m['dice']['ci95'])} | "
        f"{cell(m['iou']['value'], m['iou']['ci95'])} | "
        f"{cell(m['pooled_dice']['value'], m['pooled_dice']['ci95'])} | "
        f"{cell(m['pooled_iou']['value'], m['pooled_iou']['ci95'])} | "
        f"{result['all_images']['dice']:.3f} | {len(history)} ({best['epoch']}) | "
        f"{train_s / 60:.1f} | {rate:.1f} |", "",
        "For comparison, one report's U-Net on HAM10000: Dice 0.858, IoU 0.752 (its split and "
        "resolution unknown; ours is grouped by lesion).", "",
        "Per-image scores, overlays of the best and worst images and the report: "
        f"`{os.path.join(workdir, 'eval')}`.", ""]
    data = {"metrics": m, "all_images": result["all_images"], "full_frame": result["full_frame"],
            "n_images": result["n_images"], "n_groups": result["n_groups"],
            "train_seconds": train_s, "eval_seconds": eval_s, "epochs": len(history),
            "best_epoch": best["epoch"], "median_train_images_per_s": rate,
            "history": history, "limit": args.limit, "config": config_text}
    if args.classify:
        rows, data["classification"] = classify(args, workdir)
        lines += ["## Lesion-cropped classification", "",
                  f"Image-only classifiers of {args.classify} (overrides "
                  f"{args.classify_set or 'none'}) on the U-Net run's split; crops: a square "
                  "around the predicted lesion + 10% margin (scripts/crop_lesions.py).", "",
                  "| input | balanced accuracy | macro AUC | accuracy | melanoma recall | "
                  "train minutes |", "| --- | --- | --- | --- | --- | ---: |", *rows, ""]
    path = write_result(args.name if not args.limit else f"{args.name}_limit{args.limit}",
                        "\n".join(lines), data)
    print("\n".join(lines))
    print(f"-> {path}")


def classify(args, unet_run: str) -> tuple[list[str], dict]:
    """Whole-picture and lesion-crop image classifiers on the U-Net run's split."""
    crops = os.path.join(args.out, "lesion_crops")
    if not os.path.exists(os.path.join(crops, "crops.json")):
        run_script("scripts/crop_lesions.py", "--segmenter", unet_run, "--config", args.classify,
                   "--out", crops)
    rows, data = [], {}
    for label, extra in (("whole picture", []), ("lesion crop", [f"data.options.root={crops}"])):
        workdir = os.path.join(args.out, "classify_" + label.replace(" ", "_"))
        sets = [f"data.split_file={os.path.join(unet_run, 'split.csv')}", *args.classify_set,
                *extra]
        t0 = time.perf_counter()
        run_script("scripts/train.py", "--config", args.classify, "--modality", "image",
                   "--workdir", workdir, "--no-progress", *[x for s in sets for x in ("--set", s)])
        minutes = (time.perf_counter() - t0) / 60
        run_script("scripts/evaluate.py", "--checkpoint", workdir, "--saliency", "0")
        row, data[label] = evaluation_row(label, os.path.join(workdir, "eval", "metrics.json"),
                                          minutes)
        rows.append(row)
        print(row, flush=True)
    return rows, data


if __name__ == "__main__":
    main()
