"""Image-only vs metadata-only vs fused vs late fusion vs stacking, on one grouped split.

    python scripts/extract_features.py --config configs/ham10000_lite0.yaml --root runs/ham_lite0
    python -m benchmarks.quality.ensembles --config configs/ham10000_lite0.yaml \
        --features runs/ham_lite0/features/efficientnet_lite0-<digest> --root runs/ham_lite0 \
        --out runs/ensembles

Heads train on the cached (frozen) encoder features; every row uses the same split (the
cache root's split.csv), seed and schedule. Late fusion combines the image-only and
metadata-only runs with weights fitted on validation; stacking trains image members on
grouped folds of the development rows and an XGBoost stacker on their out-of-fold
probabilities + metadata, once without and once with lesion context (images per lesion,
lesion-mean probabilities: a label proxy in HAM10000, so both rows are reported). All
rows are evaluated on the same test split with group-bootstrap 95% intervals by
scripts/evaluate.py; stacking calibrates on its held-out out-of-fold rows.
"""

from __future__ import annotations

import json
import os
import time

from benchmarks.common import evaluation_row, feature_bench_parser, run_script, publish
from benchmarks.quality.feature_peers import logistic_regression

def main():
    parser = feature_bench_parser(__doc__)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--stack-set", action="append", default=[],
                        help="overrides for the stacking members only (e.g. fewer epochs)")
    parser.add_argument("--out", default="runs/ensembles")
    parser.add_argument("--name", default="ensembles_ham10000")
    args = parser.parse_args()
    # prepared data comes from the shared store (keyed by the inputs), as for extraction
    shared = ["--set", f"data.split_file={os.path.join(args.root, 'split.csv')}",
              *[x for s in args.set for x in ("--set", s)]]
    runs, seconds = {}, {}
    for modality in ("image", "meta", "image+meta"):
        workdir = os.path.join(args.out, modality.replace("+", "_"))
        t0 = time.perf_counter()
        if not os.path.exists(os.path.join(workdir, "summary.json")):
            run_script("scripts/train.py", "--config", args.config, "--modality", modality,
                       "--features", args.features, "--workdir", workdir, "--no-progress", *shared)
        runs[f"{modality} (heads on frozen features)"] = workdir
        seconds[workdir] = time.perf_counter() - t0
    fusion = os.path.join(args.out, "late_fusion")
    t0 = time.perf_counter()
    run_script("scripts/late_fusion.py", "--members", runs["image (heads on frozen features)"],
               runs["meta (heads on frozen features)"], "--out", fusion)
    runs["late fusion of image + meta (weights on val)"] = fusion
    seconds[fusion] = time.perf_counter() - t0
    # Stacking twice on the same members: without group context (the default) and with it
    # (images per lesion, lesion-mean probabilities: a label proxy in HAM10000, reported
    # apart so the gap it makes is visible). The second build reuses the first's members.
    members = f" (members: {', '.join(args.stack_set)})" if args.stack_set else ""
    base = os.path.join(args.out, "stacking")
    for variant, extra, what in (
            ("stacking", [], "OOF image probs + metadata"),
            ("stacking_group_context", ["--group-context"],
             "OOF image probs + metadata + lesion context (label proxy in HAM10000)")):
        stack = os.path.join(args.out, variant)
        if stack != base:  # share the trained members: finished runs are reused
            os.makedirs(stack, exist_ok=True)
            for name in ["full", *[f"fold_{k}" for k in range(args.folds)]]:
                link = os.path.join(stack, name)
                if not os.path.lexists(link):
                    os.symlink(os.path.abspath(os.path.join(base, name)), link)
        t0 = time.perf_counter()
        run_script("scripts/stack.py", "--config", args.config, "--modality", "image",
                   "--features", args.features, "--workdir", stack, "--folds", str(args.folds),
                   "--no-progress", *extra,
                   *[x for s in args.set + args.stack_set for x in ("--set", s)],
                   "--set", f"data.split_file={os.path.join(args.root, 'split.csv')}")
        runs[f"XGBoost stacking: {args.folds}-fold {what}{members}"] = stack
        seconds[stack] = time.perf_counter() - t0

    # the plain peer a trained head must at least match: logistic regression, same features
    peer = os.path.join(args.out, "logistic_regression")
    t0 = time.perf_counter()
    with open(os.path.join(runs["image (heads on frozen features)"], "classes.json")) as f:
        classes = json.load(f)  # the runs' class order
    peer_metrics = logistic_regression(args.features, os.path.join(args.root, "split.csv"),
                                       classes, peer)
    seconds[peer] = time.perf_counter() - t0

    rows, data = [], {}
    evaluated = {label: os.path.join(workdir, "eval", "metrics.json")
                 for label, workdir in runs.items()}
    for label, workdir in runs.items():
        run_script("scripts/evaluate.py", "--checkpoint", workdir, "--saliency", "0")
    runs["image: class-weighted logistic regression on the same features (peer)"] = peer
    evaluated["image: class-weighted logistic regression on the same features (peer)"] = \
        peer_metrics
    for label, workdir in runs.items():
        row, result = evaluation_row(label, evaluated[label], seconds[workdir] / 60)
        rows.append(row)
        data[label] = {**result, "workdir": workdir, "build_seconds": seconds[workdir]}
        print(rows[-1], flush=True)
    # does metadata earn its place? image vs image+meta heads, paired over the same lesions
    gain_json = os.path.join(args.out, "metadata_gain.json")
    run_script("scripts/compare.py", os.path.join(runs["image (heads on frozen features)"], "eval"),
               os.path.join(runs["image+meta (heads on frozen features)"], "eval"),
               "--names", "image", "image+meta", "--out", gain_json)
    with open(gain_json) as f:
        gain = json.load(f)["metrics"]["balanced_accuracy"]
    data["metadata_gain"] = gain
    first = next(iter(data.values()))
    lines = [f"# Modalities and ensembles on one grouped HAM10000 split ({args.config})", "",
             f"Frozen encoder: `{args.features}`. Test split: {first['n_images']} images of "
             f"{first['n_groups']} lesions, never seen by any member or stacker. Intervals: 95% "
             "bootstrap over lesions (1000 resamples).", "",
             "| model | balanced accuracy | macro AUC | accuracy | melanoma recall | "
             "build minutes |", "| --- | --- | --- | --- | --- | ---: |", *rows, "",
             f"Metadata gain (image+meta minus image heads, same split, seed and schedule): "
             f"{100 * gain['difference']:+.1f} points of balanced accuracy, paired 95% interval "
             f"[{100 * gain['ci95'][0]:+.1f}, {100 * gain['ci95'][1]:+.1f}] "
             f"(scripts/compare.py, {gain['resamples']} lesion-bootstrap resamples)."]
    publish(args.name, lines, data)


if __name__ == "__main__":
    main()
