"""XGBoost stacking over out-of-fold image predictions and patient metadata.

    python scripts/stack.py --config configs/ham10000_sample.yaml --modality image \
        --workdir runs/stack [--folds 5] [--features CACHE] [--set ...] [--smoke]
    python scripts/evaluate.py --checkpoint runs/stack

Trains the member on the base split (WORKDIR/full), one member per grouped fold of the
development rows (WORKDIR/fold_k) for out-of-fold predictions, then an XGBoost stacker
on [probabilities + per-lesion context + metadata] with class weights and early stopping
on a grouped inner validation. Saves stacker.ubj + manifest.json. Finished runs are
reused, so an interrupted build continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys

from multimodal.config import config_from_cli


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--modality", choices=["image", "meta", "image+meta"], default="image",
                        help="the members' modality (default image: metadata enters the stacker)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--features", metavar="CACHE", help="members train on a feature cache")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-group-context", action="store_true",
                        help="leave out per-group (lesion/patient) mean probabilities")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    cfg = config_from_cli(args.config, args.set, args.smoke, args.modality, args.features)
    if cfg is None:
        return 2
    from multimodal.ensemble.build import build_stacking

    try:
        summary = build_stacking(cfg, args.workdir, args.folds, args.seed,
                                 not args.no_group_context, show_progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    print(f"stacking ensemble -> {args.workdir} (evaluate: scripts/evaluate.py --checkpoint "
          f"{args.workdir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
