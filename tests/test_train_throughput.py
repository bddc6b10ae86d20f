"""benchmarks/speed/train_throughput.py, the GPU-ready training benchmark, runs end to end in its
CPU smoke mode: the trainer's step, the same step fed by the real input pipeline, the pipeline
alone and the PyTorch peer each give a rate, and the result file names its command."""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks_helper import import_benchmark
from scripts_helper import ROOT


def test_smoke_mode_measures_every_column(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.speed.train_throughput", "--smoke", "--devices", "1",
         "--results", str(tmp_path)],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    data = json.loads((tmp_path / "train_throughput_smoke.json").read_text())
    (row,) = data["rows"]
    assert row["model"] == "efficientnet_lite0" and row["batch"] == 4
    for key in ("jax", "jax_input", "input", "torch"):
        assert row[key] > 0, key
    assert row["params"] == row["torch_params"]  # the same architecture on both sides
    assert row["host_peak_mb"] > 0
    assert data["command"].startswith("python -m benchmarks.speed.train_throughput --smoke")
    assert "| efficientnet_lite0 | 4 | 1 |" in (tmp_path / "train_throughput_smoke.md").read_text()


def test_input_alone_times_the_pipeline_not_its_buffer():
    """A pipeline that buffered 12 batches while the model compiled, then makes one batch per
    20 ms: the sustained rate is about 50 batches/s, not the buffer's reading speed."""
    import time

    sustained_rate = import_benchmark("speed.throughput_parts").sustained_rate

    def pipeline(buffered=12, seconds=0.02):
        for i in range(10_000):
            if i >= buffered:
                time.sleep(seconds)
            yield i

    rate = sustained_rate(pipeline(), batch=4, count=10, skip=12)
    assert rate <= 4 / 0.02 * 1.05  # never faster than the producer (sleep is a lower bound)
    assert rate > 4 / 0.02 / 3     # and of its order, on a loaded machine too
    buffered = sustained_rate(pipeline(), batch=4, count=10, skip=0)
    assert buffered > 4 * rate     # what the old timing saw: the buffer
