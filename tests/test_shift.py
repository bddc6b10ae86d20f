"""Acquisition shifts (multimodal/data/images/shift.py) and the shifted test copy a run is evaluated
on."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from multimodal.data.images.shift import SHIFTS, parse_shifts, shift_image
from multimodal.errors import ConfigError
from scripts_helper import refused, run_script


def picture(seed=0, size=(40, 30)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(30, 220, (size[1], size[0], 3), dtype=np.uint8))


@pytest.mark.parametrize("name", SHIFTS)
def test_each_shift_changes_the_picture_the_same_way_for_the_same_seed(name):
    image = picture()
    a, drawn_a = shift_image(image, [name], np.random.default_rng(1))
    b, drawn_b = shift_image(image, [name], np.random.default_rng(1))
    c, drawn_c = shift_image(image, [name], np.random.default_rng(2))
    assert np.array_equal(np.asarray(a), np.asarray(b)) and drawn_a == drawn_b
    if name == "squash":
        assert a.size == (30, 30) and image.size == (40, 30)
    else:
        assert a.size == image.size
        assert not np.array_equal(np.asarray(a), np.asarray(image)), "the shift did nothing"
        assert drawn_a != drawn_c, "two seeds drew the same parameters"


def test_white_balance_casts_colour_without_changing_brightness_much():
    image = Image.fromarray(np.full((20, 20, 3), 120, np.uint8))
    shifted, drawn = shift_image(image, ["white_balance"], np.random.default_rng(0))
    pixels = np.asarray(shifted, np.float64)
    assert abs(pixels.mean() - 120) < 2
    assert np.ptp(pixels.reshape(-1, 3).mean(0)) > 1  # the channels now differ


def test_shift_names_are_checked_and_ordered():
    assert parse_shifts("jpeg,contrast") == ["contrast", "jpeg"]
    with pytest.raises(ConfigError, match="unknown shift"):
        parse_shifts("contrast,blur")
    with pytest.raises(ConfigError):
        parse_shifts("")


def test_shifted_copy_of_a_runs_test_split_is_evaluated_in_one_command(smoke_run, tmp_path):
    out = tmp_path / "shifted"
    run_script("shift_testset.py", "--run", smoke_run, "--out", str(out), "--no-progress")
    split = pd.read_csv(os.path.join(smoke_run, "split.csv"))
    test_ids = set(split.loc[split["split"] == "test", "image_id"])
    labels = pd.read_csv(out / "labels.csv")
    assert set(labels["image_id"]) == test_ids  # the run's test rows, no others
    shifts = pd.read_csv(out / "shifts.csv")
    assert set(shifts.columns) == {"image_id", *SHIFTS} and len(shifts) == len(test_ids)
    first = Image.open(out / "images" / f"{labels['image_id'][0]}.png")
    assert first.size[0] == first.size[1]  # squashed
    # a second write into the same folder is refused
    again = run_script("shift_testset.py", "--run", smoke_run, "--out", str(out), check=False)
    assert again.returncode == 2 and "already holds" in again.stderr

    evaluated = tmp_path / "eval"
    run_script("evaluate.py", "--checkpoint", smoke_run, "--data", str(out / "dataset.yaml"),
               "--out", str(evaluated), "--bootstrap", "20", "--saliency", "0")
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert 0.0 <= metrics["metrics"]["balanced_accuracy"]["value"] <= 1.0
    predictions = pd.read_csv(evaluated / "predictions.csv")
    assert set(predictions["image_id"]) == test_ids
    # the drop, paired by image: original test split against its shifted copy
    run_script("evaluate.py", "--checkpoint", smoke_run, "--out", str(tmp_path / "original"),
               "--bootstrap", "20", "--saliency", "0")
    out = run_script("compare.py", str(tmp_path / "original"), str(evaluated), "--names",
                     "original", "shifted", "--bootstrap", "50", "--out",
                     str(tmp_path / "drop.json"))
    drop = json.loads((tmp_path / "drop.json").read_text())
    assert drop["rows"] == len(test_ids) and drop["rows_only_in_a"] == 0
    assert "| balanced_accuracy |" in out.stdout


def test_evaluate_shifted_writes_the_copy_once_and_scores_the_runs_test_rows(smoke_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)  # the copy is written inside the run folder
    first = run_script("evaluate.py", "--checkpoint", str(run), "--shifted", "jpeg,squash",
                       "--bootstrap", "20", "--saliency", "0")
    folder = run / "shifted" / "squash+jpeg-seed0"
    assert (folder / "dataset.yaml").exists() and "(made before)" not in first.stdout
    predictions = pd.read_csv(run / "eval_shifted_squash+jpeg-seed0" / "predictions.csv")
    split = pd.read_csv(run / "split.csv")
    assert set(predictions["image_id"]) == set(split.loc[split["split"] == "test", "image_id"])
    written = os.path.getmtime(folder / "labels.csv")
    second = run_script("evaluate.py", "--checkpoint", str(run), "--shifted", "jpeg,squash",
                        "--bootstrap", "20", "--saliency", "0", "--out", str(tmp_path / "again"))
    assert "(made before)" in second.stdout and os.path.getmtime(folder / "labels.csv") == written
    again = pd.read_csv(tmp_path / "again" / "predictions.csv")
    assert np.allclose(again.select_dtypes("number").to_numpy(),
                       predictions.select_dtypes("number").to_numpy())
    # a moved run's copy points at the old folder: written again, not reused
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    third = run_script("evaluate.py", "--checkpoint", str(moved), "--shifted", "jpeg,squash",
                       "--bootstrap", "20", "--saliency", "0")
    assert "(made before)" not in third.stdout
    refused(run_script("evaluate.py", "--checkpoint", str(run), "--shifted", "--data",
                       str(folder / "dataset.yaml"), check=False), "--shifted")
    refused(run_script("evaluate.py", "--checkpoint", str(run), "--shifted", "blur",
                       check=False), "unknown shift")
    refused(run_script("evaluate.py", "--checkpoint", str(run), "--shifted", "--shift-seed", "-1",
                       check=False), "seed")
    refused(run_script("evaluate.py", "--checkpoint", str(run), "--shift-seed", "1",
                       check=False), "--shifted")
