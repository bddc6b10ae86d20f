"""How much balanced accuracy survives another camera: runs scored on their test split and on a
shifted copy of it (scripts/shift_testset.py), the drop with a paired lesion-bootstrap interval.

    python -m benchmarks.quality.shift_drop --runs runs/ensembles/image runs/ensembles/image_meta \
        --out runs/shift [--each]

The copy holds the first run's test rows (all runs must share that split); --each also makes
one copy per shift, to see which one costs most. Evaluations use scripts/evaluate.py (--data for
the copies) and the drops scripts/compare.py's paired bootstrap, over lesions.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from benchmarks.common import points, run_script, publish

SHIFTS = ("contrast", "saturation", "white_balance", "gamma", "squash", "jpeg")


def evaluation(run: str, out: str, data: str | None = None) -> str:
    if not os.path.exists(os.path.join(out, "predictions.csv")):
        run_script("scripts/evaluate.py", "--checkpoint", run, "--out", out, "--saliency", "0",
                   "--bootstrap", "200", *(["--data", data] if data else []))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True)
    parser.add_argument("--out", default="runs/shift")
    parser.add_argument("--each", action="store_true", help="also one copy per shift")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="shift_drop_ham10000")
    args = parser.parse_args()
    copies = {"all": ",".join(SHIFTS), **({s: s for s in SHIFTS} if args.each else {})}
    t0 = time.perf_counter()
    folder = {name: os.path.join(args.out, f"copies_seed{args.seed}", name) for name in copies}
    for name, shifts in copies.items():
        if not os.path.exists(os.path.join(folder[name], "dataset.yaml")):
            run_script("scripts/shift_testset.py", "--run", args.runs[0], "--out", folder[name],
                       "--shifts", shifts, "--seed", str(args.seed), "--no-progress")
    rows, data = [], {}
    for run in args.runs:
        label = os.path.basename(os.path.normpath(run))
        original = evaluation(run, os.path.join(args.out, label, "original"))
        for name in copies:
            shifted = evaluation(run, os.path.join(args.out, label, f"seed{args.seed}", name),
                                 os.path.join(folder[name], "dataset.yaml"))
            result = os.path.join(args.out, label, f"drop_seed{args.seed}_{name}.json")
            run_script("scripts/compare.py", original, shifted, "--names", "original", name,
                       "--out", result)
            with open(result) as f:
                compared = json.load(f)
            if compared["rows_only_in_a"] or compared["rows_only_in_b"]:
                raise SystemExit(f"{run}: its test split is not the one the copy was made from "
                                 f"({args.runs[0]}); give runs that share a split")
            r = compared["metrics"]
            b, auc = r["balanced_accuracy"], r["macro_auc"]
            rows.append(f"| {label} | {name} | {b['a']:.3f} | {b['b']:.3f} | "
                        f"{points(b)} | {auc['a']:.3f} -> {auc['b']:.3f} |")
            data[f"{label}/{name}"] = r
            print(rows[-1], flush=True)
    lines = ["# Acquisition shift: test split vs its shifted copy (HAM10000, grouped split)", "",
             f"Runs: {', '.join(args.runs)}. Shifted copies by scripts/shift_testset.py (seed "
             f"{args.seed}; ranges in multimodal/data/images/shift.py); `all` applies every shift to "
             "every image. Differences in points of balanced accuracy with paired 95% intervals "
             "(1000 lesion-bootstrap resamples scoring both sides).", "",
             "| run | copy | balanced accuracy, original | shifted | drop, points [95% CI] | "
             "macro AUC |", "| --- | --- | ---: | ---: | --- | --- |", *rows, "",
             f"Whole benchmark: {(time.perf_counter() - t0) / 60:.1f} minutes."]
    publish(args.name, lines, data)


if __name__ == "__main__":
    main()
