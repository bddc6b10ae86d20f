"""Image-only vs metadata-only vs fused, on one grouped split: train + evaluate each.

    python -m benchmarks.quality.modalities --config configs/ham10000.yaml --set train.epochs=3 \
        --out runs/modalities

Runs scripts/train.py (a finished run in --out is reused) and scripts/evaluate.py for each
modality with the same config, split and seed, and tabulates test balanced accuracy, macro
AUC, accuracy and melanoma recall with group-bootstrap 95% intervals, and the training wall
time (data preparation included), epochs run and median training images/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

from benchmarks.common import evaluation_row, publish, train_and_evaluate

def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/ham10000.yaml")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--modalities", nargs="+", default=["image", "meta", "image+meta"])
    parser.add_argument("--out", default="runs/modalities")
    parser.add_argument("--name", default="modalities")
    args = parser.parse_args()
    prepared = os.path.join(args.out, "prepared")
    rows, data = [], {}
    for modality in args.modalities:
        workdir = os.path.join(args.out, modality.replace("+", "_"))
        minutes = train_and_evaluate(args.config, modality, workdir,
                                     [f"data.prepared_dir={prepared}", *args.set])
        row, result = evaluation_row(modality, os.path.join(workdir, "eval", "metrics.json"),
                                     minutes)
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            history = [json.loads(line) for line in f]
        rate = statistics.median(r["images_per_s"] for r in history)
        rows.append(f"{row} {len(history)} | {rate:.1f} |")
        data[modality] = {**result, "train_seconds": 60 * minutes, "epochs": len(history),
                          "median_train_images_per_s": rate}
        print(rows[-1], flush=True)
    first = next(iter(data.values()))
    lines = [f"# Modalities on one grouped split ({args.config}, overrides {args.set or 'none'})", "",
             f"Test split: {first['n_images']} images of {first['n_groups']} groups. Intervals: "
             "95% bootstrap over groups (1000 resamples). Same split, seed and schedule for all rows.",
             "", "| modality | balanced accuracy | macro AUC | accuracy | melanoma recall | "
             "train minutes | epochs | train img/s (median) |",
             "| --- | --- | --- | --- | --- | ---: | ---: | ---: |", *rows]
    publish(args.name, lines, data)


if __name__ == "__main__":
    main()
