"""Evaluate a trained run or an ensemble directory; write metrics, plots and a report.

    python scripts/evaluate.py --checkpoint runs/sample --out runs/sample/eval
    python scripts/evaluate.py --checkpoint runs/ham --data configs/isic2018_test.yaml --tta

Writes metrics.json, predictions.csv, confusion/ROC/reliability PNGs, saliency
overlays of the most confident errors, report.md and a self-contained report.html.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="a run directory from train.py, or an ensemble (manifest.json)")
    parser.add_argument("--data", help="evaluate on another dataset config (all its rows)")
    parser.add_argument("--split", default="test", help="split of the run's own data")
    parser.add_argument("--tta", action="store_true", help="average over the four flips")
    parser.add_argument("--out", help="output folder (default <checkpoint>/eval)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="group resamples for CIs")
    parser.add_argument("--operating-class", default="mel")
    parser.add_argument("--target-sensitivity", type=float, default=0.9)
    parser.add_argument("--saliency", type=int, default=6, help="errors to explain (0: none)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.checkpoint):
        print(f"error: no run directory {args.checkpoint}", file=sys.stderr)
        return 2
    from multimodal.evaluation.evaluate import evaluate_run

    out = args.out or os.path.join(args.checkpoint, "eval")
    try:
        result = evaluate_run(args.checkpoint, out, args.data, args.split, args.tta,
                              args.bootstrap, args.operating_class, args.target_sensitivity,
                              args.saliency)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    m = result["metrics"]
    ci = m["balanced_accuracy"]["ci95"]
    print(f"balanced accuracy {m['balanced_accuracy']['value']:.3f}"
          + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
          + f", macro AUC {m['macro_auc']['value']:.3f}, accuracy {m['accuracy']['value']:.3f}")
    print(f"report: {os.path.join(out, 'report.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
