"""XGBoost stacking over out-of-fold image predictions and patient metadata.

    python scripts/stack.py --config configs/ham10000_sample.yaml --modality image \
        --workdir runs/stack [--folds 5] [--features CACHE] [--set ...] [--smoke]
    python scripts/evaluate.py --checkpoint runs/stack

Trains the member on the base split (WORKDIR/full), one member per grouped fold of the
development rows (WORKDIR/fold_k) for out-of-fold predictions, then an XGBoost stacker
on [probabilities + metadata] with class weights: fitted on 80% of the out-of-fold rows
(grouped), early-stopped on 10%, and the last 10% held out for evaluation's calibration
and operating point. Saves stacker.ubj + manifest.json. Finished runs are reused, so an
interrupted build continues where it stopped.

With a K-fold split file (--set data.split_file=folds.csv --set data.fold=k) the base
split tests on fold k and validates on fold k+1, and the out-of-fold members use the
file's other K-1 folds. --group-context adds per-lesion features (images per lesion,
lesion-mean probabilities); it warns: in HAM10000 the number of images of a lesion is a
curation artefact that differs by diagnosis, a label proxy like dx_type.
"""

from __future__ import annotations

import argparse
import json
import sys

from multimodal.config import MODALITIES, config_from_cli
from multimodal.errors import ConfigError, cli

# what a stacking build writes (the output marker lists these as its own)
STACK_ENTRIES = ("full", "folds.csv", "fold_*", "stacker.ubj", "val_predictions.csv", "oof.csv",
                 "manifest.json", "eval*")


@cli
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config of the members (not with --cv)")
    parser.add_argument("--cv", nargs="+", metavar="CV_DIR",
                        help="stack the fold models of these cross-validation folders "
                             "(scripts/cv.py, same folds) instead of training members")
    parser.add_argument("--stacker-device", choices=("cpu", "cuda"), default="cpu",
                        help="where XGBoost fits the stacker (cuda: an NVIDIA GPU)")
    parser.add_argument("--bootstrap", type=int, default=1000,
                        help="with --cv: lesion resamples for the intervals (default 1000)")
    parser.add_argument("--score-test", action="store_true",
                        help="with --cv: also score the base test rows (fold-model averages; "
                             "once per final configuration)")
    parser.add_argument("--modality", choices=MODALITIES, default="image",
                        help="the members' modality (default image: metadata enters the stacker)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (repeatable)")
    parser.add_argument("--features", metavar="CACHE", help="members train on a feature cache")
    parser.add_argument("--workdir", required=True, help="folder for the ensemble")
    parser.add_argument("--folds", type=int, default=None,
                        help="grouped folds for out-of-fold predictions (>= 3; default 5). A "
                             "K-fold split file (data.fold) brings its own K-1")
    parser.add_argument("--seed", type=int, default=0, help="folds and stacker seed")
    parser.add_argument("--group-context", action="store_true",
                        help="add per-lesion context (images per lesion, lesion-mean "
                             "probabilities); off by default: a label proxy in HAM10000")
    parser.add_argument("--smoke", action="store_true", help="the config's tiny smoke variant")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.cv:
        return stack_cross_validation(args)
    if not args.config:
        raise ConfigError("stack.py needs --config (members to train) or --cv (CV folders)",
                          "e.g. --cv runs/cv_image runs/cv_image_meta")
    cfg = config_from_cli(args.config, args.set, args.smoke, args.modality, args.features)
    from multimodal.ensemble.arguments import check_stacking_folds

    check_stacking_folds(cfg, args.folds)  # before the member trains and workdir is claimed
    from multimodal.data.split.build import dataset_folders
    from multimodal.ensemble.build import build_stacking
    from multimodal.outputs import claim_output
    from multimodal.training.trainer import train

    # resumable: finished members are kept, so the folder is new, empty or its own
    claim_output(args.workdir, "stacking", protected=dataset_folders(cfg.data),
                 legacy=STACK_ENTRIES)

    summary = build_stacking(cfg, args.workdir, train, args.folds, args.seed,
                             args.group_context, show_progress=not args.no_progress,
                             device=args.stacker_device)
    print(json.dumps(summary, indent=1))
    print(f"stacking ensemble -> {args.workdir} (evaluate: scripts/evaluate.py --checkpoint "
          f"{args.workdir})")
    return 0


def stack_cross_validation(args) -> int:
    import os

    from multimodal.errors import RunError
    from multimodal.evaluation.crossval import stack_report
    from multimodal.outputs import claim_output

    if args.config or args.features or args.set or args.folds is not None:
        raise ConfigError("--cv stacks finished cross-validations: --config, --set, "
                          "--features and --folds belong to the CV runs", "drop them")
    if args.bootstrap < 10:
        raise ConfigError(f"--bootstrap {args.bootstrap}: an interval needs at least 10 "
                          "resamples", "use the default 1000")
    for cv in args.cv:
        if not os.path.exists(os.path.join(cv, "cv.json")):
            raise RunError(f"{cv} is not a cross-validation folder (no cv.json)",
                           "make one: python scripts/cv.py --config C --folds 5 --workdir "
                           f"{cv} --score-test")
    names = [os.path.basename(os.path.normpath(os.path.abspath(c))) for c in args.cv]
    if len(set(names)) < len(names):
        raise ConfigError(f"--cv folders must have different names (they label the systems): "
                          f"{names}", "rename or move one")
    claim_output(args.workdir, "stacking (cv)",
                 protected={c: "cross-validation" for c in args.cv})
    result = stack_report(args.cv, args.workdir, args.seed, args.score_test, args.bootstrap,
                          args.stacker_device)
    with open(os.path.join(args.workdir, "systems.md")) as f:
        print(f.read())
    print(f"-> {args.workdir}/systems.md ({len(result['systems'])} systems)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
