"""Edge values of the ensemble and comparison scripts' arguments: each is refused with one
`error:` line (exit 2) before any member trains or anything is written."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from multimodal.config import load_config
from multimodal.ensemble.arguments import check_stacking_folds
from scripts_helper import ROOT, refused, run_script

SAMPLE = ("--config", "configs/ham10000_sample.yaml", "--smoke", "--no-progress")


# -- stacking's --folds -----------------------------------------------------------------

@pytest.mark.parametrize("args, needles", [
    (["--folds", "1"], ["--folds 1", "at least 3 folds", "--folds 3 or more"]),
    (["--folds", "0"], ["--folds 0", "at least 3 folds"]),  # was: 5 folds, silently
    (["--folds", "1000"], ["--folds 1000", "only 375 group(s)", "smaller --folds, e.g. 5"]),
    (["--set", "data.fold=0", "--folds", "3"], ["K = 5", "leaves 4 development folds",
                                                 "--folds 4"]),
    (["--set", "data.fold=0", "--set", "data.folds=3"], ["(K = 3) leaves 2", "4 or more"]),
])
def test_stack_refuses_unusable_folds_before_training(tmp_path, args, needles):
    work = tmp_path / "stack"
    refused(run_script("stack.py", *SAMPLE, "--workdir", str(work), *args, check=False),
            *needles)
    assert not work.exists()  # before: full/ trained and written, then the error (or none)


def test_usable_folds_pass_the_check():
    cfg = load_config("configs/ham10000_sample.yaml", smoke=True)
    for folds in (None, 3, 5, 375):
        check_stacking_folds(cfg, folds)
    kfold = load_config("configs/ham10000_sample.yaml", ["data.fold=1"], smoke=True)
    check_stacking_folds(kfold, None)
    check_stacking_folds(kfold, 4)


def test_stack_folds_are_checked_against_a_kfold_split_file(tmp_path):
    from multimodal.data.split.build import load_table
    from multimodal.data.split.grouped import grouped_kfold
    from multimodal.errors import ConfigError

    cfg = load_config("configs/ham10000_sample.yaml", smoke=True)
    path = tmp_path / "folds.csv"
    grouped_kfold(load_table(cfg.data), k=3).to_csv(path, index=False)
    kfold = load_config("configs/ham10000_sample.yaml",
                        [f"data.split_file={path}", "data.fold=0"], smoke=True)
    with pytest.raises(ConfigError, match=r"\(K = 3\) leaves 2 besides the test fold"):
        check_stacking_folds(kfold, None)
    with pytest.raises(ConfigError, match="leaves 2 development folds"):
        check_stacking_folds(kfold, 4)


# -- late fusion's members --------------------------------------------------------------

def _fake_runs(tmp_path, *names):
    """Folders that pass the script's first check (a config.yaml): the refusals below must
    come before anything reads a member."""
    for name in names:
        os.makedirs(tmp_path / name)
        (tmp_path / name / "config.yaml").write_text("name: x\n")
    return [str(tmp_path / n) for n in names]


def test_late_fusion_refuses_a_single_member(tmp_path):
    (run,) = _fake_runs(tmp_path, "image")
    out = tmp_path / "fusion"
    refused(run_script("late_fusion.py", "--members", run, "--out", str(out), check=False),
            "at least two runs, got 1", "--members")
    assert not out.exists()


def test_late_fusion_refuses_a_run_named_twice_however_spelled(tmp_path):
    image, meta = _fake_runs(tmp_path, "image", "meta")
    os.symlink(image, tmp_path / "link")
    out = tmp_path / "fusion"
    spellings = [image, image + "/", os.path.join(image, "..", "image"),
                 os.path.relpath(image, ROOT), str(tmp_path / "link")]
    for other in spellings:
        line = refused(run_script("late_fusion.py", "--members", image, meta, other, "--out",
                                  str(out), check=False), "twice", "list each run directory once")
        assert other in line
    assert not out.exists()


# -- compare on damaged predictions -----------------------------------------------------

CLASSES = ["a", "b", "c"]


def _predictions(path, n=75, seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(3), n)
    frame = pd.DataFrame({"image_id": [f"img{i}" for i in range(n)],
                          "group_id": [f"g{i // 2}" for i in range(n)],
                          "label": [CLASSES[k] for k in rng.integers(0, 3, n)],
                          "predicted": [CLASSES[k] for k in probs.argmax(1)]})
    for k, c in enumerate(CLASSES):
        frame[f"prob_{c}"] = probs[:, k]
    for k, c in enumerate(CLASSES):
        frame[f"logit_{c}"] = np.log(probs[:, k])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def _compare(a, b, *extra):
    return run_script("compare.py", str(a), str(b), "--bootstrap", "10", *extra, check=False)


def _damage_cell(path, line, column, value):
    lines = path.read_text().splitlines()
    cells = lines[line - 1].split(",")
    cells[lines[0].split(",").index(column)] = value
    lines[line - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def test_compare_of_intact_evaluations_still_works(tmp_path):
    a = _predictions(tmp_path / "a" / "predictions.csv")
    b = _predictions(tmp_path / "b" / "predictions.csv", seed=0)
    out = _compare(a.parent, b, "--out", str(tmp_path / "c.json"))
    assert out.returncode == 0, out.stderr
    assert "75 shared rows" in out.stdout


@pytest.mark.parametrize("value, needles", [
    ("abc", ["line 11", "prob_b 'abc' is not a probability"]),
    ("", ["line 11", "prob_b (empty or NaN) is not a probability"]),
    ("nan", ["line 11", "prob_b (empty or NaN)"]),
    ("1.7", ["line 11", "prob_b 1.7 is not a probability in [0, 1]"]),
    ("-0.2", ["line 11", "prob_b"]),
])
def test_compare_refuses_damaged_probabilities_naming_file_and_line(tmp_path, value, needles):
    a = _predictions(tmp_path / "a" / "predictions.csv")
    b = _predictions(tmp_path / "b" / "predictions.csv")
    _damage_cell(b, 11, "prob_b", value)
    out = tmp_path / "comparison.json"
    line = refused(_compare(a, b, "--out", str(out)), *needles, "evaluate.py")
    assert str(b) in line and not out.exists()


def test_compare_refuses_a_truncated_evaluation(tmp_path):
    a = _predictions(tmp_path / "a" / "predictions.csv")
    b = _predictions(tmp_path / "b" / "predictions.csv")
    text = b.read_text()
    b.write_text(text[:text.index("\n", text.index("img3,")) + 1])  # the header and 4 rows
    refused(_compare(a, b), "share only 4 image id(s)", "75 rows in", "4 in",
            "not the same rows")
    b.write_text(text[:text.index("img3,") + 12])  # cut inside a row: its cells are missing
    refused(_compare(a, b), "line 5", "prob_")


def test_compare_refuses_mostly_other_rows(tmp_path):
    a = _predictions(tmp_path / "a" / "predictions.csv")
    b = tmp_path / "b" / "predictions.csv"
    _predictions(b)
    frame = pd.read_csv(b)
    frame.loc[10:, "image_id"] = [f"other{i}" for i in range(10, 75)]  # 10 of 75 shared
    frame.to_csv(b, index=False)
    refused(_compare(a, b), "share only 10 image id(s)", "not the same rows")
