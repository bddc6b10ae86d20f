"""DICOM inputs (multimodal/data/images/dicom.py): small files written with pydicom itself, read to 8
bits (Modality LUT, window, MONOCHROME1, 12/16 bits), refused when multi-frame or compressed
without a decoder, header metadata under the CSV's, and one tiny chest X-ray run through
training, evaluation, predict.py and the web demo that never writes the patient's name or ID."""

from __future__ import annotations

import base64
import io
import json
import os

import numpy as np
import pytest
from conftest import write_csv
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (ExplicitVRLittleEndian, JPEGLSLossless, SecondaryCaptureImageStorage,
                         generate_uid)
from scripts_helper import run_script

from multimodal.data.images import dicom
from multimodal.errors import DataError

NAME, PATIENT_ID = "Planted^Patientname", "PLANTED-ID-4711"  # must never leave the files


def _dataset(syntax=ExplicitVRLittleEndian, **header) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientName, ds.PatientID = NAME, PATIENT_ID
    for key, value in header.items():
        setattr(ds, key, value)
    return ds


def write_dicom(path, pixels, photometric="MONOCHROME2", bits=16, **header):
    """A single-frame (or, with a 3-d gray array, multi-frame) uncompressed DICOM file."""
    ds = _dataset(**header)
    ds.set_pixel_data(np.asarray(pixels), photometric, bits)
    ds.save_as(path, enforce_file_format=True)
    return str(path)


RAMP = np.tile(np.array([0, 1000, 2000, 3000, 4095], np.uint16), (5, 1))


def test_16bit_monochrome2_through_its_window(tmp_path):
    pixels = np.tile(np.array([0, 30000, 32768, 35000, 65535], np.uint16), (5, 1))
    path = write_dicom(tmp_path / "w.dcm", pixels, WindowCenter=32768, WindowWidth=4096)
    out = dicom.read(path)
    assert out.dtype == np.uint8 and out.shape == (5, 5)
    np.testing.assert_array_equal(out[0, [0, 1, 4]], [0, 0, 255])  # outside the window: clipped
    assert abs(int(out[0, 2]) - 128) <= 1 and out[0, 3] == 255  # the centre is mid-gray
    with dicom.open_image(path) as im:
        assert im.mode == "L" and im.size == (5, 5)
    assert dicom.image_size(path) == (5, 5)


def test_monochrome1_is_inverted(tmp_path):
    path = write_dicom(tmp_path / "m1.dcm", RAMP, "MONOCHROME1", bits=12)
    out = dicom.read(path)
    assert out[0, 4] == 0 and out[0, 0] == 255  # the highest stored value is dark
    same = dicom.read(write_dicom(tmp_path / "m2.dcm", RAMP, "MONOCHROME2", bits=12))
    np.testing.assert_array_equal(out, 255 - same)


def test_rescale_slope_and_intercept_come_before_the_window(tmp_path):
    # stored 0..4095 -> 2 * v - 1024 HU; a window of -1000..1000 HU
    path = write_dicom(tmp_path / "r.dcm", RAMP, bits=12, RescaleSlope=2, RescaleIntercept=-1024,
                       WindowCenter=0, WindowWidth=2000)
    out = dicom.read(path)[0]
    # 0 -> -1024 (below), 1000 -> 976 (near the top), 2000 -> 2976 (above)
    assert out[0] == 0 and 245 <= out[1] <= 252 and out[2] == 255
    # without the rescale the same window would put stored 1000 far above it
    plain = dicom.read(write_dicom(tmp_path / "p.dcm", RAMP, bits=12, WindowCenter=0,
                                   WindowWidth=2000))[0]
    assert plain[1] == 255


