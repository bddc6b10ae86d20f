"""Input at the edges, in predict.py and the HTTP API: a damaged exported model, extreme
image shapes and sizes (limits that say how to raise them), misspelt CSV columns, a typed
`nan`, repeated form fields, and the API fuzzed from its own OpenAPI description."""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image
from benchmarks_helper import import_benchmark
from scripts_helper import refused, run_script

from multimodal.data.sample import SAMPLE_DIR
from multimodal.serving.fields import MetadataInputError

IMAGE = os.path.join(SAMPLE_DIR, "images", min(os.listdir(os.path.join(SAMPLE_DIR, "images"))))
with open(IMAGE, "rb") as _f:
    JPEG = _f.read()
FIELDS = ["age", "sex", "localization"]


def _encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def exported(smoke_run, tmp_path_factory):
    from multimodal.serving.export import export_model

    out = str(tmp_path_factory.mktemp("edges") / "model")
    export_model(smoke_run, out)
    return out


@pytest.fixture(scope="module")
def predictor(exported):
    from multimodal.serving.predictor import Predictor

    return Predictor.open(exported)


@pytest.fixture(scope="module")
def client(predictor):
    from fastapi.testclient import TestClient

    from multimodal.serving.app import create_app

    app = create_app(predictor, max_upload_bytes=400_000, max_pixels=4_000_000, saliency_steps=2)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def predict(model, *args):
    return run_script("predict.py", "--model", model, *args, "--no-progress", check=False)


# -- a damaged exported model ----------------------------------------------------------------
def _truncate(folder):
    path = os.path.join(folder, "model.jax")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


def _stablehlo(folder):
    """Flip bytes inside the serialized StableHLO: the flatbuffer still reads, the module
    does not parse (found by lowering at load, not in the first request)."""
    from jax import export

    path = os.path.join(folder, "model.jax")
    data = bytearray(open(path, "rb").read())
    start = bytes(data).find(bytes(export.deserialize(data).mlir_module_serialized)[:64])
    data[start + 100:start + 116] = bytes(b ^ 0x5A for b in data[start + 100:start + 116])
    open(path, "wb").write(bytes(data))


def _version(folder):
    path = os.path.join(folder, "manifest.json")
    text = open(path).read().replace("multimodal.Exported/1", "multimodal.Exported/2")
    open(path, "w").write(text)


DAMAGE = [("truncated model.jax", _truncate, ["model.jax", "damaged"]),
          ("damaged StableHLO", _stablehlo, ["model.jax", "damaged", "StableHLO"]),
          ("newer format", _version, ["manifest.json", "'multimodal.Exported/2'"]),
          ("missing classes.json", lambda f: os.remove(os.path.join(f, "classes.json")),
           ["classes.json", "missing"]),
          ("damaged encoder", lambda f: open(os.path.join(f, "metadata_encoder.json"),
                                             "w").write('{"columns": '),
           ["metadata_encoder.json", "damaged"])]


