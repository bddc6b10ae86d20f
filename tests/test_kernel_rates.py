"""benchmarks/speed/kernel_rates.py runs in its smoke mode, and its JAX and PyTorch kernels
compute the same thing (same result for the same inputs), so their rates compare like with
like."""

from __future__ import annotations

import json
import subprocess
import sys

from scripts_helper import ROOT


def test_smoke_mode_times_the_same_work_on_both_sides(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.speed.kernel_rates", "--smoke",
         "--results", str(tmp_path)], check=False, cwd=ROOT, capture_output=True, text=True,
        timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    rows = json.loads((tmp_path / "kernel_rates_cpu_smoke.json").read_text())["rows"]
    assert [r["op"] for r in rows] == ["forward", "forward", "input grad", "kernel grad"]
    for r in rows:
        assert r["max_rel_diff"] < 1e-4, r  # a layout or padding slip is off by ~1
        assert r["jax_gflops"] > 0 and r["torch_gflops"] > 0