def test_12bit_is_scaled_to_8_bits(tmp_path):
    windowed = dicom.read(write_dicom(tmp_path / "a.dcm", RAMP, bits=12, WindowCenter=2048,
                                      WindowWidth=4096))[0]
    np.testing.assert_allclose(windowed, RAMP[0] / 4095 * 255, atol=1)
    # no window in the header: the image's own range fills 0-255
    own = dicom.read(write_dicom(tmp_path / "b.dcm", RAMP // 2 + 100, bits=12))[0]
    assert own[0] == 0 and own[-1] == 255


@pytest.mark.parametrize("text, years", [("045Y", 45), ("006M", 0.5), ("010D", 10 / 365.25),
                                         ("003W", 21 / 365.25), ("", None), ("abc", None)])
def test_patient_age_units(text, years):
    got = dicom.parse_age(text)
    assert got == (None if years is None else pytest.approx(years, abs=1e-4))


def test_multi_frame_files_are_refused_in_one_line(tmp_path):
    path = write_dicom(tmp_path / "cine.dcm", np.stack([RAMP] * 3), bits=12)
    with pytest.raises(dicom.DicomError, match="multi-frame DICOM \\(3 frames\\)") as err:
        dicom.read(path)
    assert "\n" not in str(err.value) and err.value.status == 415
    with pytest.raises(DataError, match="multi-frame"):
        dicom.image_size(path)  # from the header alone


def test_compressed_dicom_without_a_decoder_names_the_packages(tmp_path):
    ds = _dataset(JPEGLSLossless, Rows=8, Columns=8, SamplesPerPixel=1,
                  PhotometricInterpretation="MONOCHROME2", BitsAllocated=16, BitsStored=12,
                  HighBit=11, PixelRepresentation=0)
    ds.PixelData = encapsulate([b"\xff\xd8" + bytes(20) + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    path = str(tmp_path / "jls.dcm")
    ds.save_as(path, enforce_file_format=True)
    from pydicom.pixels import get_decoder

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    with pytest.raises(dicom.DicomError) as err:
        dicom.read(path)
    message = err.value.one_line()
    assert "JPEG-LS" in message and "pip install pylibjpeg pylibjpeg-libjpeg" in message
    # the table check finds it from the header and says the same, naming file and row
    write_csv(tmp_path / "t.csv", ["file", "label"], [["jls.dcm", "a"]])
    from multimodal.data.sources import load_source

    with pytest.raises(DataError, match="pylibjpeg-libjpeg") as err:
        load_source("csv", csv=str(tmp_path / "t.csv"), image_column="file",
                    label_column="label")
    assert "line 2" in str(err.value) and "jls.dcm" in str(err.value)


def test_open_image_finds_dicom_by_its_preamble_and_bytes(tmp_path):
    path = write_dicom(tmp_path / "1.2.840.99", RAMP, bits=12)  # a UID name, no extension
    assert dicom.is_dicom(path) and dicom.is_dicom(open(path, "rb").read())
    with dicom.open_image(open(path, "rb").read()) as im:
        assert im.size == (5, 5)
    Image.new("RGB", (4, 3)).save(tmp_path / "x.png")
    assert not dicom.is_dicom(str(tmp_path / "x.png"))


def test_header_metadata_fills_blank_cells_and_the_csv_wins(tmp_path):
    from multimodal.data.sources import load_source

    write_dicom(tmp_path / "a.dcm", RAMP, bits=12, PatientAge="045Y", PatientSex="F",
                ViewPosition="PA")
    write_dicom(tmp_path / "b.dcm", RAMP, bits=12, PatientAge="006M", PatientSex="M",
                ViewPosition="LL")
    write_dicom(tmp_path / "c.dcm", RAMP, bits=12)  # no header values
    write_csv(tmp_path / "t.csv", ["file", "label", "age", "sex"],
              [["a.dcm", "x", "", ""], ["b.dcm", "y", "50", "female"], ["c.dcm", "x", "", ""]])
    table = load_source("csv", csv=str(tmp_path / "t.csv"), image_column="file",
                        label_column="label",
                        metadata={"age": "numeric", "sex": "categorical", "view": "categorical"})
    f = table.frame.set_index("image_id")
    assert f.loc["a", "age"] == 45 and f.loc["a", "sex"] == "female"  # words, as the CSV
    assert f.loc["b", "age"] == 50 and f.loc["b", "sex"] == "female"  # the CSV wins
    assert f.loc["a", "view"] == "PA" and f.loc["b", "view"] == "LL"  # no view column
    assert np.isnan(f.loc["c", "age"]) and f.loc["c", "sex"] == "unknown"
    assert not any(NAME in str(v) or PATIENT_ID in str(v) for v in f.to_numpy().ravel())
    # no DICOM image: an absent column is still a missing column
    Image.new("RGB", (4, 3)).save(tmp_path / "d.png")
    write_csv(tmp_path / "u.csv", ["file", "label"], [["d.png", "x"]])
    with pytest.raises(DataError, match="missing required column"):
        load_source("csv", csv=str(tmp_path / "u.csv"), image_column="file",
                    label_column="label", metadata={"view": "categorical"})


def test_the_chest_xray_sources_read_dicom_and_its_headers(tmp_path):
    from multimodal.data.sources import chestxray

    # SIIM's own layout: <image_dir>/<study>/<series>/<image id>.dcm; a converted PNG wins
    for i, study in enumerate(["s1", "s2", "s2"]):
        folder = tmp_path / "train" / study / f"series{i}"
        folder.mkdir(parents=True, exist_ok=True)
        write_dicom(folder / f"i{i + 1}.dcm", RAMP, bits=12, PatientAge=f"0{40 + i}Y",
                    PatientSex="FMO"[i], ViewPosition="AP")
    Image.new("RGB", (5, 5)).save(tmp_path / "train" / "i3.png")
    study = write_csv(tmp_path / "study.csv", ["id", "Negative for Pneumonia", "Typical Appearance",
                                               "Indeterminate Appearance", "Atypical Appearance"],
                      [["s1_study", 1, 0, 0, 0], ["s2_study", 0, 1, 0, 0]])
    image = write_csv(tmp_path / "image.csv", ["id", "StudyInstanceUID"],
                      [["i1_image", "s1"], ["i2_image", "s2"], ["i3_image", "s2"]])
    table = chestxray.load_siim(str(study), str(image), str(tmp_path / "train"), binary=True)
    f = table.frame.set_index("image_id")
    assert f.loc["i2", "image_path"].endswith(os.path.join("s2", "series1", "i2.dcm"))
    assert f.loc["i3", "image_path"].endswith("i3.png")
    assert table.metadata == {"age": "numeric", "sex": "categorical", "view": "categorical"}
    assert list(f["age"].fillna(-1)) == [40, 41, -1] and list(f["sex"]) == ["F", "M", "unknown"]
    # covid-chestxray format without the sex / age / view columns: all from the headers
    write_csv(tmp_path / "meta.csv", ["patientid", "finding", "filename", "modality"],
              [["1", "No Finding", "i1.dcm", "X-ray"], ["2", "COVID-19", "i2.dcm", "X-ray"]])
    covid = chestxray.load_covid(str(tmp_path / "meta.csv"), str(tmp_path / "train" / "s1" /
                                                                  "series0"), verify="none")
    assert covid.frame["age"].iloc[0] == 40 and covid.frame["view"].iloc[0] == "AP"
    assert covid.frame["sex"].iloc[1] == "unknown"  # i2.dcm is not in that folder


# -- one tiny chest X-ray run: train, evaluate, predict, the web demo; the privacy grep -------

def _xray(rng, label: int) -> np.ndarray:
    """32x32 12-bit: class 1 has a bright blob (an 'opacity') on noisy lungs."""
    pixels = rng.normal(1200, 150, (32, 32))
    if label:
        yy, xx = np.mgrid[:32, :32]
        pixels += 1800 * np.exp(-((yy - 16) ** 2 + (xx - 12) ** 2) / 40)
    return np.clip(pixels, 0, 4095).astype(np.uint16)


@pytest.fixture(scope="module")
def xray_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom_xrays")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        label = i % 2
        photometric = "MONOCHROME1" if i % 5 == 0 else "MONOCHROME2"
        pixels = _xray(rng, label)
        if photometric == "MONOCHROME1":
            pixels = 4095 - pixels
        write_dicom(root / "images" / f"img{i:02d}.dcm", pixels, photometric, bits=12,
                    WindowCenter=2048, WindowWidth=4096, PatientAge=f"{30 + i:03d}Y",
                    PatientSex="MF"[i % 2 == 0 or i % 3 == 0],
                    ViewPosition=["PA", "AP", "LL"][i % 3])
        rows.append([f"img{i:02d}.dcm", ["none", "opacity"][label], f"p{i // 2:02d}",
                     "" if i % 4 else "F"])  # most sex cells blank: the headers fill them
    csv = write_csv(root / "labels.csv", ["file", "finding", "patient", "sex"], rows)
    # 12 patients of 2 images: too few for a drawn grouped split (20 parts), so a fixed one
    split = write_csv(root / "split.csv", ["image_id", "split"],
                      [[f"img{i:02d}", "train" if i < 12 else "val" if i < 18 else "test"]
                       for i in range(24)])
    config = root / "xray.yaml"
    config.write_text(
        "name: dicom_xray_tiny\nmodality: image+meta\n"
        "data:\n  source: csv\n"
        f"  options: {{csv: '{csv}', image_root: '{root / 'images'}', image_column: file, "
        "label_column: finding, "
        "group_column: patient, metadata: {age: numeric, sex: categorical, view: categorical}}\n"
        "  image_size: 32\n  geometry: squash\n  augment: []\n  batch_size: 8\n"
        f"  split_file: '{split}'\n  normalize: minus1_1\n"
        "model:\n  encoder: small_cnn\n  meta_hidden: [8]\n"
        "train:\n  epochs: 4\n  learning_rate: 0.002\n"
        "smoke:\n  train.epochs: 1\n  train.max_steps: 2\n")
    work = root / "run"
    out = run_script("train.py", "--config", str(config), "--smoke", "--no-progress",
                     "--workdir", str(work))
    return {"root": root, "work": work, "logs": out.stdout + out.stderr}


def _files_holding(folder, needles) -> list[str]:
    hits = []
    for base, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                data = f.read()
            hits += [f"{path}: {n}" for n in needles if n.encode() in data]
    return hits


def test_a_dicom_dataset_trains_evaluates_and_predicts_without_leaking_names(xray_run):
    root, work = xray_run["root"], xray_run["work"]
    evaluation = run_script("evaluate.py", "--checkpoint", str(work), "--bootstrap", "10",
                            "--saliency", "0", "--operating-class", "opacity")
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    assert metrics  # evaluated on the DICOM test split
    odd = root / "odd"  # a multi-frame file among the inputs: skipped in one warning line
    odd.mkdir(exist_ok=True)
    write_dicom(odd / "cine.dcm", np.stack([RAMP] * 2), bits=12)
    predicted = run_script("predict.py", "--checkpoint", str(work), str(root / "images"),
                           str(odd), "--format", "json", "--no-progress", "--skip-bad")
    results = json.loads(predicted.stdout)
    assert len(results) == 24 and all(r["image"].endswith(".dcm") for r in results)
    assert "warning: skipped" in predicted.stderr and "multi-frame DICOM (2 frames)" in \
        predicted.stderr
    # no CSV here: the metadata come from the headers (values the model knows)
    assert [r["metadata"]["age"] for r in results] == list(range(30, 54))
    assert {r["metadata"]["view"] for r in results} - {None} == {"PA", "AP", "LL"}
    assert {r["metadata"]["sex"] for r in results} - {None} <= {"F", "M"}
    logs = xray_run["logs"] + evaluation.stdout + evaluation.stderr + predicted.stdout + \
        predicted.stderr
    needles = [NAME, NAME.replace("^", " "), PATIENT_ID]
    assert not [n for n in needles if n in logs]
    assert _files_holding(work, needles) == []
    assert _files_holding(os.environ["MULTIMODAL_PREPARED"], needles) == []


def test_the_web_demo_reads_a_dicom_upload_and_returns_a_png_preview(xray_run):
    from fastapi.testclient import TestClient

    from multimodal.serving.app import create_app
    from multimodal.serving.predictor import Predictor

    data = open(xray_run["root"] / "images" / "img01.dcm", "rb").read()  # header: 31, M, AP
    predictor = Predictor.open(str(xray_run["work"]))
    known = predictor.vocabulary["view"]["categories"]
    app = create_app(predictor, saliency_steps=2)
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.post("/predict", files={"image": ("x.dcm", data, "application/dicom")},
                        data={"sex": "F", "saliency": "false", "explain": "false"})
        assert r.status_code == 200, r.text
        body = r.json()  # the form's sex over the header's
        assert body["metadata"] == {"age": 31.0, "sex": "F", "view": "AP" if "AP" in known
                                    else None}
        png = base64.b64decode(body["image_png"].split(",", 1)[1])
        with Image.open(io.BytesIO(png)) as im:
            assert im.format == "PNG" and im.size == (32, 32)
        assert NAME not in r.text and PATIENT_ID not in r.text
        multi = io.BytesIO()
        ds = _dataset()
        ds.set_pixel_data(np.stack([RAMP] * 2), "MONOCHROME2", 12)
        ds.save_as(multi, enforce_file_format=True)
        r = client.post("/predict", files={"image": ("y.dcm", multi.getvalue(), "")})
        assert r.status_code == 415 and "multi-frame" in r.json()["error"]
        assert "image_png" not in client.post(
            "/predict", files={"image": ("z.png", _png(), "image/png")}).json()


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (90, 90, 90)).save(buf, "PNG")
    return buf.getvalue()
