"""Stacking and late fusion: end to end on the bundled sample, and their guards."""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import write_csv
from multimodal.errors import LeakageError
from multimodal.data.sample import SAMPLE_DIR
from multimodal.ensemble import oof
from multimodal.ensemble.late_fusion import fit_weights
from multimodal.ensemble.stacking import LabelProxyWarning, Stacker, stack_inputs
from multimodal.errors import RunError

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
    assert "p_mel" in table.columns and manifest["group_context"] is False
    assert not {"group_mean_mel", "vs_group_mel", "group_images"} & set(table.columns)
    assert any(c.startswith("meta:age") for c in table.columns)
    # calibration rows: out-of-fold rows the stacker was neither fitted nor early-stopped on
    assert set(table["stacker_rows"]) == {"fit", "early_stopping", "calibration"}
    held = table.loc[table["stacker_rows"] == "calibration", "image_id"]
    val = pd.read_csv(work / "val_predictions.csv", dtype=str)
    assert sorted(val["image_id"]) == sorted(held)
    assert manifest["val_predictions_rows"] == "held_out"
    assert manifest["summary"]["rows"]["calibration"] == len(held)

    out = run_script("evaluate.py", "--checkpoint", str(work), "--bootstrap", "50")
    assert "balanced accuracy" in out.stdout
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    assert metrics["modality"] == "ensemble: stacking" and len(metrics["metrics"]
                                                                 ["balanced_accuracy"]["ci95"]) == 2
    assert metrics["calibration_on_same_rows"] is False
    assert "held-out" in metrics["calibration_rows"]
    assert metrics["n_calibration_images"] == len(held)
    preds = pd.read_csv(work / "eval" / "predictions.csv", dtype=str)
    assert set(preds["image_id"]) == set(base.loc[base["split"] == "test", "image_id"])
    assert "neither fitted nor early-stopped" in (work / "eval" / "report.md").read_text()

    # --split val of a stacking ensemble is its calibration rows: said, not hidden
    run_script("evaluate.py", "--checkpoint", str(work), "--split", "val", "--bootstrap", "20",
               "--out", str(tmp_path / "val_eval"))
    metrics = json.loads((tmp_path / "val_eval" / "metrics.json").read_text())
    assert metrics["calibration_on_same_rows"] is True

    # another dataset (ISIC 2018 Task 3 format) through the shipped config, in one command
    _evaluate_on_isic(work, tmp_path, "ensemble: stacking")


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
    assert metrics["calibration_on_same_rows"] is False
    _evaluate_on_isic(fused, tmp_path, "ensemble: late_fusion")

    other = tmp_path / "other_split"
    run_script("train.py", *SMOKE, "--modality", "meta", "--workdir", str(other),
               "--set", "data.split_seed=3")
    out = run_script("late_fusion.py", "--members", str(image), str(other), "--out",
                     str(tmp_path / "bad"), check=False)
    assert out.returncode == 2 and "another validation split" in out.stderr


