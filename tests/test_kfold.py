"""K-fold split files (a `fold` column): loading, run k's parts, leak checks, and the real
train / evaluate / stack paths on a tiny dataset."""

import json

import pandas as pd
import pytest

from multimodal.config import DataConfig
from multimodal.data.split import grouped as splits
from multimodal.data.split.build import resolve_split
from multimodal.data.sources import ham10000
from multimodal.ensemble.oof import dev_folds
from multimodal.errors import ConfigError, DataError, LeakageError
from scripts_helper import run_script

SMOKE = ["--config", "configs/ham10000_sample.yaml", "--smoke", "--no-progress"]


@pytest.fixture
def tiny(ham_dir, tmp_path):
    """The tiny HAM10000-format dataset, its table and a grouped 4-fold split file."""
    table = ham10000.load(str(ham_dir))
    folds = splits.grouped_kfold(table, k=4, seed=0)
    path = tmp_path / "folds.csv"
    splits.save_split(folds, path)
    return ham_dir, table, folds, path


def _data(ham_dir, **kw):
    return DataConfig(options={"root": str(ham_dir)}, **kw)


def test_fold_file_run_k_tests_fold_k_and_validates_on_the_next(tiny):
    ham_dir, table, folds, path = tiny
    loaded = splits.load_split(path, table)
    assert loaded["fold"].dtype.kind == "i"
    assert splits.check_leakage(table, loaded) == []  # default column: fold (was a KeyError)
    for k in range(4):
        split = resolve_split(table, _data(ham_dir, split_file=str(path), fold=k))
        by_role = split.groupby("split")["fold"].unique().map(sorted).to_dict()
        assert by_role == {"test": [k], "val": [(k + 1) % 4],
                           "train": sorted(set(range(4)) - {k, (k + 1) % 4})}
        assert split.groupby("group_id")["split"].nunique().max() == 1


def test_fold_settings_are_checked(tiny, tmp_path):
    ham_dir, table, folds, path = tiny
    with pytest.raises(ConfigError, match="choose the run's test fold with data.fold") as exc:
        resolve_split(table, _data(ham_dir, split_file=str(path)))
    assert "--set data.fold=0" in str(exc.value)
    with pytest.raises(ConfigError, match=r"data.fold=4 is not among the folds 0..3"):
        resolve_split(table, _data(ham_dir, split_file=str(path), fold=4))
    tvt = tmp_path / "tvt.csv"
    splits.save_split(splits.train_val_test(table, seed=0), tvt)
    with pytest.raises(ConfigError, match="needs a K-fold split file"):
        resolve_split(table, _data(ham_dir, split_file=str(tvt), fold=0))
    two = tmp_path / "two.csv"
    splits.save_split(folds.assign(fold=folds["fold"] % 2), two)
    with pytest.raises(ConfigError, match="at least 3 folds"):
        resolve_split(table, _data(ham_dir, split_file=str(two), fold=0))
    # no split file: data.folds grouped folds are made, run k as above
    made = resolve_split(table, _data(ham_dir, fold=2, folds=3))
    assert sorted(made["fold"].unique()) == [0, 1, 2]
    assert set(made.loc[made["fold"] == 2, "split"]) == {"test"}


def test_bad_fold_values_name_the_line(tiny, tmp_path):
    _, table, folds, _ = tiny
    bad = folds.astype({"fold": object})
    bad.loc[5, "fold"] = "two"
    splits.save_split(bad, tmp_path / "bad.csv")
    with pytest.raises(DataError, match=r"bad.csv, line 7: fold 'two' is not an integer"):
        splits.load_split(tmp_path / "bad.csv", table)
    gap = folds.assign(fold=folds["fold"].replace({1: 4}))
    splits.save_split(gap, tmp_path / "gap.csv")
    with pytest.raises(DataError, match="no row has fold 1"):
        splits.load_split(tmp_path / "gap.csv", table)
    wrong = folds.drop(columns="fold").assign(split="holdout")
    splits.save_split(wrong, tmp_path / "wrong.csv")
    with pytest.raises(DataError, match=r"line 2: split 'holdout'"):
        splits.load_split(tmp_path / "wrong.csv", table)


