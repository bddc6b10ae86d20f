"""Ensembles over trained runs: XGBoost stacking on out-of-fold predictions, weighted late fusion.

An ensemble is a directory with `manifest.json` (kind, class order, member runs, files)
and its model files in documented formats (XGBoost UBJ, JSON); `scripts/evaluate.py`
evaluates it like a single run.
"""
