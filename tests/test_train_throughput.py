"""benchmarks/train_throughput.py, the GPU-ready training benchmark, runs end to end in its
CPU smoke mode: the trainer's step, the same step fed by the real input pipeline, the pipeline
alone and the PyTorch peer each give a rate, and the result file names its command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from scripts_helper import ROOT


def test_smoke_mode_measures_every_column(tmp_path):
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "train_throughput.py"), "--smoke",
         "--devices", "1", "--results", str(tmp_path)],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    data = json.loads((tmp_path / "train_throughput_smoke.json").read_text())
    (row,) = data["rows"]
    assert row["model"] == "efficientnet_lite0" and row["batch"] == 4
    for key in ("jax", "jax_input", "input", "torch"):
        assert row[key] > 0, key
    assert row["params"] == row["torch_params"]  # the same architecture on both sides
    assert row["host_peak_mb"] > 0 and "--smoke" in data["command"]
    assert "| efficientnet_lite0 | 4 | 1 |" in (tmp_path / "train_throughput_smoke.md").read_text()
