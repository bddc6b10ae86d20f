"""Screens (`scripts/cv.py --only-folds J`) against a reference CV on the same held-out fold:
each screen's fold-J figures and its paired difference to the reference, lesions resampled.

    python -m benchmarks.quality.screen_table --reference runs/cv/cpu_image_meta \
        --screens runs/cv/screen_a runs/cv/screen_b --fold 0 --name screen_resolution_cpu \
        --made-by "python scripts/cv.py ... --only-folds 0"

Every fold J of a dataset holds out the same rows whatever the config (the folds depend on
the data and the CV seed), so the comparison is paired. Reads only the folders' own files.
"""

from __future__ import annotations

import argparse
import os

from benchmarks.common import cell, points
from benchmarks.quality.cv_table import run_minutes, write_table


def _setting(run_dir: str) -> str:
    """What differs, read from the fold run's resolved config."""
    import yaml

    with open(os.path.join(run_dir, "config.yaml")) as f:
        cfg = yaml.safe_load(f)
    return (f"image_size {cfg['data']['image_size']}, geometry {cfg['data']['geometry']}, "
            f"{cfg['train']['epochs']} epochs, {cfg['modality']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True, help="the CV folder compared against")
    parser.add_argument("--screens", nargs="+", required=True, help="screen CV folders")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--made-by", action="append", default=[])
    parser.add_argument("--name", required=True)
    parser.add_argument("--results", default=None)
    args = parser.parse_args(argv)
    from multimodal.evaluation.compare import classes_of, compare, read_predictions
    from multimodal.evaluation.context import arrays
    from multimodal.evaluation.scoring import evaluate_predictions

    fold = f"fold_{args.fold}"
    ref_dir = os.path.join(args.reference, fold)
    ref = read_predictions(os.path.join(ref_dir, "oof_predictions.csv"))
    lines = ["| system | held-out rows | balanced accuracy [95% CI] | macro AUC | difference to "
             "the reference, points [paired 95% CI] | AUC difference | wall minutes |",
             "| --- | ---: | --- | --- | --- | --- | ---: |"]
    data = {"reference": args.reference, "fold": args.fold, "screens": {}}
    first = True
    for folder in [args.reference, *args.screens]:
        run_dir = os.path.join(folder, fold)
        preds = read_predictions(os.path.join(run_dir, "oof_predictions.csv"))
        result = compare(ref, preds, args.bootstrap)
        m = result["metrics"]
        ba, auc = m["balanced_accuracy"], m["macro_auc"]
        classes = classes_of(preds)
        labels, _, probs = arrays(preds, classes)
        own = evaluate_predictions(labels, probs, preds["group_id"].to_numpy(), classes,
                                   args.bootstrap)["metrics"]["balanced_accuracy"]
        diff = "reference" if first else points(ba)
        auc_diff = "" if first else f"{auc['difference']:+.3f}"
        lines.append(f"| {_setting(run_dir)} (`{folder}`) | {result['rows']} | "
                     f"{cell(own['value'], own['ci95'])} | {auc['b']:.3f} | {diff} | "
                     f"{auc_diff} | {run_minutes(run_dir):.0f} |")
        data["screens"][folder] = {"setting": _setting(run_dir), "comparison": result,
                                   "minutes": run_minutes(run_dir)}
        first = False
    text = [f"# Screens on fold {args.fold} of the same grouped folds (the test split untouched)",
            "", f"Each row trained on the other folds (less an inner grouped tenth that picks "
            f"its checkpoint) and predicted fold {args.fold}; differences are paired on those "
            "rows, lesions resampled. Wall minutes are the fold run's own, on 2 cores shared "
            "with other work: read them as rough.", "", *lines, ""]
    write_table(args, text, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
