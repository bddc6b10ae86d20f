"""Hyperparameter search (Optuna): random or TPE sampling over any config keys.

    python scripts/search.py --config configs/baselines/fitzpatrick17k.yaml \
        --space configs/baselines/fitzpatrick17k_space.yaml --trials 10 --sampler random \
        [--timeout 3600] [--out runs/search_fitz] [--set ...] [--smoke] [--metric weighted_f1]

The space is a small YAML file (multimodal/search/space.py):
    train.optimizer: {categorical: [adam, rmsprop, sgd]}
    train.learning_rate: {log_uniform: [0.001, 0.1]}
    data.batch_size: {int: [16, 64], step: 16}

Each trial is a run directory under OUT/trials/, scored on its grouped validation split by
the config's train.early_stop_metric (--metric sets it); the test split is never scored.
A median pruner stops trials below the median of earlier ones at the same epoch (--pruner
none: never). The study lives in OUT/study.db (SQLite): run the same command again after
an interruption and it continues (running trials restart from their last checkpoint) until
--trials trials have finished. Writes OUT/trials.csv, OUT/search.png and OUT/best_config.yaml
(train it: python scripts/train.py --config OUT/best_config.yaml).

Several workers, on one machine or many, share one study with --storage URL: start the same
command in each (docs/multihost.md). A database (postgresql://user@host/db, sqlite:///f.db)
uses Optuna's heartbeat; journal:///shared/path/search.journal is a file on a file system
every worker sees. A dead worker's trial is failed and retried by the others from its last
checkpoint; --trials counts the finished trials of all workers, and each worker waits for
the others at the end so all report the same best trial. Watch it with optuna-dashboard.
"""

from __future__ import annotations

import argparse
import os
import sys

from multimodal.config import MODALITIES, load_config
from multimodal.tasks import CLASSIFICATION
from multimodal.errors import cli


@cli
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config to search around")
    parser.add_argument("--space", required=True, help="YAML search space (see above)")
    parser.add_argument("--trials", type=int, help="finished trials to reach (complete or pruned)")
    parser.add_argument("--timeout", type=float,
                        help="seconds for this session; no trial starts after it")
    parser.add_argument("--sampler", choices=("tpe", "random"), default="tpe")
    parser.add_argument("--pruner", choices=("median", "none"), default="median")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed")
    parser.add_argument("--metric", choices=CLASSIFICATION.metrics,
                        help="validation metric to maximise (sets train.early_stop_metric)")
    parser.add_argument("--out", help="search folder (default runs/search_<config name>)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value in every trial (repeatable)")
    parser.add_argument("--modality", choices=MODALITIES)
    parser.add_argument("--smoke", action="store_true", help="the config's tiny smoke variant")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--storage", metavar="URL",
                        help="a study several workers share: a database URL "
                             "(postgresql://..., sqlite:///path.db) or journal:///path (a "
                             "file on a shared file system); default OUT/study.db, one worker")
    args = parser.parse_args(argv)
    out = args.out or os.path.join("runs", f"search_{load_config(args.config).name}")
    from multimodal.outputs import claim_output
    from multimodal.search import run_search  # jax import after the arguments are valid

    # resumable (the study continues): new, empty or this tool's own folder
    claim_output(out, "search", legacy=("search.json", "study.db", "search.lock", "trials",
                                        "trials.csv", "search.png", "best_config.yaml"))

    result = run_search(args.config, args.space, out, trials=args.trials, timeout=args.timeout,
                        sampler=args.sampler, pruner=args.pruner, seed=args.seed,
                        overrides=args.set, smoke=args.smoke, modality=args.modality,
                        metric=args.metric, show_progress=not args.no_progress,
                        log=lambda line: print(line, flush=True), storage=args.storage)
    print(f"{result['finished']} trials finished ({result['complete']} complete, "
          f"{result['pruned']} pruned, {result['failed']} failed) -> {out}/trials.csv, "
          f"{out}/search.png")
    if result["best"]:
        best = result["best"]
        print(f"best: trial {best['trial']}, validation {result['metric']} {best['value']:.4f}, "
              f"{best['params']} -> {best['config']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
