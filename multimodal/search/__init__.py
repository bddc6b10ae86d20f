"""Hyperparameter search over any config keys (Optuna): random or TPE sampling, median
pruning from validation curves, a resumable SQLite study, a results table and plot, and
the best config written as a file `scripts/train.py --config` accepts.

    space.py    the search space file (YAML: log_uniform, uniform, int, categorical)
    study.py    run_search: the study, its trials (each a run directory), resumption
    results.py  trials.csv, search.png (metric against each parameter), best_config.yaml
    shared.py   a study several workers share (--storage): one budget, dead workers' trials retried

Only validation is read: every trial is scored on its grouped validation split (a search
refuses `data.split_by: image`), and no test prediction is ever made.
"""

from multimodal.search.space import Param, load_space
from multimodal.search.study import run_search

__all__ = ["Param", "load_space", "run_search"]
