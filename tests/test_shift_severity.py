"""The corruption benchmark's shift families at severities 1-5 (multimodal/data/images/shift.py),
their copies and evaluations (scripts/shift_testset.py, scripts/evaluate.py --severity) and
benchmarks/quality/shift_severity.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from multimodal.data.images.shift import (FAMILIES, SEVERITIES, SEVERITY, SHIFTS,
                                          parse_severity, parse_shifts, shift_image)
from multimodal.errors import ConfigError
from scripts_helper import ROOT, refused, run_script


SAMPLE = os.path.join(ROOT, "multimodal", "data", "sample", "ham10000", "images")


def picture(size=(160, 120), name="ISIC_0024318.jpg") -> Image.Image:
    """A bundled HAM10000 picture (values inside (0, 255), so clipping is measurable),
    enlarged a little so each level of the 224 frame is a few pixels."""
    with Image.open(os.path.join(SAMPLE, name)) as image:
        return image.convert("RGB").resize(size, Image.BILINEAR)


def shifted(family, level, seed=1, image=None):
    out, _ = shift_image(image or picture(), [family], np.random.default_rng(seed), level)
    return np.asarray(out, np.float64)


def grey(x):
    return x.mean(-1)


def psnr(x, original):
    return 10 * np.log10(255.0 ** 2 / max(np.mean((x - original) ** 2), 1e-12))


def corners(x, k=12):
    return np.mean([x[:k, :k], x[:k, -k:], x[-k:, :k], x[-k:, -k:]])


ORIGINAL = np.asarray(picture(), np.float64)
# family -> (a statistic of the shifted picture, +1: rises with the level, -1: falls)
STATISTIC = {
    "blur": (lambda x: np.mean(np.diff(grey(x), axis=1) ** 2), -1),  # high-frequency energy
    "vignette": (corners, -1),
    "black_corners": (lambda x: np.mean(x.max(-1) == 0), +1),
    "low_res": (lambda x: np.mean(np.all(np.diff(x, axis=1) == 0, -1)), +1),  # block pixels
    "noise": (lambda x: np.std(x - ORIGINAL), +1),
    "levels": (lambda x: np.mean((x == 0) | (x == 255)), +1),
    "contrast": (lambda x: np.std(grey(x)), -1),
    "saturation": (lambda x: abs(np.log(np.ptp(x, -1).mean() / np.ptp(ORIGINAL, -1).mean())), +1),
    "white_balance": (lambda x: np.ptp(np.log(x.mean((0, 1)) / ORIGINAL.mean((0, 1)))), +1),
    "gamma": (lambda x: abs(x.mean() - ORIGINAL.mean()), +1),
    "squash": (lambda x: x.shape[1] / x.shape[0], -1),
    "jpeg": (lambda x: psnr(x, ORIGINAL), -1),
}


def test_every_family_has_five_levels_and_a_monotonicity_check():
    assert set(SEVERITY) == set(FAMILIES) == set(STATISTIC)
    assert set(SHIFTS) <= set(FAMILIES)
    assert all(len(levels) == len(SEVERITIES) == 5 for levels in SEVERITY.values())


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_is_seeded_and_deterministic(family):
    image = picture()
    for level in (1, 5):
        a, drawn_a = shift_image(image, [family], np.random.default_rng(3), level)
        b, drawn_b = shift_image(image, [family], np.random.default_rng(3), level)
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes() and drawn_a == drawn_b
        if family != "squash":
            assert a.size == image.size
        assert not np.array_equal(np.asarray(a), np.asarray(image)), "the shift did nothing"


@pytest.mark.parametrize("family", FAMILIES)
def test_severity_is_monotone_in_a_measurable_statistic(family):
    statistic, sign = STATISTIC[family]
    values = [statistic(shifted(family, level)) for level in SEVERITIES]
    steps = sign * np.diff(values)
    assert (steps > 0).all(), f"{family}: {np.round(values, 4).tolist()} is not monotone"


def test_noise_differs_between_seeds_and_the_direction_is_drawn():
    assert not np.array_equal(shifted("noise", 3, seed=1), shifted("noise", 3, seed=2))
    _, drawn = zip(*[shift_image(picture(), ["gamma"], np.random.default_rng(s), 3)
                     for s in range(8)])
    assert {d["gamma"] for d in drawn} == {1.6, round(1 / 1.6, 4)}  # darker and brighter


def test_without_a_severity_the_shifts_draw_as_before():
    """severity=None keeps the original ranges, order and draws (copies stay comparable)."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(30, 220, (30, 40, 3), dtype=np.uint8))
    _, drawn = shift_image(image, SHIFTS, np.random.default_rng(7))
    assert drawn.pop("white_balance") == pytest.approx([1.1405, 0.9143, 0.9451])
    assert drawn.pop("squash") == [40, 30] and drawn.pop("jpeg") == 15
    assert drawn == pytest.approx({"contrast": 1.1625859199442004, "saturation":
                                   1.4869351810665332, "gamma": 1.3988427563170096})
    assert parse_shifts("all") == list(SHIFTS) and parse_shifts("all", 2) == list(FAMILIES)


@pytest.mark.parametrize("bad", [0, 6, -1, "x", "2.5", "", "3 4"])
def test_an_invalid_severity_is_refused(bad):
    with pytest.raises(ConfigError, match="must be an integer 1-5"):
        parse_severity(bad)
    with pytest.raises(ConfigError):
        shift_image(picture((20, 16)), ["blur"], np.random.default_rng(0), bad)


