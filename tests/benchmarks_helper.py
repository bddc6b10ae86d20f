"""Benchmarks as the tests use them: modules of the `benchmarks` package at the repository root,
run as `python -m benchmarks.<group>.<name>` from there (cwd=ROOT) or imported."""

import importlib
import importlib.util
import sys

from scripts_helper import ROOT


def import_benchmark(name: str):
    """`benchmarks.<name>` imported in this process. `python -m pytest` from the repository
    root (make test) finds the package already; plain `pytest` puts only tests/ on the path,
    so the root is added then."""
    if importlib.util.find_spec("benchmarks") is None:
        sys.path.insert(0, ROOT)
    return importlib.import_module(f"benchmarks.{name}")