def _leaky(folds, a, b):
    """Move one image of a lesion with images in fold `a` to fold `b`."""
    multi = folds[folds["fold"] == a].groupby("group_id").filter(lambda g: len(g) > 1)
    leaky = folds.copy()
    leaky.loc[multi.index[0], "fold"] = b
    return leaky, multi["group_id"].iloc[0]


def test_a_leaking_fold_file_is_refused(tiny, tmp_path):
    ham_dir, table, folds, _ = tiny
    # a lesion split between folds 2 and 3 leaks for every run k, also k = 0 where both train
    leaky, group = _leaky(folds, 2, 3)
    path = tmp_path / "leaky.csv"
    splits.save_split(leaky, path)
    with pytest.raises(LeakageError, match=f"group {group} spans folds"):
        resolve_split(table, _data(ham_dir, split_file=str(path), fold=0))
    out = run_script("train.py", *SMOKE, "--set", f"data.options.root={ham_dir}",
                     "--set", f"data.split_file={path}", "--set", "data.fold=0",
                     "--workdir", str(tmp_path / "run"), check=False)
    assert out.returncode == 2 and "leak" in out.stderr and "spans folds" in out.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_fold_file_through_train_and_evaluate(tiny, tmp_path):
    ham_dir, table, folds, path = tiny
    work = tmp_path / "cv1"
    run_script("train.py", *SMOKE, "--modality", "image", "--set", f"data.options.root={ham_dir}",
               "--set", f"data.split_file={path}", "--set", "data.fold=1",
               "--workdir", str(work))
    saved = pd.read_csv(work / "split.csv", dtype={"image_id": str})
    assert set(saved.loc[saved["split"] == "test", "fold"]) == {1}
    assert set(saved.loc[saved["split"] == "val", "fold"]) == {2}
    assert set(saved.loc[saved["split"] == "train", "fold"]) == {0, 3}
    run_script("evaluate.py", "--checkpoint", str(work), "--bootstrap", "20", "--saliency", "0")
    preds = pd.read_csv(work / "eval" / "predictions.csv", dtype={"image_id": str})
    assert sorted(preds["image_id"]) == sorted(folds.loc[folds["fold"] == 1, "image_id"])
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    assert metrics["calibration_on_same_rows"] is False


def test_stacking_uses_the_files_folds(tiny, tmp_path):
    ham_dir, table, folds, path = tiny
    work = tmp_path / "stack"
    run_script("stack.py", *SMOKE, "--set", f"data.options.root={ham_dir}",
               "--set", f"data.split_file={path}", "--set", "data.fold=0",
               "--workdir", str(work))
    manifest = json.loads((work / "manifest.json").read_text())
    assert manifest["folds"] == 3 and manifest["fold_source"] == "split file"
    oof = pd.read_csv(work / "oof.csv", dtype={"image_id": str})
    original = folds.set_index("image_id")["fold"]
    # the out-of-fold members' folds are the file's folds 1, 2, 3 (renumbered 0, 1, 2)
    assert (original.loc[oof["image_id"]].to_numpy() == oof["fold"].to_numpy() + 1).all()
    assert set(original.loc[oof["image_id"]]) == {1, 2, 3}
    base = pd.read_csv(work / "full" / "split.csv", dtype={"image_id": str})
    assert set(base.loc[base["split"] == "test", "fold"]) == {0}
    run_script("evaluate.py", "--checkpoint", str(work), "--bootstrap", "20")
    preds = pd.read_csv(work / "eval" / "predictions.csv", dtype={"image_id": str})
    assert sorted(preds["image_id"]) == sorted(folds.loc[folds["fold"] == 0, "image_id"])


def test_stacking_folds_option_must_match_the_file(tiny):
    _, table, folds, _ = tiny
    base = folds.assign(split=splits.fold_roles(folds["fold"], 0))
    assert sorted(dev_folds(table, base, None, 0)["fold"].unique()) == [0, 1, 2]
    with pytest.raises(ConfigError, match="--folds 5 asks for others"):
        dev_folds(table, base, 5, 0)
