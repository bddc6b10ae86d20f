"""Stacking and late fusion: end to end on the bundled sample, and their guards."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from multimodal.data.errors import LeakageError
from multimodal.ensemble import oof
from multimodal.ensemble.late_fusion import fit_weights
from multimodal.ensemble.stacking import Stacker, stack_inputs

from scripts_helper import run_script

SMOKE = ["--config", "configs/ham10000_sample.yaml", "--smoke", "--no-progress"]
CLASSES = ["a", "b", "c"]


def test_stacking_end_to_end_on_the_sample(tmp_path):
    work = tmp_path / "stack"
    run_script("stack.py", *SMOKE, "--workdir", str(work), "--folds", "3")
    manifest = json.loads((work / "manifest.json").read_text())
    assert manifest["kind"] == "stacking" and manifest["members"] == ["full"]
    base = pd.read_csv(work / "full" / "split.csv", dtype=str)
    dev = set(base.loc[base["split"] != "test", "image_id"])
    table = pd.read_csv(work / "oof.csv", dtype={"image_id": str, "group_id": str})
    assert sorted(table["image_id"]) == sorted(dev)  # every development row once, out of fold
    assert table.groupby("group_id")["fold"].nunique().max() == 1  # folds are grouped
    assert {"p_mel", "group_mean_mel", "vs_group_mel", "group_images"} <= set(table.columns)
    assert any(c.startswith("meta:age") for c in table.columns)

    out = run_script("evaluate.py", "--checkpoint", str(work), "--bootstrap", "50")
    assert "balanced accuracy" in out.stdout
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    assert metrics["modality"] == "ensemble: stacking" and len(metrics["metrics"]
                                                                 ["balanced_accuracy"]["ci95"]) == 2
    preds = pd.read_csv(work / "eval" / "predictions.csv", dtype=str)
    assert set(preds["image_id"]) == set(base.loc[base["split"] == "test", "image_id"])
    assert (work / "eval" / "report.html").exists()


def test_late_fusion_of_runs_on_one_split(tmp_path):
    image, meta = tmp_path / "image", tmp_path / "meta"
    run_script("train.py", *SMOKE, "--modality", "image", "--workdir", str(image))
    run_script("train.py", *SMOKE, "--modality", "meta", "--workdir", str(meta),
               "--set", f"data.split_file={image / 'split.csv'}")
    fused = tmp_path / "fused"
    run_script("late_fusion.py", "--members", str(image), str(meta), "--out", str(fused))
    manifest = json.loads((fused / "manifest.json").read_text())
    assert len(manifest["weights"]) == 2 and min(manifest["weights"]) >= 0
    assert abs(sum(manifest["weights"]) - 1) < 1e-9
    run_script("evaluate.py", "--checkpoint", str(fused), "--bootstrap", "20")
    metrics = json.loads((fused / "eval" / "metrics.json").read_text())
    assert metrics["modality"] == "ensemble: late_fusion"

    other = tmp_path / "other_split"
    run_script("train.py", *SMOKE, "--modality", "meta", "--workdir", str(other),
               "--set", "data.split_seed=3")
    out = run_script("late_fusion.py", "--members", str(image), str(other), "--out",
                     str(tmp_path / "bad"), check=False)
    assert out.returncode == 2 and "another validation split" in out.stderr


def _folds():
    ids = [f"im{i}" for i in range(12)]
    return pd.DataFrame({"image_id": ids, "group_id": [f"g{i // 2}" for i in range(12)],
                         "label": ["a", "b", "c"] * 4, "fold": [i // 2 % 3 for i in range(12)]})


def test_fold_splits_hold_their_fold_out():
    folds = _folds()
    for k in range(3):
        split = oof.fold_split(folds, k)
        assert set(split.loc[split["split"] == "test", "image_id"]) == \
            set(folds.loc[folds["fold"] == k, "image_id"])
        oof.check_out_of_fold(split.loc[split["split"] == "test", "image_id"], split, k)
        with pytest.raises(LeakageError, match=f"fold {k}: 1 out-of-fold"):
            oof.check_out_of_fold(split.loc[split["split"] == "train", "image_id"][:1], split, k)
    with pytest.raises(ValueError, match="at least 3 folds"):
        oof.fold_split(folds.assign(fold=folds["fold"] % 2), 0)


def test_the_stacker_never_fits_on_in_fold_predictions(tmp_path, monkeypatch):
    """A member whose 'out-of-fold' predictions include its own training rows is refused."""
    folds = _folds()

    def fake_train(cfg, run_dir, **_):
        os.makedirs(run_dir, exist_ok=True)

    def in_fold_predictions(run_dir, splits):
        split = pd.read_csv(os.path.join(run_dir, "fold_split.csv"), dtype=str)
        rows = split[split["split"] != "val"]  # test rows *and* training rows: a leak
        return {"test": rows.assign(prob_a=1.0, prob_b=0.0, prob_c=0.0)}, None, CLASSES

    monkeypatch.setattr(oof, "member_predictions", in_fold_predictions)

    from multimodal.config import Config

    with pytest.raises(LeakageError, match="come from a model that trained on those rows"):
        oof.out_of_fold(Config(), folds, str(tmp_path), fake_train)


def test_stack_inputs_and_stacker_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    labels = rng.integers(0, 3, n)
    probs = np.full((n, 3), 0.2)
    probs[np.arange(n), labels] += rng.uniform(0, 0.6, n)  # an informative member
    probs /= probs.sum(1, keepdims=True)
    preds = pd.DataFrame(probs, columns=[f"prob_{c}" for c in CLASSES]).assign(
        group_id=[f"g{i // 2}" for i in range(n)])
    age = rng.normal(size=(n, 1)).astype(np.float32)
    X = stack_inputs(preds, CLASSES, age, ["age"])
    first_group = X.iloc[:2]
    np.testing.assert_allclose(first_group["group_mean_a"], probs[:2, 0].mean())
    np.testing.assert_allclose(first_group["vs_group_a"], probs[:2, 0] - probs[:2, 0].mean())
    assert list(X["group_images"][:2]) == [2.0, 2.0] and "meta:age" in X

    stacker = Stacker(CLASSES, n_estimators=50, early_stopping_rounds=10).fit(
        X, labels, preds["group_id"].to_numpy())
    assert len(set(preds["group_id"].iloc[stacker.inner_val]) &
               set(preds["group_id"].drop(preds.index[stacker.inner_val]))) == 0
    path = str(tmp_path / "stacker.ubj")
    stacker.save(path)
    again = Stacker.load(path, CLASSES, X.columns)
    np.testing.assert_allclose(again.predict_proba(X), stacker.predict_proba(X), rtol=1e-6)
    assert (stacker.predict_proba(X).argmax(1) == labels).mean() > 0.6
    with pytest.raises(ValueError, match="differ from the fitted columns"):
        again.predict_proba(X[X.columns[::-1]])


def test_late_fusion_weights_favour_the_informative_member():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 400)
    good = np.eye(3)[labels] * 0.8 + 0.2 / 3
    noise = rng.dirichlet(np.ones(3), 400)
    w = fit_weights([noise, good], labels)
    assert w[1] > 0.9 and abs(w.sum() - 1) < 1e-9
