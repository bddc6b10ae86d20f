"""The HAM10000 recipes (configs/ham10000_cpu.yaml, configs/ham10000_gpu.yaml) train in smoke
mode: their augmentation lists, pretrained weights, fine-tuning and EMA settings and (GPU) bf16
all run; the bundled sample stands in for the full dataset. The GPU recipe has not run on a
GPU in CI: this is its smoke check."""

from __future__ import annotations

import json

import pytest

from multimodal.config import SAMPLE_DIR
from scripts_helper import run_script


@pytest.mark.parametrize("config", ["configs/ham10000_cpu.yaml", "configs/ham10000_gpu.yaml"])
def test_recipe_trains_in_smoke_mode(config, tmp_path):
    work = tmp_path / "run"
    run_script("train.py", "--config", config, "--smoke", "--no-progress", "--workdir", str(work),
               "--set", f"data.options.root={SAMPLE_DIR}")
    summary = json.loads((work / "summary.json").read_text())
    assert summary["steps"] == 3
    saved = (work / "config.yaml").read_text()
    assert "shades_of_gray" in saved and "ema_decay" in saved
