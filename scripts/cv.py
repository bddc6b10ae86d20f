"""Grouped K-fold cross-validation of a config: pooled out-of-fold metrics, the evidence
every recipe choice is made on (the test split is scored once per final configuration).

    python scripts/cv.py --config configs/ham10000_cpu.yaml --folds 5 --workdir runs/cv_cpu
    python scripts/cv.py ... --workdir runs/cv_cpu          # again after a crash: resumes
    python scripts/cv.py ... --score-test                   # fold models on the test rows too
    python scripts/compare.py runs/cv_a/oof runs/cv_b/oof    # paired, on the same OOF rows

Writes one run per fold (WORKDIR/fold_k), the pooled out-of-fold predictions
(WORKDIR/oof/predictions.csv) and metrics with lesion-bootstrap intervals and the fold
mean and spread (WORKDIR/oof/metrics.json). Each fold picks its checkpoint on a grouped
tenth of its own training folds, never on the fold it predicts.
"""

from __future__ import annotations

import argparse
import os
import sys

from multimodal.config import MODALITIES, config_from_cli
from multimodal.errors import ConfigError, cli

CV_ENTRIES = ("cv.json", "base_split.csv", "folds.csv", "oof", "test")


def summary_line(summary: dict) -> str:
    m, s = summary["metrics"], summary["fold_spread"]
    ba = m["balanced_accuracy"]
    ci = ba["ci95"] or [float("nan")] * 2
    return (f"out-of-fold balanced accuracy {ba['value']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] over "
            f"{summary['rows']} rows; fold mean {s['balanced_accuracy']['mean']:.3f} +- "
            f"{s['balanced_accuracy']['sd']:.3f}; macro AUC {m['macro_auc']['value']:.3f}")


def screen_line(oof) -> str:
    from multimodal.evaluation.compare import classes_of
    from multimodal.evaluation.context import arrays
    from multimodal.evaluation.scoring import point_metrics

    labels, _, probs = arrays(oof, classes_of(oof))
    folds = sorted(int(f) for f in oof["fold"].unique())
    ba = point_metrics(labels, probs)["balanced_accuracy"]
    return (f"screen: folds {folds} only, {len(oof)} rows, balanced accuracy {ba:.3f}; compare "
            f"a fold with scripts/compare.py A/fold_{folds[0]}/oof_predictions.csv "
            f"B/fold_{folds[0]}/oof_predictions.csv; rerun without --only-folds to complete")


@cli
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config to cross-validate")
    parser.add_argument("--modality", choices=MODALITIES, help="override the config's modality")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (repeatable)")
    parser.add_argument("--workdir", required=True, help="folder for the fold runs and results")
    parser.add_argument("--folds", type=int, default=5,
                        help="grouped folds of the development rows (>= 3; 3 to screen, 5 for "
                             "final rows; default 5)")
    parser.add_argument("--seed", type=int, default=0, help="fold assignment seed")
    parser.add_argument("--score-test", action="store_true",
                        help="also predict the base split's test rows with every fold model "
                             "(for the fold average and stacking; score the test split once "
                             "per final configuration)")
    parser.add_argument("--only-folds", type=int, nargs="+", metavar="J",
                        help="a screen: train just these folds of the same K (compare a fold's "
                             "oof_predictions.csv with scripts/compare.py); rerun without it to "
                             "complete the CV")
    parser.add_argument("--smoke", action="store_true", help="the config's tiny smoke variant")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.folds < 3:
        raise ConfigError(f"--folds {args.folds}: cross-validation needs at least 3 folds",
                          "pass --folds 3 (screening) or 5 (final rows)")
    cfg = config_from_cli(args.config, args.set, args.smoke, args.modality)
    from multimodal.ensemble.cv import run_cv
    from multimodal.evaluation.crossval import summarise_cv
    from multimodal.outputs import claim_output, record_entries
    from multimodal.training.trainer import train

    from multimodal.data.split.build import dataset_folders

    claim_output(args.workdir, "cross-validation", protected=dataset_folders(cfg.data))
    oof = run_cv(cfg, args.workdir, train, args.folds, args.seed, args.score_test,
                 show_progress=not args.no_progress, only=args.only_folds)
    record_entries(args.workdir, "cross-validation",
                   [e for e in os.listdir(args.workdir) if e in CV_ENTRIES or e.startswith("fold_")])
    if args.only_folds is not None:
        print(screen_line(oof))
        return 0
    summary = summarise_cv(args.workdir, extra={"name": cfg.name, "modality": cfg.modality})
    print(summary_line(summary))
    print(f"-> {args.workdir}/oof (compare two: scripts/compare.py A/oof B/oof)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
