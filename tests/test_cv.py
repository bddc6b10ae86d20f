"""Cross-validation (scripts/cv.py): every development row predicted once by a model that
never trained or validated on its lesion, the test rows never touched, resumable, and two
CV results compared on the same rows."""

import json

import pandas as pd
import pytest

from scripts_helper import refused, run_script

SMOKE = ("--config", "configs/ham10000_sample.yaml", "--smoke", "--no-progress")


@pytest.fixture(scope="module")
def cv_dir(tmp_path_factory):
    work = tmp_path_factory.mktemp("cv") / "cv"
    run_script("cv.py", *SMOKE, "--folds", "3", "--workdir", str(work), "--score-test")
    return work


def test_oof_rows_are_the_development_rows_once_each_from_a_model_blind_to_them(cv_dir):
    base = pd.read_csv(cv_dir / "base_split.csv", dtype=str)
    oof = pd.read_csv(cv_dir / "oof" / "predictions.csv", dtype={"image_id": str})
    dev = set(base.loc[base["split"] != "test", "image_id"])
    assert sorted(oof["image_id"]) == sorted(dev)  # each once, no test row
    for k in range(3):
        split = pd.read_csv(cv_dir / f"fold_{k}" / "fold_split.csv", dtype=str)
        predicted = set(oof.loc[oof["fold"] == k, "image_id"])
        assert predicted == set(split.loc[split["split"] == "test", "image_id"])
        seen = split[split["split"] != "test"]
        held = split[split["split"] == "test"]
        assert not set(seen["group_id"]) & set(held["group_id"])  # no lesion on both sides
        assert not set(seen["image_id"]) & dev - set(seen["image_id"]) - predicted
        assert len(split.loc[split["split"] == "val"]) < len(seen) / 5  # an inner tenth
        assert not set(seen["image_id"]) & set(base.loc[base["split"] == "test", "image_id"])
        test = pd.read_csv(cv_dir / "test" / f"fold_{k}.csv", dtype={"image_id": str})
        assert set(test["image_id"]) == set(base.loc[base["split"] == "test", "image_id"])


def test_metrics_pool_every_row_with_intervals_and_the_fold_spread(cv_dir):
    summary = json.loads((cv_dir / "oof" / "metrics.json").read_text())
    assert summary["rows"] == len(pd.read_csv(cv_dir / "oof" / "predictions.csv"))
    low, high = summary["metrics"]["balanced_accuracy"]["ci95"]
    assert low <= summary["metrics"]["balanced_accuracy"]["value"] <= high
    assert len(summary["fold_metrics"]) == 3 and summary["fold_spread"]["accuracy"]["sd"] >= 0


def test_a_rerun_resumes_and_another_setting_is_refused(cv_dir):
    before = (cv_dir / "oof" / "predictions.csv").read_text()
    out = run_script("cv.py", *SMOKE, "--folds", "3", "--workdir", str(cv_dir), "--score-test")
    assert "epoch" not in out.stdout + out.stderr  # every fold reused, nothing trained
    assert (cv_dir / "oof" / "predictions.csv").read_text() == before
    refused(run_script("cv.py", *SMOKE, "--folds", "4", "--workdir", str(cv_dir), check=False),
            "another setting", "folds")
    refused(run_script("cv.py", *SMOKE, "--folds", "2", "--workdir", str(cv_dir), check=False),
            "at least 3 folds")


def test_a_screen_runs_only_the_folds_asked_and_pools_nothing(cv_dir, tmp_path):
    import shutil

    work = tmp_path / "screen"
    shutil.copytree(cv_dir, work)
    shutil.rmtree(work / "oof")
    shutil.rmtree(work / "fold_2")
    out = run_script("cv.py", *SMOKE, "--folds", "3", "--workdir", str(work), "--only-folds", "1")
    assert "epoch" not in out.stdout + out.stderr  # fold 1 reused, fold 2 not trained
    rows = len(pd.read_csv(work / "fold_1" / "oof_predictions.csv"))
    assert f"screen: folds [1] only, {rows} rows" in out.stdout
    assert not (work / "oof").exists() and not (work / "fold_2").exists()
    refused(run_script("cv.py", *SMOKE, "--folds", "3", "--workdir", str(work), "--only-folds",
                       "3", check=False), "--only-folds", "0 to 2")


def test_two_cv_results_compare_paired_on_the_oof_rows(cv_dir, tmp_path):
    out = run_script("compare.py", str(cv_dir / "oof"), str(cv_dir / "oof"),
                     "--out", str(tmp_path / "cmp.json"))
    result = json.loads((tmp_path / "cmp.json").read_text())
    rows = len(pd.read_csv(cv_dir / "oof" / "predictions.csv"))
    assert result["rows"] == rows and "balanced_accuracy" in out.stdout
    assert result["metrics"]["balanced_accuracy"]["difference"] == 0


def test_stacking_a_cv_folder_scores_every_system_on_the_same_rows(cv_dir, tmp_path):
    out = tmp_path / "stack"
    run_script("stack.py", "--cv", str(cv_dir), "--workdir", str(out), "--score-test",
               "--bootstrap", "20")
    result = json.loads((out / "systems.json").read_text())
    systems = result["systems"]
    rows = len(pd.read_csv(cv_dir / "oof" / "predictions.csv"))
    assert systems["stacker"]["oof"]["rows"] == rows  # cross-fitted: every development row
    assert systems["stacker (no metadata)"]["oof"]["rows"] == rows
    test_rows = systems["stacker"]["test"]["rows"]
    assert systems["member:cv"]["test"]["rows"] == test_rows
    assert 0 <= systems["stacker"]["oof"]["rule_balanced_accuracy"] <= 1
    assert result["differences"]["metadata gain at the stacker (oof)"]["groups"] > 0
    assert (out / "stacker.ubj").exists() and (out / "systems.md").exists()
    import subprocess
    import sys

    from scripts_helper import ROOT
    table = subprocess.run([sys.executable, "-m", "benchmarks.quality.cv_table", "--cv",
                            str(cv_dir), "--stack", str(out), "--made-by",
                            "python scripts/cv.py ...",
                            "--results", str(tmp_path / "results"), "--name", "cv"],
                           cwd=ROOT, capture_output=True, text=True)
    assert table.returncode == 0, table.stderr
    text = (tmp_path / "results" / "cv.md").read_text()
    assert f"| {rows} |" in text and "stacker (no metadata)" in text and "Command:" in text
    refused(run_script("stack.py", "--cv", str(cv_dir), "--config", SMOKE[1], "--workdir",
                       str(tmp_path / "x"), check=False), "--config")
    refused(run_script("stack.py", "--cv", str(tmp_path), "--workdir", str(tmp_path / "y"),
                       check=False), "not a cross-validation folder")


def test_cv_folders_on_other_folds_are_refused_for_stacking():
    from multimodal.ensemble.cv_stack import check_same_rows
    from multimodal.errors import ConfigError

    oof = pd.DataFrame({"image_id": ["a", "b", "c"], "fold": [0, 1, 2]})
    same = {"dir": "x", "classes": ["p", "q"], "oof": oof}
    check_same_rows([same, {**same, "dir": "y"}])
    with pytest.raises(ConfigError, match="other rows or folds"):
        check_same_rows([same, {**same, "dir": "z", "oof": oof.assign(fold=[1, 0, 2])}])