ISIC_COLUMNS = ["image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]


def _isic2018_test_set(root, n=14):
    """A tiny ISIC 2018 Task 3 test set in the archive's layout (sample images, one-hot
    ground truth in its folder, a metadata CSV for half the images)."""
    images = root / "ISIC2018_Task3_Test_Input"
    images.mkdir(parents=True)
    names = sorted(os.listdir(os.path.join(SAMPLE_DIR, "images")))[:n]
    rows = []
    for i, name in enumerate(names):  # new ids: another dataset's images
        shutil.copy(os.path.join(SAMPLE_DIR, "images", name), images / f"ISIC_99{i:05d}.jpg")
        rows.append([f"ISIC_99{i:05d}"] + [float(x) for x in np.eye(7)[i % 7]])
    (root / "ISIC2018_Task3_Test_GroundTruth").mkdir()
    write_csv(root / "ISIC2018_Task3_Test_GroundTruth" / "ISIC2018_Task3_Test_GroundTruth.csv",
              ISIC_COLUMNS, rows)
    write_csv(root / "metadata.csv", ["image", "age_approx", "sex", "anatom_site_general"],
              [[r[0], 40 + i, "female", "back"] for i, r in enumerate(rows[: n // 2])])
    return [r[0] for r in rows]


def _evaluate_on_isic(model_dir, tmp_path, modality):
    ids = _isic2018_test_set(tmp_path / "isic2018")
    out = tmp_path / "isic_eval"
    run_script("evaluate.py", "--checkpoint", str(model_dir), "--data",
               "configs/isic2018_test.yaml", "--set", f"data.options.root={tmp_path / 'isic2018'}",
               "--set", "data.options.metadata_csv=metadata.csv", "--out", str(out),
               "--bootstrap", "20")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["modality"] == modality and metrics["split"] == "test"
    assert metrics["data"] == "configs/isic2018_test.yaml" and metrics["n_images"] == len(ids)
    assert metrics["calibration_on_same_rows"] is False and "temperature_scaling" in metrics
    preds = pd.read_csv(out / "predictions.csv", dtype=str)
    assert sorted(preds["image_id"]) == sorted(ids)
    probs = preds[[c for c in preds.columns if c.startswith("prob_")]].astype(float).to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)


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
    plain = stack_inputs(preds, CLASSES, age, ["age"])  # group context is off by default
    assert list(plain.columns) == ["p_a", "p_b", "p_c", "meta:age"]
    with pytest.warns(LabelProxyWarning, match="label proxy in HAM10000"):
        X = stack_inputs(preds, CLASSES, age, ["age"], group_context=True)
    first_group = X.iloc[:2]
    np.testing.assert_allclose(first_group["group_mean_a"], probs[:2, 0].mean())
    np.testing.assert_allclose(first_group["vs_group_a"], probs[:2, 0] - probs[:2, 0].mean())
    assert list(X["group_images"][:2]) == [2.0, 2.0] and "meta:age" in X

    stacker = Stacker(CLASSES, n_estimators=50, early_stopping_rounds=10).fit(
        X, labels, preds["group_id"].to_numpy())
    # fit / early stopping / calibration: disjoint, grouped, covering every row
    rows = stacker.rows_
    assert sorted(np.concatenate(list(rows.values()))) == list(range(n))
    assert len(stacker.calibration_rows_) >= 0.05 * n
    np.testing.assert_array_equal(stacker.calibration_rows_, rows["calibration"])
    for a in rows:
        for b in rows:
            if a < b:
                assert not set(preds["group_id"].iloc[rows[a]]) & set(preds["group_id"]
                                                                      .iloc[rows[b]])
    assert (stacker.predict_proba(X).argmax(1) == labels).mean() > 0.6


def _fitted_stacker(n=200, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    X = pd.DataFrame(np.eye(3)[labels] * 0.5 + rng.uniform(0, 0.5, (n, 3)),
                     columns=["p_a", "p_b", "p_c"]).assign(**{"meta:age": rng.normal(size=n)})
    groups = np.array([f"g{i // 2}" for i in range(n)])
    stacker = Stacker(CLASSES, seed=3, n_estimators=40, max_depth=2, early_stopping_rounds=5)
    return stacker.fit(X, labels, groups), X


def test_a_stacker_predicts_only_once_fitted():
    from sklearn.exceptions import NotFittedError

    stacker = Stacker(CLASSES, n_estimators=10)
    assert not [k for k in vars(stacker) if k.endswith("_")]  # fitted attributes: by fit only
    X = pd.DataFrame(np.zeros((2, 3)), columns=["p_a", "p_b", "p_c"])
    with pytest.raises(NotFittedError, match="not fitted yet"):
        stacker.predict_proba(X)
    with pytest.raises(NotFittedError):
        stacker.save("never.ubj")


def test_a_stacker_names_the_columns_it_misses_or_was_not_fitted_on():
    stacker, X = _fitted_stacker()
    assert list(stacker.feature_names_in_) == list(X.columns) and stacker.n_features_in_ == 4
    with pytest.raises(RunError, match=r"missing \['meta:age'\]$"):
        stacker.predict_proba(X.drop(columns="meta:age"))
    with pytest.raises(RunError, match=r"missing \['p_c'\]; not fitted on \['meta:sex'\]"):
        stacker.predict_proba(X.drop(columns="p_c").assign(**{"meta:sex": 1.0}))
    with pytest.raises(RunError, match="differ from the fitted columns .*another order"):
        stacker.predict_proba(X[X.columns[::-1]])
    with pytest.raises(TypeError, match="DataFrame"):
        stacker.predict_proba(X.to_numpy())


def test_a_saved_stacker_loads_with_its_params_and_fitted_attributes(tmp_path):
    stacker, X = _fitted_stacker()
    path = str(tmp_path / "stacker.ubj")
    stacker.save(path)
    again = Stacker.load(path)
    assert again.get_params() == stacker.get_params()
    assert again.get_params()["seed"] == 3 and again.get_params()["max_depth"] == 2
    for name in ("n_estimators", "max_depth", "random_state", "early_stopping_rounds"):
        assert again.booster_.get_params()[name] == stacker.booster_.get_params()[name]
    assert list(again.classes_) == CLASSES == list(stacker.classes_)
    assert list(again.feature_names_in_) == list(stacker.feature_names_in_)
    assert again.n_features_in_ == stacker.n_features_in_
    assert again.best_iteration_ == stacker.best_iteration_ < 40
    assert again.rows_.keys() == stacker.rows_.keys()
    for name in stacker.rows_:
        np.testing.assert_array_equal(again.rows_[name], stacker.rows_[name])
    np.testing.assert_array_equal(again.calibration_rows_, stacker.calibration_rows_)
    np.testing.assert_array_equal(again.predict_proba(X), stacker.predict_proba(X))
    # what a manifest gives is checked against what the model file holds
    assert Stacker.load(path, CLASSES, list(X.columns)).n_features_in_ == 4
    with pytest.raises(RunError, match="fitted with other columns"):
        Stacker.load(path, CLASSES, ["p_a", "p_b", "p_c"])
    # a model file saved before the Stacker stored its state: classes and columns from the caller
    stacker.booster_.save_model(str(tmp_path / "bare.ubj"))
    with pytest.raises(RunError, match="holds no Stacker parameters"):
        Stacker.load(str(tmp_path / "bare.ubj"))
    bare = Stacker.load(str(tmp_path / "bare.ubj"), CLASSES, X.columns)
    np.testing.assert_array_equal(bare.predict_proba(X), stacker.predict_proba(X))
    assert bare.best_iteration_ == stacker.best_iteration_ and bare.rows_ is None


def test_late_fusion_weights_favour_the_informative_member():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 400)
    good = np.eye(3)[labels] * 0.8 + 0.2 / 3
    noise = rng.dirichlet(np.ones(3), 400)
    w = fit_weights([noise, good], labels)
    assert w[1] > 0.9 and abs(w.sum() - 1) < 1e-9