def test_new_families_need_a_severity():
    with pytest.raises(ConfigError, match="without a severity") as caught:
        parse_shifts("contrast,blur")
    assert "--severity" in caught.value.one_line()
    assert parse_shifts("jpeg,blur,contrast", 1) == ["blur", "contrast", "jpeg"]


def test_scripts_refuse_a_bad_severity_in_one_line(smoke_run, tmp_path):
    refused(run_script("shift_testset.py", "--run", smoke_run, "--out", str(tmp_path / "c"),
                       "--severity", "6", check=False), "severity '6'", "1-5")
    refused(run_script("evaluate.py", "--checkpoint", smoke_run, "--shifted", "blur",
                       "--severity", "0", check=False), "1-5")
    refused(run_script("evaluate.py", "--checkpoint", smoke_run, "--severity", "3",
                       check=False), "--shifted")
    assert not (tmp_path / "c").exists()


def test_a_severity_copy_never_overwrites_a_dataset_or_an_earlier_copy(smoke_run, tmp_path):
    from multimodal.run.files import load_run_config
    from multimodal.data.split.build import dataset_folders

    dataset = next(iter(dataset_folders(load_run_config(smoke_run).data)))
    refused(run_script("shift_testset.py", "--run", smoke_run, "--out",
                       os.path.join(dataset, "shifted_s3"), "--shifts", "blur", "--severity",
                       "3", check=False), "inside the dataset")
    assert not os.path.exists(os.path.join(dataset, "shifted_s3"))
    out = tmp_path / "blur_noise_s2"
    run_script("shift_testset.py", "--run", smoke_run, "--out", str(out), "--shifts",
               "noise,blur", "--severity", "2", "--no-progress")
    shifts = pd.read_csv(out / "shifts.csv")
    assert set(shifts.columns) == {"image_id", "severity", "blur", "noise"}
    assert (shifts["severity"] == 2).all()
    written = (out / "labels.csv").read_bytes()
    again = run_script("shift_testset.py", "--run", smoke_run, "--out", str(out), "--shifts",
                       "blur", "--severity", "4", check=False)
    refused(again, "already")
    assert (out / "labels.csv").read_bytes() == written


def test_evaluate_shifted_with_a_severity_names_its_folders(smoke_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    run_script("evaluate.py", "--checkpoint", str(run), "--shifted", "blur", "--severity", "3",
               "--bootstrap", "10", "--saliency", "0")
    copy = run / "shifted" / "blur-s3-seed0"
    assert "severity 3" in (copy / "dataset.yaml").read_text()
    predictions = pd.read_csv(run / "eval_shifted_blur-s3-seed0" / "predictions.csv")
    split = pd.read_csv(run / "split.csv")
    assert set(predictions["image_id"]) == set(split.loc[split["split"] == "test", "image_id"])
    assert not (run / "eval_shifted_blur-seed0").exists()


def test_the_benchmark_runs_one_family_at_one_severity_on_the_smoke_run(smoke_run, tmp_path):
    run, results = tmp_path / "run", tmp_path / "results"
    shutil.copytree(smoke_run, run)  # the benchmark writes copies and evaluations inside it
    command = [sys.executable, "-m", "benchmarks.quality.shift_severity", "--checkpoint",
               str(run), "--smoke", "--bootstrap", "10", "--results", str(results)]
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr
    table = (results / "shift_severity_smoke.md").read_text()
    assert "| clean | - |" in table and "| blur | 3 |" in table
    assert "Command: `python " in table and "--smoke" in table
    data = json.loads((results / "shift_severity_smoke.json").read_text())
    drop = data["cells"]["blur-s3"]["drop"]
    assert set(drop) >= {"difference", "ci95"} and data["bootstrap"] == 10
    assert (results / "shift_severity_smoke.png").stat().st_size > 0
    assert (run / "shifted" / "blur-s3-seed0" / "dataset.yaml").exists()
    bad = subprocess.run(command[:3] + ["--checkpoint", str(run), "--families", "fog",
                                        "--results", str(results)],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    refused(bad, "unknown shift")


def test_the_mean_rows_average_each_severity_over_the_families():
    from benchmarks.quality.shift_severity import mean_rows

    def cell(bacc, drop, adapted=None):
        out = {"balanced_accuracy": {"value": bacc}, "drop": {"difference": drop}}
        if adapted:
            out["adapted"] = {"balanced_accuracy": {"value": adapted[0]},
                              "drop": {"difference": adapted[1]},
                              "gain": {"difference": adapted[2]}}
        return out

    data = {"blur-s3": cell(0.5, -0.10, (0.6, -0.02, 0.08)),
            "noise-s3": cell(0.3, -0.30, (0.5, -0.06, 0.20)),
            "blur-s5": cell(0.4, -0.20, (0.5, -0.10, 0.10)),
            "noise-s5": cell(0.2, -0.40, (0.4, -0.20, 0.20))}
    assert mean_rows(data, ["blur", "noise"], [3, 5], adapted=False) == [
        "| **mean of 2** | 3 | **0.400** | **-20.0** | | |",
        "| **mean of 2** | 5 | **0.300** | **-30.0** | | |"]
    (row,) = mean_rows(data, ["blur", "noise"], [3], adapted=True)
    assert row.endswith("| **0.550** | **-4.0** | **+14.0** |")
