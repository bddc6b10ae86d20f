"""Prediction outside training: the Predictor over a run, an ensemble and an exported model
(same numbers as evaluation; export equivalence), explanations, and scripts/predict.py and
scripts/export.py as a user runs them."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scripts_helper import ROOT, refused, run_script

from multimodal.data.sample import SAMPLE_DIR
from multimodal.errors import RunError
from multimodal.serving.fields import MetadataInputError
from multimodal.serving.images import ImageInputError, load_image, read_image_file
from multimodal.serving.predictor import Predictor

IMAGES = os.path.join(SAMPLE_DIR, "images")
GIVEN = {"age": "54", "sex": "Female", "localization": "back"}




def sample_paths(n):
    return [os.path.join(IMAGES, name) for name in sorted(os.listdir(IMAGES))[:n]]


def probs(results):
    return np.array([[r.probabilities[c] for c in r.probabilities] for r in results])


@pytest.fixture(scope="module")
def run_dir(smoke_run):
    return smoke_run


@pytest.fixture(scope="module")
def predictor(run_dir):
    return Predictor.open(run_dir)


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    from multimodal.serving.export import export_model

    out = str(tmp_path_factory.mktemp("export") / "model")
    export_model(run_dir, out)
    return out


def test_predictions_equal_evaluation_of_the_run(run_dir, predictor):
    """The same images and metadata give the numbers predict_split gives on the run's own
    prepared test split: preprocessing (geometry, size, normaliser, encoder) is the run's."""
    from multimodal.run import load_run, predict_split, run_inputs

    run = load_run(run_dir)
    inputs = run_inputs(run)
    expected = predict_split(run, inputs, "test")
    frame = inputs.frames["test"].set_index("image_id").loc[expected["image_id"]]
    paths = inputs.table_frame.set_index("image_id").loc[expected["image_id"], "image_path"]
    rows = [{k: (None if pd.isna(v) else v) for k, v in r.items()}
            for r in frame[list(predictor.vocabulary)].to_dict("records")]
    got = predictor.predict([read_image_file(p) for p in paths], rows)
    want = expected[[f"prob_{c}" for c in run.classes]].to_numpy()
    np.testing.assert_allclose(probs(got), want, atol=1e-5)
    assert [r.top_class for r in got] == list(expected["predicted"])


def test_missing_metadata_is_masked_as_in_training(predictor):
    rows = predictor.check_metadata({})
    assert rows == {"age": None, "sex": None, "localization": None}
    batch = predictor.model.batch([read_image_file(sample_paths(1)[0])] * 2,
                                  [rows, predictor.check_metadata({"sex": "male"})])
    assert batch["metadata_mask"].tolist() == [0.0, 1.0]
    encoder = predictor.model.prep.meta_encoder
    none = encoder.transform(pd.DataFrame([{"age": None, "sex": None, "localization": None}]))
    np.testing.assert_array_equal(batch["metadata"][0], none[0])
    assert predictor.check_metadata({"sex": "unknown", "age": ""})["sex"] is None


def test_metadata_values_are_checked_against_the_vocabulary(predictor):
    assert predictor.check_metadata(GIVEN) == {"age": 54.0, "sex": "female",
                                               "localization": "back"}
    with pytest.raises(MetadataInputError, match=r"'femal'.*\['female', 'male'\]"):
        predictor.check_metadata({"sex": "femal"})
    with pytest.raises(MetadataInputError, match=r"unknown metadata field.*'gender'.*'age'"):
        predictor.check_metadata({"gender": "f"})
    with pytest.raises(MetadataInputError, match="out of range"):
        predictor.check_metadata({"age": "130"})
    with pytest.raises(MetadataInputError, match="not a number"):
        predictor.check_metadata({"age": "fifty"})


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "1", "I;16", "F"])
def test_odd_image_modes_become_rgb(mode):
    rgb = Image.open(sample_paths(1)[0]).convert("RGB")
    if mode == "I;16":
        image = Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257)
    else:
        image = rgb.convert(mode)
    buf = io.BytesIO()
    image.save(buf, "TIFF" if mode in ("CMYK", "F") else "PNG")
    picture = load_image(buf.getvalue())
    assert picture.mode == "RGB" and picture.size == rgb.size
    if mode == "I;16":  # 16-bit is scaled to 8 bits, not clipped at 255
        np.testing.assert_array_equal(np.asarray(picture)[..., 0], np.asarray(rgb.convert("L")))


