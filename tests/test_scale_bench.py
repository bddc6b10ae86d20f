"""benchmarks/speed/scale.py: the synthetic set is HAM10000-shaped (its columns, 1-3 images a
lesion sharing the lesion's label and patient data, every picture 600x450 and distinct), and
the smoke run measures every asked stage at both sizes in a result file."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
from benchmarks_helper import import_benchmark
from PIL import Image
from scripts_helper import ROOT


def test_the_synthetic_set_is_ham10000_shaped(tmp_path):
    scale = import_benchmark("speed.scale")
    scale.synth(str(tmp_path), 30, processes=1)
    frame = pd.read_csv(tmp_path / "HAM10000_metadata.csv")
    assert list(frame.columns) == ["lesion_id", "image_id", "dx", "dx_type", "age", "sex",
                                   "localization"]
    assert len(frame) == 30 and frame["image_id"].is_unique
    sizes = frame.groupby("lesion_id").size()
    assert sizes.between(1, 3).all() and (sizes > 1).any()
    per_lesion = frame.groupby("lesion_id")[["dx", "age", "sex", "localization"]].nunique()
    assert (per_lesion == 1).all().all()
    pictures = [np.asarray(Image.open(tmp_path / "images" / f"{i}.jpg")) for i in frame.image_id]
    assert {p.shape for p in pictures} == {(450, 600, 3)}
    assert len({p.tobytes() for p in pictures}) == 30


def test_the_smoke_run_measures_each_stage_at_both_sizes(tmp_path):
    stages = ["split", "bootstrap"]  # the other stages: the same child runner
    done = subprocess.run([sys.executable, "-m", "benchmarks.speed.scale", "--smoke",
                           "--stages", *stages, "--out", str(tmp_path / "data"),
                           "--results", str(tmp_path), "--name", "scale_smoke"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads((tmp_path / "scale_smoke.json").read_text())
    measured = {(r["stage"], r["n"]) for r in data["results"]}
    assert measured == {(s, n) for s in stages[:1] for n in (60, 120)} | {
        ("bootstrap", n) for n in (500, 1000)}
    assert all(r["seconds"] > 0 and r["peak_kb"] > 0 for r in data["results"])
    assert set(data["ratios"]) == set(stages)
    assert (tmp_path / "data" / "n120" / "split.csv").exists()
    assert "| bootstrap | 500 -> 1,000 |" in (tmp_path / "scale_smoke.md").read_text()