@pytest.mark.parametrize("name, damage, needles", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_a_damaged_export_is_one_line_naming_the_file(exported, tmp_path, name, damage, needles):
    model = str(tmp_path / "model")
    shutil.copytree(exported, model)
    damage(model)
    line = refused(predict(model, IMAGE), *needles, "scripts/export.py", f"--out {model}")
    assert "struct.error" not in line
    if name == "truncated model.jax":  # the server loads the same way
        refused(run_script("serve.py", "--model", model, "--port", "0", check=False),
                "model.jax", "damaged", "scripts/export.py")


# -- image shape and size limits ---------------------------------------------------------------
def test_extreme_aspect_ratio_is_refused_with_the_limit(exported, client, tmp_path):
    strip = tmp_path / "strip.png"
    Image.new("RGB", (1, 60000), (120, 80, 60)).save(strip)
    refused(predict(exported, str(strip)), "strip.png", "aspect ratio", "limit of 10:1",
            "crop it", "--max-aspect 60000")
    # raised past what the model's record can hold: still one line naming the file
    refused(predict(exported, str(strip), "--max-aspect", "70000"), "strip.png", "65,535",
            "crop it")
    r = client.post("/predict", files={"image": ("strip.png", strip.read_bytes(), "image/png")})
    assert r.status_code == 422, r.text
    assert "aspect ratio" in r.json()["error"] and "10:1" in r.json()["error"]
    wide = _encoded(Image.new("RGB", (300, 40), (120, 80, 60)))  # 7.5:1 is fine
    assert client.post("/predict", files={"image": ("w.png", wide, "image/png")},
                       data={"saliency": "false"}).status_code == 200


def test_too_many_pixels_names_the_option_that_raises_the_limit(exported, client, tmp_path):
    big = tmp_path / "big.jpg"
    Image.new("RGB", (8000, 8000), (150, 100, 90)).save(big)  # 64 MP in ~1 MB
    refused(predict(exported, str(big)), "big.jpg", "64,000,000 pixels",
            "limit of 40,000,000", "--max-pixels 64000000")
    assert predict(exported, str(big), "--max-pixels", "64000000").returncode == 0
    png = _encoded(Image.new("RGB", (3000, 2000)))  # 6 MP in a few kB, over the app's 4 MP
    r = client.post("/predict", files={"image": ("big.png", png, "image/png")})
    assert r.status_code == 413 and "resize it to at most 4,000,000" in r.json()["error"]


def test_local_files_have_their_own_larger_size_limit(exported, tmp_path):
    bmp = tmp_path / "large.bmp"
    pixels = np.random.default_rng(0).integers(0, 255, (2990, 3000, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(bmp)  # 25.7 MiB: over the 20 MiB upload limit, a valid file
    out = predict(exported, str(bmp), "--format", "csv")
    assert out.returncode == 0, out.stderr
    assert "large.bmp" in out.stdout
    refused(predict(exported, str(bmp), "--max-file-mb", "10"), "large.bmp", "25.7 MiB",
            "file size limit of 10.0 MiB", "--max-file-mb 26")


def test_limits_must_be_sane(exported):
    refused(predict(exported, IMAGE, "--max-aspect", "0.5"), "--max-aspect 0.5")


# -- metadata: misspelt columns, nan -------------------------------------------------------
def test_misspelt_columns_are_told_from_unrelated_ones():
    from multimodal.serving.fields import resembles

    assert [resembles(c, FIELDS) for c in ["Age", "gender", "site", "localisation", "SEX "]] \
        == ["age", "sex", "localization", "localization", "sex"]
    assert [resembles(c, FIELDS) for c in ["dx", "lesion_id", "dx_type", "notes", "image_id",
                                           "label", "patient_id"]] == [None] * 7


def test_a_csv_with_misspelt_metadata_columns_is_refused(exported, tmp_path):
    bad = tmp_path / "cases.csv"
    bad.write_text(f"image_path,Age,gender,site\n{IMAGE},54,female,back\n")
    refused(predict(exported, str(bad)), "cases.csv, line 1", "'Age' (for 'age'?)",
            "'gender' (for 'sex'?)", "['age', 'sex', 'localization']")
    good = tmp_path / "ham.csv"
    good.write_text("image_path,lesion_id,dx,dx_type,notes,age,sex,localization\n"
                    f"{IMAGE},HAM_1,nv,histo,seen twice,54,female,back\n"
                    f"{IMAGE},HAM_2,mel,histo,,,,\n")
    out = predict(exported, str(good), "--format", "csv")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(os.path.basename(IMAGE)) == 2


@pytest.mark.parametrize("text", ["nan", "NaN", " -nan ", "NAN"])
def test_a_typed_nan_is_refused_like_inf(predictor, client, text):
    for field in FIELDS:
        with pytest.raises(MetadataInputError, match="not a number"):
            predictor.check_metadata({field: text})
    r = client.post("/predict", files={"image": ("x.jpg", JPEG, "image/jpeg")},
                    data={"age": text, "saliency": "false"})
    assert r.status_code == 422 and "age" in r.json()["error"], r.text
    assert predictor.check_metadata({"age": "", "sex": "unknown"}) == \
        {"age": None, "sex": None, "localization": None}  # blanks stay missing


def test_nan_on_the_command_line_and_in_a_csv_cell(exported, tmp_path):
    refused(predict(exported, IMAGE, "--meta", "age=nan"), "age", "'nan'", "leave it blank")
    cases = tmp_path / "cases.csv"
    cases.write_text(f"image_path,age,sex\n{IMAGE},,female\n{IMAGE},NaN,male\n")
    refused(predict(exported, str(cases)), "cases.csv, line 3", "'NaN'")


# -- the HTTP form ------------------------------------------------------------------------------
def test_a_field_given_twice_is_refused(client):
    part = ("x.jpg", JPEG, "image/jpeg")
    r = client.post("/predict", files=[("image", part), ("image", part)])
    assert r.status_code == 422 and "['image'] given more than once" in r.json()["error"]
    r = client.post("/predict", files={"image": part}, data={"age": ["50", "60"]})
    assert r.status_code == 422 and "['age'] given more than once" in r.json()["error"]
    assert client.post("/predict", files={"image": part},
                       data={"age": "50", "saliency": "false"}).status_code == 200


def test_the_api_fuzzed_from_its_openapi_description(predictor):
    """Schema-valid and -invalid requests (schemathesis, seeded, 25 per operation and mode;
    part of them with real odd images): no 5xx, every error a JSON body, every answer as
    the description says. benchmarks/serving/fuzz_api.py runs the same thing longer."""
    from multimodal.serving.app import create_app

    fuzz = import_benchmark("serving.fuzz_api").fuzz

    app = create_app(predictor, max_upload_bytes=400_000, max_pixels=4_000_000,
                     saliency_steps=2)
    result = fuzz(app, examples=25)
    statuses = {status for (_, _, status) in result["counts"]}
    assert result["failures"] == [], "\n".join(result["failures"][:5])
    assert max(statuses) < 500 and 200 in statuses and statuses & {400, 413, 415, 422}
