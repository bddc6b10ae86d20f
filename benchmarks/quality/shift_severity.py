"""Corruption benchmark: one run on its test split and on every shift family x severity of
multimodal/data/images/shift.py (levels fixed there, from MedMNIST-C / ImageNet-C where they exist),
each scored against the clean split with a paired lesion-bootstrap interval.

    python -m benchmarks.quality.shift_severity --checkpoint runs/ham
    python -m benchmarks.quality.shift_severity --checkpoint runs/ham --families blur noise jpeg \
        --severities 1 3 5
    python -m benchmarks.quality.shift_severity --checkpoint runs/ham --adapt-bn  # + BN adapted
    python -m benchmarks.quality.shift_severity --checkpoint RUN --smoke --results /tmp/out  # 1 x 1

Copies: RUN/shifted/<family>-s<level>-seed<N>, the folders `scripts/evaluate.py --shifted
<family> --severity <level>` writes and reuses (made once). Evaluations:
RUN/shift_severity-seed<N>/clean and .../<family>-s<level> (reused while newer than the
run's checkpoints and made with the same number of resamples). Writes <name>.md / .json to
--results (default benchmarks/results): balanced accuracy with its interval, its drop vs
clean in points with a paired 95% interval (multimodal.evaluation.compare, lesions
resampled), melanoma recall, ECE (top-class, before temperature scaling), a mean row per
severity; with --adapt-bn the same copies scored with BatchNorm re-estimated on each
(.../<family>-s<level>_adapted), its drop vs clean and its gain vs plain; and <name>.png,
the drop against the severity per family. --smoke: one family (blur) at level 3 and 20
resamples, a pipeline check whose numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from benchmarks.common import RESULTS, cell, points, publish
from multimodal.errors import ConfigError, cli

TOOL = "shift_severity"


def parse_args(argv):
    from multimodal.data.images.shift import FAMILIES

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a classification run directory")
    parser.add_argument("--families", nargs="+", default=None,
                        help=f"shift families (default all: {' '.join(FAMILIES)})")
    parser.add_argument("--severities", nargs="+", default=None, help="levels (default 1 3 5)")
    parser.add_argument("--seed", type=int, default=0, help="draws of the shifts")
    parser.add_argument("--bootstrap", type=int, default=None,
                        help="lesion resamples for every interval (default 1000; --smoke 20)")
    parser.add_argument("--smoke", action="store_true",
                        help="blur at level 3 and 20 resamples unless given: a pipeline check")
    parser.add_argument("--adapt-bn", action="store_true",
                        help="also score every copy (and the clean split) with the run's "
                             "BatchNorm statistics re-estimated on its images, unlabelled "
                             "(multimodal/evaluation/adapt.py, target statistics alone)")
    parser.add_argument("--results", default=RESULTS, help="folder of the table and plot")
    parser.add_argument("--name", default=None,
                        help="result file name (default shift_severity[_smoke])")
    args = parser.parse_args(argv)
    args.families = args.families or (["blur"] if args.smoke else list(FAMILIES))
    args.severities = args.severities or (["3"] if args.smoke else ["1", "3", "5"])
    args.bootstrap = args.bootstrap if args.bootstrap is not None else (
        20 if args.smoke else 1000)
    args.name = args.name or ("shift_severity_smoke" if args.smoke else "shift_severity")
    return args


def check(args) -> tuple[list[str], list[int]]:
    """Families and levels, refused before any work."""
    from multimodal.data.images.shift import parse_severity, parse_shifts

    if not os.path.exists(os.path.join(args.checkpoint, "split.csv")):
        raise ConfigError(f"{args.checkpoint} is not a run directory (no split.csv)",
                          "pass a folder written by scripts/train.py --workdir")
    if args.bootstrap < 1:
        raise ConfigError(f"--bootstrap {args.bootstrap}: the paired intervals need >= 1")
    severities = sorted({parse_severity(s) for s in args.severities})
    return parse_shifts(args.families, severities[0]), severities


def shifted_copy(run: str, family: str, severity: int, seed: int) -> str:
    """The run's test rows with one family at one level: evaluate.py's folder, made once."""
    from multimodal.run.shifted import shifted_copy_of_run

    folder = os.path.join(run, "shifted", f"{family}-s{severity}-seed{seed}")
    path, _, _ = shifted_copy_of_run(run, folder, [family], seed, progress=False, reuse=True,
                                     severity=severity)
    return path


def evaluation(run: str, folder: str, data: str | None, n_boot: int,
               adapt_bn: float | None = None) -> dict:
    """metrics.json of the run on `data` (None: its test split) in `folder`, with its
    BatchNorm statistics adapted to those images when `adapt_bn` is a blend; an earlier one
    is reused while newer than the run's checkpoints and of the same resamples and data."""
    from multimodal.evaluation.evaluate import evaluate_run
    from multimodal.outputs import staged_output

    metrics = os.path.join(folder, "metrics.json")
    if os.path.exists(metrics) and os.path.getmtime(metrics) > _trained_at(run):
        with open(metrics) as f:
            result = json.load(f)
        if result["bootstrap"]["resamples"] == n_boot and \
                result.get("data") == (data or "the run's own split") and \
                ("adapted_batchnorm" in result) == (adapt_bn is not None):
            return result
    with staged_output(folder, TOOL, overwrite=True, protected={run: "run"}) as tmp:
        evaluate_run(run, tmp, data, n_boot=n_boot, n_saliency=0, adapt_bn=adapt_bn)
    with open(metrics) as f:
        return json.load(f)


