"""The GPU recipe (configs/ham10000_gpu.yaml) trains in smoke mode: its augmentation list,
Lite2 ImageNet weights, fine-tuning, EMA and bf16 all run, the bundled sample standing in for the
full dataset. CI has no GPU: this is its check. The CPU recipe (configs/ham10000_cpu.yaml) uses a
subset of the same settings on Lite0 (every config loads and checks in test_config.py; the
recipe itself runs in benchmarks/quality/recipe.py)."""

from __future__ import annotations

import json

import pytest

from multimodal.config import SAMPLE_DIR
from scripts_helper import run_script


@pytest.mark.parametrize("config", ["configs/ham10000_gpu.yaml"])
def test_recipe_trains_in_smoke_mode(config, tmp_path):
    work = tmp_path / "run"
    run_script("train.py", "--config", config, "--smoke", "--no-progress", "--workdir", str(work),
               "--set", f"data.options.root={SAMPLE_DIR}")
    summary = json.loads((work / "summary.json").read_text())
    assert summary["steps"] == 3
    saved = (work / "config.yaml").read_text()
    assert "shades_of_gray" in saved and "ema_decay" in saved and "jpeg" in saved
