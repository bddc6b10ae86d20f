"""End-to-end training through scripts/train.py on the bundled sample (smoke size)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from scripts_helper import ROOT, run_script

SMOKE = ["--config", "configs/ham10000_sample.yaml", "--smoke", "--no-progress"]


def _history(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("modality", ["image", "meta", "image+meta"])
def test_each_modality_trains_end_to_end(tmp_path, modality):
    run_script("train.py", *SMOKE, "--modality", modality, "--workdir", str(tmp_path))
    for name in ("config.yaml", "classes.json", "metadata_encoder.json", "normalizer.json",
                 "split.csv", "run.json", "metrics.jsonl", "summary.json", "curves.png"):
        assert (tmp_path / name).exists(), name
    assert os.listdir(tmp_path / "checkpoints" / "latest") == ["3"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 3 and np.isfinite(summary["last"]["train_loss"])


def test_config_errors_stop_before_any_work(tmp_path):
    out = run_script("train.py", *SMOKE, "--set", "train.lr=1", "--workdir", str(tmp_path),
                     check=False)
    assert out.returncode == 2 and "unknown key(s) ['train.lr']" in out.stderr
    assert not os.listdir(tmp_path)


def test_existing_run_needs_resume(tmp_path):
    run_script("train.py", *SMOKE, "--workdir", str(tmp_path))
    out = run_script("train.py", *SMOKE, "--workdir", str(tmp_path), check=False)
    assert out.returncode == 2 and "--resume" in out.stderr


LONG = ["--set", "train.max_steps=30", "--set", "train.epochs=2", "--set", "train.patience=null",
        "--set", "train.checkpoint_every_steps=3", "--set", "data.batch_size=16"]


def test_killed_run_resumes_to_the_same_result(tmp_path):
    reference = tmp_path / "reference"
    run_script("train.py", *SMOKE, *LONG, "--workdir", str(reference))

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts", "train.py"), *SMOKE,
                             *LONG, "--workdir", str(killed)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = killed / "checkpoints" / "latest"
    deadline = time.time() + 300
    while time.time() < deadline:
        steps = [int(s) for s in os.listdir(latest) if s.isdigit()] if latest.exists() else []
        if steps and max(steps) >= 6:
            break
        time.sleep(0.05)
    still_running = proc.poll() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert still_running, "the run finished before it could be killed"
    steps = [int(s) for s in os.listdir(latest) if s.isdigit()]
    assert 6 <= max(steps) < 30

    run_script("train.py", *SMOKE, *LONG, "--workdir", str(killed), "--resume")
    want, got = _history(reference), _history(killed)
    assert [h["step"] for h in got] == [h["step"] for h in want]
    for a, b in zip(want, got):
        for key in ("train_loss", "val_log_loss", "val_balanced_accuracy", "val_macro_auc"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), key


@pytest.mark.skipif("device_count=4" not in os.environ.get("XLA_FLAGS", ""),
                    reason="needs XLA_FLAGS=--xla_force_host_platform_device_count=4 (make test)")
def test_one_and_four_devices_agree(tmp_path):
    runs = {}
    for n in (1, 4):
        run_script("train.py", *SMOKE, "--set", "train.max_steps=6", "--devices", str(n),
                   "--workdir", str(tmp_path / str(n)))
        runs[n] = _history(tmp_path / str(n))[-1]
    assert json.loads((tmp_path / "4" / "run.json").read_text())["devices"].__len__() == 4
    for key in ("train_loss", "val_log_loss", "val_macro_auc"):
        assert runs[1][key] == pytest.approx(runs[4][key], abs=2e-3), key
    assert runs[1]["val_accuracy"] == pytest.approx(runs[4]["val_accuracy"], abs=0.02)


def test_ema_and_tensorboard_options(tmp_path):
    run_script("train.py", *SMOKE, "--set", "train.ema_decay=0.9", "--set", "train.tensorboard=true",
               "--workdir", str(tmp_path))
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert _history(tmp_path)[-1]["step"] == 3
    # `best` holds the averaged weights, `latest` the raw ones (same step here)
    from flax import nnx

    from multimodal.run import load_run

    best, latest = load_run(str(tmp_path), "best"), load_run(str(tmp_path), "latest")
    assert best.step == latest.step == 3
    b = nnx.state(best.model, nnx.Param).to_pure_dict()["head"]["kernel"]
    r = nnx.state(latest.model, nnx.Param).to_pure_dict()["head"]["kernel"]
    assert not np.allclose(b, r)