def test_bad_image_bytes_are_refused_clearly():
    with open(sample_paths(1)[0], "rb") as f:
        data = f.read()
    cases = [(b"", 400, "empty"), (b"GIF89a but not really", 415, "not an image"),
             (b"%PDF-1.4 hello", 415, "not an image"),
             (data[: len(data) // 2], 400, "truncated"), (data, 413, "over the upload limit")]
    for blob, status, needle in cases:
        with pytest.raises(ImageInputError, match=needle) as err:
            load_image(blob, max_bytes=len(data) - 1 if status == 413 else 10**8)
        assert err.value.status == status
    buf = io.BytesIO()
    Image.new("L", (6000, 6000)).save(buf, "PNG")  # 36 MP in ~40 kB: a small bomb
    with pytest.raises(ImageInputError, match="pixels") as err:
        load_image(buf.getvalue(), max_pixels=10_000_000)
    assert err.value.status == 413


def test_export_equals_the_checkpoint(predictor, exported):
    with open(os.path.join(exported, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["format"] == "multimodal.Exported/1" and manifest["kind"] == "model"
    assert manifest["inputs"]["image"]["shape"] == ["batch", 32, 32, 3]
    assert manifest["metadata_vocabulary"]["sex"]["categories"] == ["female", "male"]
    assert set(os.listdir(exported)) >= {"model.jax", "preprocessing.json", "classes.json",
                                         "metadata_encoder.json", "manifest.json"}
    other = Predictor.open(exported)
    assert other.kind == "exported" and other.classes == predictor.classes
    assert other.vocabulary == predictor.vocabulary
    pictures = [read_image_file(p) for p in sample_paths(6)]
    rows = [predictor.check_metadata(GIVEN), predictor.check_metadata({})] * 3
    a = predictor.predict(pictures, rows, explain=True, saliency=True)
    b = other.predict(pictures, rows, explain=True, saliency=True)
    np.testing.assert_allclose(probs(a), probs(b), rtol=1e-5, atol=1e-6)
    for x, y in zip(a, b):  # the exported module is differentiable: the same saliency
        np.testing.assert_array_equal(x.saliency[0], y.saliency[0])
        np.testing.assert_allclose(x.saliency[1], y.saliency[1], rtol=1e-4, atol=1e-6)
        assert x.explanation["contributions"].keys() == y.explanation["contributions"].keys()


def test_saliency_is_evaluations_integrated_gradients(predictor):
    import jax.numpy as jnp

    from multimodal.evaluation.saliency import integrated_gradients

    model, picture = predictor.model, read_image_file(sample_paths(1)[0])
    row = predictor.check_metadata(GIVEN)
    shown, heat = model.attributions(picture, row, 2, steps=8)
    b = model.batch([picture], [row])
    want = integrated_gradients(lambda *inputs: model._fn(model._params, *inputs),
                                jnp.asarray(b["image"][0]), jnp.asarray(b["metadata"][0]),
                                b["metadata_mask"][0], 2, 8)
    np.testing.assert_allclose(heat, want, rtol=1e-4, atol=1e-7)
    assert shown.dtype == np.uint8 and shown.shape == (32, 32, 3)


def test_masking_explanation_is_what_it_says(predictor):
    picture = read_image_file(sample_paths(1)[0])
    row = predictor.check_metadata(GIVEN)
    [full] = predictor.predict([picture], [row], explain=True)
    ex = full.explanation
    assert ex["method"] == "metadata_masking" and ex["class"] == full.top_class
    [no_sex] = predictor.predict([picture], [{**row, "sex": None}])
    assert ex["contributions"]["sex"] == pytest.approx(
        full.top_probability - no_sex.probabilities[full.top_class], abs=1e-6)
    [none] = predictor.predict([picture], [predictor.check_metadata({})])
    assert ex["probability_without_metadata"] == pytest.approx(
        none.probabilities[full.top_class], abs=1e-6)


def _stacking_dir(run_dir, tmp_path, predictor):
    """A stacking ensemble over the run, its XGBoost fitted on synthetic rows (fast)."""
    from multimodal.ensemble.manifest import write_manifest
    from multimodal.ensemble.stacking import Stacker, stack_inputs

    rng = np.random.default_rng(0)
    classes, encoder = predictor.classes, predictor.model.prep.meta_encoder
    n = 280
    labels = np.arange(n) % len(classes)
    p = rng.dirichlet(np.ones(len(classes)), n) * 0.5 + np.eye(len(classes))[labels] * 0.5
    raw = pd.DataFrame({"age": rng.uniform(20, 80, n), "sex": rng.choice(["male", "female"], n),
                        "localization": rng.choice(encoder.stats["localization"]["categories"],
                                                   n)})
    preds = pd.DataFrame(p, columns=[f"prob_{c}" for c in classes])
    preds["group_id"] = [f"g{i}" for i in range(n)]
    X = stack_inputs(preds, classes, encoder.transform(raw), encoder.feature_names)
    stacker = Stacker(classes, n_estimators=40, early_stopping_rounds=10).fit(
        X, labels, np.arange(n))
    out = tmp_path / "stack"
    out.mkdir()
    stacker.save(str(out / "stacker.ubj"))
    encoder.save(str(out / "metadata_encoder.json"))
    write_manifest(str(out), {"kind": "stacking", "classes": classes, "members": [run_dir],
                              "stacker": "stacker.ubj", "columns": list(X.columns),
                              "metadata_encoder": "metadata_encoder.json",
                              "group_context": False})
    return str(out)


def test_stacked_ensemble_shap_contributions_add_up(run_dir, predictor, tmp_path):
    stack = Predictor.open(_stacking_dir(run_dir, tmp_path, predictor))
    assert stack.describe()["explanation"] == "xgboost_shap"
    pictures = [read_image_file(p) for p in sample_paths(3)]
    rows = [stack.check_metadata(GIVEN), stack.check_metadata({"age": "70"}),
            stack.check_metadata({})]
    results = stack.predict(pictures, rows, explain=True, saliency=True)
    for r in results:
        ex = r.explanation
        assert ex["method"] == "xgboost_shap" and ex["class"] == r.top_class
        # the member reads metadata too, so its probabilities are "member model", not "image"
        assert set(ex["contributions"]) == {"member model", "age", "sex", "localization"}
        assert sum(ex["contributions"].values()) + ex["bias"] == pytest.approx(ex["margin"],
                                                                               abs=1e-4)
        assert r.saliency is not None  # from the member that reads the image
    # the margins are the booster's: their softmax is the predicted distribution
    margins = np.array([[stack_margin(stack, pictures[i], rows[i], c)
                         for c in range(len(stack.classes))] for i in range(3)])
    e = np.exp(margins - margins.max(1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(1, keepdims=True), probs(results), atol=1e-4)

    # exported, the ensemble gives the same numbers and explanations
    from multimodal.serving.export import export_model

    export_model(stack.path, str(tmp_path / "stack_model"))
    other = Predictor.open(str(tmp_path / "stack_model"))
    again = other.predict(pictures, rows, explain=True)
    np.testing.assert_allclose(probs(again), probs(results), atol=1e-6)
    assert again[0].explanation["contributions"] == pytest.approx(
        results[0].explanation["contributions"], abs=1e-5)


def stack_margin(stack, picture, row, target):
    from multimodal.serving.explain import stacking_contributions

    member = stack.model.member_probabilities([picture], [row])[0]
    return stacking_contributions(stack.model, member, [row], [target])[0]["margin"]


def test_late_fusion_ensemble_uses_its_weights(run_dir, predictor, tmp_path):
    from multimodal.ensemble.manifest import write_manifest

    out = tmp_path / "fusion"
    out.mkdir()
    write_manifest(str(out), {"kind": "late_fusion", "classes": predictor.classes,
                              "members": [run_dir, run_dir], "weights": [0.25, 0.75]})
    fused = Predictor.open(str(out))
    pictures = [read_image_file(p) for p in sample_paths(2)]
    rows = [fused.check_metadata(GIVEN)] * 2
    np.testing.assert_allclose(probs(fused.predict(pictures, rows)),
                               probs(predictor.predict(pictures, rows)), atol=1e-6)
    assert fused.predict(pictures, rows, explain=True)[0].explanation["method"] == \
        "metadata_masking"


def test_not_a_model_directory_is_a_user_error(tmp_path):
    with pytest.raises(RunError, match="holds no run"):
        Predictor.open(str(tmp_path))


# -- the scripts, as a user runs them --------------------------------------------------------
def test_predict_cli_on_a_folder_and_a_csv(run_dir, predictor, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in sample_paths(3):
        shutil.copy(p, folder)
    (folder / "notes.txt").write_text("not an image, skipped by extension")
    names = sorted(os.listdir(IMAGES))[3:5]
    (tmp_path / "cases.csv").write_text(
        "image_path,age,sex,localization,dx\n"
        f"{os.path.join(IMAGES, names[0])},54,female,back,nv\n"
        f"{os.path.join(IMAGES, names[1])},,,,mel\n")
    out = run_script("predict.py", "--checkpoint", run_dir, str(folder), str(tmp_path / "cases.csv"),
                     "--sex", "male", "--explain", "--saliency", str(tmp_path / "overlays"),
                     "--format", "json", "--batch-size", "2", "--no-progress")
    results = json.loads(out.stdout)
    assert len(results) == 5 and [os.path.basename(r["image"]) for r in results][:3] == \
        sorted(os.listdir(IMAGES))[:3]
    assert results[0]["metadata"] == {"age": None, "sex": "male", "localization": None}
    assert results[3]["metadata"] == {"age": 54.0, "sex": "female", "localization": "back"}
    assert results[4]["metadata"]["sex"] == "male"  # a blank cell takes the flag's value
    assert all(os.path.exists(r["saliency_png"]) for r in results)
    assert Image.open(results[0]["saliency_png"]).size == (520, 256)
    assert results[3]["explanation"]["method"] == "metadata_masking"
    # the same numbers as the library
    [lib] = predictor.predict([read_image_file(results[3]["image"])],
                              [predictor.check_metadata(GIVEN)])
    assert results[3]["probabilities"] == pytest.approx(lib.probabilities, abs=1e-6)


def test_exported_model_runs_without_the_run_or_training_code(run_dir, predictor, exported,
                                                              tmp_path):
    """predict.py --model on a copy of the export, with no run directory around, gives the
    checkpoint's numbers; the model and training code are never imported."""
    model = tmp_path / "copy"
    shutil.copytree(exported, model)
    image = sample_paths(1)[0]
    out = run_script("predict.py", "--model", str(model), image, "--age", "54", "--sex",
                     "female", "--localization", "back", "--format", "csv")
    frame = pd.read_csv(io.StringIO(out.stdout))
    [lib] = predictor.predict([read_image_file(image)], [predictor.check_metadata(GIVEN)])
    assert frame["top_class"][0] == lib.top_class
    np.testing.assert_allclose(frame[[f"prob_{c}" for c in lib.probabilities]].to_numpy()[0],
                               list(lib.probabilities.values()), atol=1e-5)
    code = ("import sys; from multimodal.serving.predictor import Predictor; "
            "from multimodal.serving.images import read_image_file; "
            f"p = Predictor.open({str(model)!r}); "
            f"p.predict([read_image_file({image!r})], [p.check_metadata({{}})], saliency=True); "
            "print(sorted(m for m in sys.modules if m.split('.')[:2] in "
            "(['multimodal', 'training'], ['multimodal', 'models'], ['multimodal', 'runs'])))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=str(tmp_path), env={**os.environ, "PYTHONPATH": ROOT},
                            timeout=300, check=False)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]", loaded.stdout


def test_cli_refusals_are_one_line(run_dir, exported, tmp_path):
    image = sample_paths(1)[0]
    refused(run_script("predict.py", "--model", exported, image, "--sex", "femal", check=False),
            "'femal'", "['female', 'male']")
    refused(run_script("predict.py", "--model", exported, image, "--meta", "gender=f",
                       check=False), "unknown metadata field", "'age', 'sex', 'localization'")
    (tmp_path / "bad.csv").write_text(f"image_path,localization\n{image},moon\n")
    refused(run_script("predict.py", "--model", exported, str(tmp_path / "bad.csv"),
                       check=False), "bad.csv, line 2", "'moon'", "'back'")
    with open(image, "rb") as f:
        data = f.read()
    (tmp_path / "broken.jpg").write_bytes(data[: len(data) // 2])
    refused(run_script("predict.py", "--model", exported, str(tmp_path / "broken.jpg"),
                       check=False), "broken.jpg", "truncated")
    refused(run_script("export.py", "--checkpoint", run_dir, "--out", exported, check=False),
            "already exists", "--overwrite")
    refused(run_script("serve.py", "--checkpoint", str(tmp_path / "nothing"), check=False),
            "no model directory")


def test_stacking_explanations_credit_every_encoded_column_to_its_field():
    """Numeric, missing-indicator, one-hot and binned (age_bin3) columns all belong to their
    field; image probabilities to the image; anything else is lesion context."""
    from multimodal.serving.explain import _field

    fields = ["age", "localization"]
    got = {c: _field(c, fields) for c in ["p_mel", "meta:age", "meta:age_missing",
                                          "meta:age_bin3", "meta:localization=back",
                                          "meta:age_binned", "lesion_images"]}
    assert got == {"p_mel": "image", "meta:age": "age", "meta:age_missing": "age",
                   "meta:age_bin3": "age", "meta:localization=back": "localization",
                   "meta:age_binned": "lesion context", "lesion_images": "lesion context"}
