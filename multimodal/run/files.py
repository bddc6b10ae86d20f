"""The run directory's own files (layout.py), written by training and read by everything
after it: the resolved config, classes, fitted encoder and normaliser, provenance, the
epoch log and the final summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from multimodal.config import Config, config_from_dict
from multimodal.errors import ConfigError, RunError
from multimodal.run.layout import (CLASSES, CONFIG, ENCODER, METRICS_LOG, NORMALIZER,
                                   RUN_INFO, SUMMARY, path)


def git_commit() -> str:
    try:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=root, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=root, timeout=10).stdout
        return out.stdout.strip() + ("+dirty" if dirty.strip() else "") or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_run_files(workdir: str, cfg_dict: dict, classes, encoder, normalizer) -> None:
    os.makedirs(workdir, exist_ok=True)
    with open(path(workdir, CONFIG), "w") as f:
        yaml.safe_dump(cfg_dict, f, sort_keys=False)
    with open(path(workdir, CLASSES), "w") as f:
        json.dump(list(classes), f)
    encoder.save(path(workdir, ENCODER))
    with open(path(workdir, NORMALIZER), "w") as f:
        json.dump(normalizer.to_dict(), f)
    import flax
    import jax
    import optax
    import orbax.checkpoint as ocp

    info = {"git_commit": git_commit(), "python": sys.version.split()[0],
            "jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__,
            "orbax": ocp.__version__ if hasattr(ocp, "__version__") else "unknown",
            "devices": [str(d) for d in jax.devices()], "process_count": jax.process_count()}
    with open(path(workdir, RUN_INFO), "w") as f:
        json.dump(info, f, indent=1)


def write_history(workdir: str, history: list[dict]) -> None:
    """The epoch log, rewritten whole: on resume the checkpointed history is the truth."""
    with open(path(workdir, METRICS_LOG), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in history)


def write_summary(workdir: str, summary: dict) -> None:
    with open(path(workdir, SUMMARY), "w") as f:
        json.dump(summary, f, indent=1)


def read_history(workdir: str) -> list[dict]:
    """The epoch log (empty when the run has not finished an epoch)."""
    try:
        with open(path(workdir, METRICS_LOG)) as f:
            return [json.loads(line) for line in f if line.strip()]
    except OSError:
        return []


def load_run_config(workdir: str) -> Config:
    """The resolved config a run directory was trained with (its config.yaml)."""
    config = path(workdir, CONFIG)
    if not os.path.isdir(workdir):
        raise RunError(f"no run directory {workdir}")
    if not os.path.exists(config):
        raise RunError(f"{workdir} is not a run directory: it has no {CONFIG}",
                       "train one with: python scripts/train.py --config CONFIG --workdir "
                       f"{workdir}")
    try:
        with open(config) as f:
            tree = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise RunError(f"{config} is damaged: not valid YAML{where}",
                       "restore it from a copy, or train the run again") from None
    try:
        return config_from_dict(tree or {})
    except ConfigError as exc:
        raise RunError(f"{config} is damaged or from another version: {exc}") from None
