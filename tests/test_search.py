"""scripts/search.py: the space file, a search killed mid-study and resumed, the best config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import yaml

from multimodal.config import config_differences, load_config
from multimodal.run.files import load_run_config
from multimodal.errors import ConfigError
from multimodal.search.space import load_space
from scripts_helper import ROOT, run_script

SPACE = """\
train.learning_rate: {log_uniform: [1e-3, 1e-2]}
train.optimizer: {categorical: [adam, sgd]}
data.augment: {categorical: [[flip_h], [flip_h, flip_v]]}
"""


def _space(tmp_path, text=SPACE):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


def test_space_file_kinds_and_mistakes(tmp_path):
    text = SPACE + "data.batch_size: {int: [8, 32], step: 8}\n"
    params = {p.key: p for p in load_space(_space(tmp_path, text))}
    assert params["train.learning_rate"].low == 1e-3 and params["train.learning_rate"].log_scale
    assert params["data.augment"].encoded
    assert params["data.augment"].examples() == [["flip_h"], ["flip_h", "flip_v"]]
    assert params["data.batch_size"].step == 8
    for text, message in [("train.learning_rate: {log_uniform: [0, 1]}", "low > 0"),
                          ("train.learning_rate: {normal: [0, 1]}", "exactly one of"),
                          ("train.epochs: {int: [5, 2]}", "must be below"),
                          ("train.epochs: {int: [1.5, 3]}", "not an integer"),
                          ("train.optimizer: {categorical: []}", "non-empty list"),
                          ("lr: {uniform: [0, 1]}", "not a dotted config key"),
                          ("- a", "mapping of config keys")]:
        with pytest.raises(ConfigError, match=message):
            load_space(_space(tmp_path, text + "\n"))


def test_a_bad_space_value_and_an_image_split_stop_before_any_trial(tmp_path):
    common = ("--config", "configs/ham10000_sample.yaml", "--trials", "1", "--smoke",
              "--out", str(tmp_path / "s"), "--no-progress")
    out = run_script("search.py", *common, "--space",
                     _space(tmp_path, "train.optimizer: {categorical: [adam, lion]}\n"),
                     check=False)
    assert out.returncode == 2 and "train.optimizer = 'lion' is refused" in out.stderr
    out = run_script("search.py", *common, "--space", _space(tmp_path),
                     "--set", "data.split_by=image", check=False)
    assert out.returncode == 2 and "grouped splits only" in out.stderr
    assert not (tmp_path / "s" / "study.db").exists()


def test_search_killed_mid_study_resumes_to_exactly_three_trials(tmp_path):
    """SIGKILL while the second trial trains; the same command continues the study
    (the killed trial is failed and queued again) and ends with 3 complete trials; the best
    config loads and, with --smoke, is the best trial's own config."""
    out = tmp_path / "search"
    space = _space(tmp_path)
    command = [sys.executable, os.path.join(ROOT, "scripts", "search.py"), "--config",
               "configs/ham10000_sample.yaml", "--space", space, "--trials", "3", "--smoke",
               "--sampler", "random", "--out", str(out), "--no-progress"]
    # unoptimised XLA code compiles in half the time; compiling is most of a smoke trial
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "XLA_FLAGS": (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("trial 1: train.learning_rate"):  # trial 0 done, 1 training
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    assert (out / "study.db").exists() and (out / "search.lock").exists()

    resumed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "1 interrupted trial(s) queued again" in resumed.stdout
    assert "3 trials finished (3 complete, 0 pruned, 1 failed)" in resumed.stdout

    import optuna
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{out / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 3 and states.count("FAIL") == 1, states
    killed = next(t for t in study.trials if t.state.name == "FAIL")
    again = next(t for t in study.trials if t.user_attrs.get("resumes") == killed.number)
    assert again.params == killed.params and again.state.name == "COMPLETE"
    assert not (out / "search.lock").exists()
    rows = (out / "trials.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 and (out / "search.png").stat().st_size > 0

    best_path = str(out / "best_config.yaml")
    best = load_config(best_path)
    best_trial = study.best_trial
    assert best.train.learning_rate == best_trial.params["train.learning_rate"]
    assert best.train.optimizer == best_trial.params["train.optimizer"]
    assert best.train.max_steps is None and best.data.image_size == 64  # the full config
    own = load_run_config(best_trial.user_attrs["workdir"])
    assert config_differences(load_config(best_path, smoke=True), own) == []
    with open(best_path) as f:
        text = f.read()
    assert text.startswith("# Best of 3 complete trials") and yaml.safe_load(text)["smoke"]

    other = run_script("search.py", *command[2:], "--seed", "1", check=False)
    assert other.returncode == 2 and "other settings (seed differ)" in other.stderr