def _trained_at(run: str) -> float:
    checkpoints = os.path.join(run, "checkpoints")
    return max((os.path.getmtime(os.path.join(root, d)) for root, dirs, _ in
                os.walk(checkpoints) for d in dirs), default=0.0)


def melanoma_recall(result: dict) -> str:
    mel = next((r for r in result["per_class"] if r["class"] == "mel"), None)
    return cell(mel["recall"], mel["recall_ci95"]) if mel else "n/a"


def score(result: dict, drop: dict | None) -> tuple[str, dict]:
    """A table row's cells after family and level, and the data behind them."""
    m = result["metrics"]
    bacc = m["balanced_accuracy"]
    cells = [cell(bacc["value"], bacc["ci95"]), points(drop) if drop else "-",
             melanoma_recall(result), f"{m['ece']['value']:.3f}"]
    return " | ".join(cells), {"balanced_accuracy": bacc, "drop": drop,
                               "mel": melanoma_recall(result), "ece": m["ece"]["value"]}


def plot(data: dict, families, severities, path: str) -> None:
    """Drop in balanced accuracy (points, paired 95% interval) against severity per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for family in families:
        drops = [data[f"{family}-s{s}"]["drop"] for s in severities]
        y = [0.0] + [100 * d["difference"] for d in drops]
        low = [0.0] + [100 * (d["difference"] - d["ci95"][0]) for d in drops]
        high = [0.0] + [100 * (d["ci95"][1] - d["difference"]) for d in drops]
        ax.errorbar([0, *severities], y, yerr=[low, high], marker="o", capsize=3, label=family)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="severity (0: clean)", ylabel="balanced accuracy vs clean, points",
           xticks=[0, *severities], title="Drop against severity (paired 95% intervals)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def mean_rows(data: dict, families, severities, adapted: bool) -> list[str]:
    """Per severity, the mean over families of balanced accuracy and of the drop (points; a
    mean of the paired drops, without an interval of its own)."""
    rows = []
    for severity in severities:
        cells = [data[f"{family}-s{severity}"] for family in families]
        bacc = sum(c["balanced_accuracy"]["value"] for c in cells) / len(cells)
        drop = 100 * sum(c["drop"]["difference"] for c in cells) / len(cells)
        row = f"| **mean of {len(cells)}** | {severity} | **{bacc:.3f}** | **{drop:+.1f}** | | |"
        if adapted:
            a_bacc = sum(c["adapted"]["balanced_accuracy"]["value"] for c in cells) / len(cells)
            a_drop = 100 * sum(c["adapted"]["drop"]["difference"] for c in cells) / len(cells)
            gain = 100 * sum(c["adapted"]["gain"]["difference"] for c in cells) / len(cells)
            row += f" **{a_bacc:.3f}** | **{a_drop:+.1f}** | **{gain:+.1f}** |"
        rows.append(row)
    return rows


def adapted_cells(run, folder, copy, clean_dir, plain_dir, n_boot) -> tuple[str, dict]:
    """The run with its BatchNorm statistics re-estimated on `copy` (None: the clean split):
    balanced accuracy, its drop against the clean split as trained, and its gain over the
    plain evaluation of the same images (both paired)."""
    from multimodal.evaluation.compare import compare, read_predictions

    result = evaluation(run, folder, copy, n_boot, adapt_bn=1.0)
    bacc = result["metrics"]["balanced_accuracy"]
    paired = {name: compare(read_predictions(other), read_predictions(folder), n_boot,
                            metrics=("balanced_accuracy",))["metrics"]["balanced_accuracy"]
              for name, other in (("drop", clean_dir), ("gain", plain_dir))}
    return (f"{cell(bacc['value'], bacc['ci95'])} | {points(paired['drop'])} | "
            f"{points(paired['gain'])} |"), {"balanced_accuracy": bacc, **paired}


@cli
def main(argv=None) -> int:
    from multimodal.evaluation.compare import compare, read_predictions

    args = parse_args(argv)
    families, severities = check(args)
    run, t0 = args.checkpoint, time.perf_counter()
    work = os.path.join(run, f"shift_severity-seed{args.seed}")
    clean_dir = os.path.join(work, "clean")
    if args.adapt_bn:  # first: a run without BatchNorm is refused before any other work
        evaluation(run, clean_dir + "_adapted", None, args.bootstrap, adapt_bn=1.0)
    clean = evaluation(run, clean_dir, None, args.bootstrap)
    row, data = score(clean, None)
    data = {"clean": data}
    if args.adapt_bn:
        adapted, data["clean"]["adapted"] = adapted_cells(
            run, clean_dir + "_adapted", None, clean_dir, clean_dir, args.bootstrap)
        row += f" | {adapted}"
    rows = [f"| clean | - | {row}" + ("" if args.adapt_bn else " |")]
    for family in families:
        for severity in severities:
            key = f"{family}-s{severity}"
            copy = shifted_copy(run, family, severity, args.seed)
            result = evaluation(run, os.path.join(work, key), copy, args.bootstrap)
            drop = compare(read_predictions(clean_dir), read_predictions(os.path.join(work, key)),
                           args.bootstrap, metrics=("balanced_accuracy",))
            row, data[key] = score(result, drop["metrics"]["balanced_accuracy"])
            if args.adapt_bn:
                adapted, data[key]["adapted"] = adapted_cells(
                    run, os.path.join(work, key + "_adapted"), copy, clean_dir,
                    os.path.join(work, key), args.bootstrap)
                row += f" | {adapted}"
            rows.append(f"| {family} | {severity} | {row}" + ("" if args.adapt_bn else " |"))
            print(rows[-1], flush=True)
    rows += mean_rows(data, families, severities, args.adapt_bn)
    os.makedirs(args.results, exist_ok=True)
    plot(data, families, severities, os.path.join(args.results, f"{args.name}.png"))
    header = ["family", "severity", "balanced accuracy [95% CI]", "drop, points [95% CI]",
              "melanoma recall", "ECE"]
    align = ["---", "---:", "---", "---", "---", "---:"]
    if args.adapt_bn:
        header += ["BN adapted: balanced accuracy", "adapted drop vs clean, points",
                   "adaptation gain, points"]
        align += ["---", "---", "---"]
    adapt_note = (" BN adapted: the run with its BatchNorm statistics re-estimated on the "
                  "scored images themselves, unlabelled (target statistics alone); its drop is "
                  "against the clean split scored as trained, its gain against the same images "
                  "scored as trained, both paired. Adaptation on the clean row is a control: "
                  "the test split's own statistics, and its class mix, replace the training "
                  "ones.") if args.adapt_bn else ""
    lines = [f"# Corruption benchmark: {os.path.basename(os.path.normpath(run))} by shift "
             "family and severity", "",
             f"Run {run}, its test split ({clean['n_images']} images, {clean['n_groups']} "
             f"lesions) and its copies by multimodal/data/images/shift.py at severities "
             f"{', '.join(map(str, severities))} (levels fixed in its SEVERITY table; seed "
             f"{args.seed}). Drop: balanced accuracy on the copy minus clean, in points, with "
             f"a paired 95% interval ({args.bootstrap} lesion-bootstrap resamples scoring both). "
             "Melanoma recall at argmax; ECE of the top class before temperature scaling. "
             "Mean rows: the plain mean over families, no interval." + adapt_note
             + (" **--smoke: a pipeline check, numbers meaningless.**" if args.smoke else ""),
             "", "| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |", *rows, "",
             f"![drop against severity]({args.name}.png)", "",
             f"Whole benchmark: {(time.perf_counter() - t0) / 60:.1f} minutes."]
    publish(args.name, lines, {"run": os.path.abspath(run), "seed": args.seed,
                               "severities": severities, "families": families,
                               "bootstrap": args.bootstrap, "adapt_bn": args.adapt_bn,
                               "cells": data}, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
