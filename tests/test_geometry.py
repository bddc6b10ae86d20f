"""One image geometry (crop | squash | pad) everywhere a picture becomes a model input;
the aspect-ratio warning; prepared data shared between runs by content hash."""

import json
import os
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from multimodal.config import load_config
from multimodal.data.images import geometry
from multimodal.data.pipeline import loaders as pipeline
from multimodal.data.records import prepare, store
from multimodal.data.pipeline.metadata import MetadataEncoder
from multimodal.data.sources import generic
from multimodal.errors import ConfigError

from conftest import write_csv
from scripts_helper import ROOT

RED, GREEN = (255, 0, 0), (0, 255, 0)


def barred(width=120, height=60):
    """A wide picture: a green square in the middle, red bars left and right."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = RED
    bar = (width - height) // 2
    image[:, bar:bar + height] = GREEN
    return image


def _close(pixel, colour, tol=40):
    return np.abs(np.asarray(pixel, int) - np.asarray(colour)).max() <= tol


def check_geometry(out, kind, size=60):
    """What each geometry must make of `barred()` at `size`."""
    assert out.shape == (size, size, 3)
    mid = size // 2
    if kind == "crop":  # the square in the middle, bars cut away
        assert all(_close(p, GREEN) for p in out.reshape(-1, 3))
    elif kind == "squash":  # everything kept, stretched: bars a quarter wide each, no padding
        for y in (0, mid, size - 1):
            assert _close(out[y, 2], RED) and _close(out[y, mid], GREEN)
            assert _close(out[y, size - 3], RED)
        assert _close(out[mid, size // 4 - 3], RED) and _close(out[mid, size // 4 + 3], GREEN)
    elif kind == "pad":  # everything kept at its aspect ratio, black bars top and bottom
        pad = size // 4
        assert out[:pad - 1].max() <= 16 and out[size - pad + 1:].max() <= 16  # JPEG noise
        assert _close(out[mid, 2], RED) and _close(out[mid, mid], GREEN)
        assert _close(out[mid, size - 3], RED)


@pytest.mark.parametrize("kind", geometry.GEOMETRIES)
def test_each_geometry_makes_the_expected_square(kind):
    check_geometry(geometry.fit(barred(), 60, kind), kind)
    # idempotent on what preparation stores, and shape-preserving in training
    stored = np.asarray(geometry.for_storage(Image.fromarray(barred()), 60, kind))
    assert stored.shape == ((60, 120, 3) if kind == "crop" else (60, 60, 3))
    check_geometry(geometry.fit(stored, 60, kind), kind)
    rng = np.random.default_rng(0)
    assert geometry.fit(stored, 60, kind, rng).shape == (60, 60, 3)


def test_random_crop_moves_only_in_training():
    image = np.arange(60 * 120 * 3, dtype=np.uint32).reshape(60, 120, 3).astype(np.uint8)
    crops = {geometry.fit(image, 60, "crop", np.random.default_rng(s)).tobytes()
             for s in range(8)}
    assert len(crops) > 1
    assert geometry.fit(image, 60, "crop").tobytes() == image[:, 30:90].tobytes()


def test_an_unknown_geometry_is_a_config_error():
    with pytest.raises(ConfigError, match="data.geometry: 'stretch' is not one of"):
        geometry.check("stretch")
    with pytest.raises(ConfigError, match="data.geometry"):
        prepare.prepared_settings(32, geometry="stretch")


def _dataset(folder, n=6, size=(120, 60), picture=barred):
    """A generic-CSV dataset of `n` pictures of `size` (width, height)."""
    os.makedirs(folder, exist_ok=True)
    rows = []
    for i in range(n):
        Image.fromarray(picture(*size)).save(os.path.join(folder, f"p{i}.png"))
        rows.append([f"p{i}.png", ["mel", "nv"][i % 2]])
    return write_csv(os.path.join(folder, "data.csv"), ["image", "label"], rows)


@pytest.mark.parametrize("kind", geometry.GEOMETRIES)
def test_preparation_and_the_loader_apply_the_geometry(kind, tmp_path, capsys):
    table = generic.load(_dataset(tmp_path / "data"), "image", "label")
    split = table.frame[["image_id"]].assign(split="train")
    out = str(tmp_path / "prepared")
    manifest = prepare.prepare(table, split, out, image_size=60, encoding="png", geometry=kind,
                               progress=True)
    assert manifest["settings"]["geometry"] == kind
    assert "preparing records" in capsys.readouterr().err  # the progress bar
    source = prepare.open_split(out, "train")
    stored = pipeline.decode(source[0]["image"])
    assert stored.shape == ((60, 120, 3) if kind == "crop" else (60, 60, 3))
    identity = pipeline.Normalizer((0, 0, 0), (1, 1, 1), "identity")
    for train in (False, True):
        loader = pipeline.ExampleLoader(source, table.classes, MetadataEncoder({}).fit(
            pd.DataFrame()), {}, [], 60, identity, train=train, seed=0, geometry=kind)
        image = loader((0, 0))["image"]
        assert image.shape == (60, 60, 3)
        if not train:
            check_geometry(image.astype(np.uint8), kind)
    normalizer = pipeline.fit_normalizer(source, [], 60, "dataset", geometry=kind)
    red_share = {"crop": 0.0, "squash": 0.5, "pad": 0.5}[kind]  # of the non-black pixels
    seen = 1.0 if kind != "pad" else 0.5  # pad: half of the square is black
    assert normalizer.mean[0] == pytest.approx(255 * red_share * seen, abs=6)
    # a different geometry is a different prepared dataset
    other = "squash" if kind != "squash" else "pad"
    assert prepare.inputs_hash(table, split, "split", prepare.prepared_settings(60, "png",
                               geometry=other)) != manifest["inputs_sha256"]


def _fake_run(workdir, geometry_name, train_ratio):
    from multimodal.run import LoadedRun

    cfg = load_config(None, [f"data.geometry={geometry_name}", "data.image_size=32",
                             "modality=image", "data.augment=[]"])
    os.makedirs(workdir, exist_ok=True)
    store.write_reference(str(workdir), str(workdir / "none"),
                            {"inputs_sha256": "0" * 64},
                            aspect_ratio={"all": train_ratio, "train": train_ratio})
    return LoadedRun(str(workdir), cfg, ["mel", "nv"], MetadataEncoder({}).fit(pd.DataFrame()),
                     pipeline.Normalizer((0, 0, 0), (1, 1, 1), "identity"), None, 0)


def _external(tmp_path, name, size):
    csv = _dataset(tmp_path / name, n=4, size=size)
    config = tmp_path / f"{name}.yaml"
    # the dataset's own config asks for crop at 64 px: the run's geometry and size win
    config.write_text(f"data:\n  source: csv\n  image_size: 64\n  geometry: crop\n"
                      f"  options: {{csv: {csv}, image_column: image, label_column: label}}\n")
    return str(config)


def _aspect_warnings(record):
    return [str(w.message) for w in record if "aspect ratio" in str(w.message)]


def test_another_dataset_is_read_with_the_runs_geometry(tmp_path):
    from multimodal.data.pipeline.inputs import example_loader
    from multimodal.run import external_inputs

    run = _fake_run(tmp_path / "run", "pad", train_ratio=2.0)  # trained on 2:1 pictures
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        inputs = external_inputs(run, _external(tmp_path, "wide", (120, 60)))
    assert _aspect_warnings(record) == []  # same aspect ratio: silent
    assert inputs.manifest["settings"]["geometry"] == "pad"
    assert inputs.manifest["settings"]["image_size"] == 32
    assert inputs.prepared_dir.startswith(store.store_root())
    image = example_loader(run.cfg, inputs, "test", train=False)((0, 0))["image"]
    check_geometry(image.astype(np.uint8), "pad", size=32)


def test_aspect_ratio_warning_names_both_ratios_and_the_geometry(tmp_path):
    from multimodal.run import external_inputs

    run = _fake_run(tmp_path / "run", "crop", train_ratio=4 / 3)  # a 4:3-trained model
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        external_inputs(run, _external(tmp_path, "square", (60, 60)))
    (message,) = _aspect_warnings(record)
    assert "1.00" in message and "1.33" in message and "data.geometry=crop" in message
    assert "\n" not in message
    # within the tolerance (10%): silent
    assert not geometry.check_aspect(4 / 3, 1.25, "crop", "x")
    with pytest.warns(UserWarning, match="aspect ratio"):
        assert geometry.check_aspect(4 / 3, 1.0, "squash", "x")


def _sample_cfg(*overrides):
    return load_config(os.path.join(ROOT, "configs", "ham10000_sample.yaml"), list(overrides),
                       smoke=True)


def test_runs_on_the_same_data_share_one_prepared_folder(tmp_path, monkeypatch):
    from multimodal.data.pipeline.inputs import build_inputs

    store_dir = tmp_path / "store"
    monkeypatch.setenv(store.PREPARED_ENV, str(store_dir))
    first = build_inputs(_sample_cfg(), str(tmp_path / "run1"))
    assert first.prepared_dir.startswith(str(store_dir))

    def no_records(*args, **kwargs):
        raise AssertionError("the second run wrote an image record")

    with monkeypatch.context() as m:
        m.setattr(prepare, "_record", no_records)
        second = build_inputs(_sample_cfg(), str(tmp_path / "run2"))
    assert second.prepared_dir == first.prepared_dir
    assert [p.name for p in store_dir.iterdir()] == [os.path.basename(first.prepared_dir)]
    for run in ("run1", "run2"):
        assert not (tmp_path / run / "prepared").exists()
        reference = store.read_reference(str(tmp_path / run))
        assert reference["path"] == first.prepared_dir
        assert reference["settings"]["geometry"] == "crop"
        assert reference["aspect_ratio"]["train"] == pytest.approx(4 / 3, abs=0.01)
    # resume / evaluation find it from the run directory alone
    with monkeypatch.context() as m:
        m.setattr(prepare, "_record", no_records)
        m.setenv(store.PREPARED_ENV, str(tmp_path / "elsewhere"))
        assert build_inputs(_sample_cfg(), str(tmp_path / "run2")).prepared_dir == \
            first.prepared_dir
    # a cache: deleted, it is prepared again from the inputs, at the same place
    shutil.rmtree(first.prepared_dir)
    again = build_inputs(_sample_cfg(), str(tmp_path / "run2"))
    assert again.prepared_dir == first.prepared_dir
    assert again.manifest["splits"] == first.manifest["splits"]
    # another geometry is another folder
    padded = build_inputs(_sample_cfg("data.geometry=pad"), str(tmp_path / "run3"))
    assert padded.prepared_dir != first.prepared_dir
    assert json.loads((tmp_path / "run3" / store.REFERENCE).read_text())["settings"][
        "geometry"] == "pad"
    assert not [p for p in os.listdir(store_dir) if p.startswith(".tmp")]


# --- rectangles: data.image_size = [height, width] ---

@pytest.mark.parametrize("kind", geometry.GEOMETRIES)
def test_a_rectangle_of_the_pictures_aspect_keeps_the_whole_picture(kind):
    """120x60 pictures (2:1) into a [30, 60] input: every geometry shows everything,
    nothing cropped, stretched or padded."""
    stored = np.asarray(geometry.for_storage(Image.fromarray(barred()), [30, 60], kind))
    assert stored.shape == (30, 60, 3)  # the covering resize is the input itself here
    out = geometry.fit(stored, [30, 60], kind)
    assert out.shape == (30, 60, 3)
    assert _close(out[15, 2], RED) and _close(out[15, 30], GREEN) and _close(out[15, 57], RED)
    assert _close(out[0, 30], GREEN) and _close(out[29, 30], GREEN)  # no padding rows
    assert geometry.fit(stored, [30, 60], kind, np.random.default_rng(0)).shape == (30, 60, 3)


def test_a_rectangle_of_another_aspect_crops_squashes_or_pads_along_the_right_side():
    picture = barred()  # 120x60, 2:1, into [40, 60] (3:2)
    stored = np.asarray(geometry.for_storage(Image.fromarray(picture), [40, 60], "crop"))
    assert stored.shape == (40, 80, 3)  # covered: 10 px to cut at each side
    crop = geometry.fit(stored, [40, 60], "crop")
    assert crop.shape == (40, 60, 3) and _close(crop[20, 1], RED) and _close(crop[20, 30], GREEN)
    pad = geometry.fit(picture, [40, 60], "pad")  # fitted at 60x30: 5 black rows top and bottom
    assert pad.shape == (40, 60, 3) and pad[:4].max() <= 16 and pad[-4:].max() <= 16
    assert _close(pad[20, 2], RED) and _close(pad[20, 30], GREEN)
    squash = geometry.fit(picture, [40, 60], "squash")
    assert squash.shape == (40, 60, 3) and _close(squash[0, 2], RED)
    # the inverse maps the input's corners back onto the source picture
    assert geometry.to_source((0, 0, 60, 40), [40, 60], (120, 60), "crop") == \
        pytest.approx((15.0, 0.0, 105.0, 60.0))
    assert geometry.to_source((0, 5, 60, 35), [40, 60], (120, 60), "pad") == \
        pytest.approx((0.0, 0.0, 120.0, 60.0))
    # an int and [n, n] are the same square
    assert np.array_equal(geometry.fit(picture, 70, "crop"), geometry.fit(picture, [70, 70]))
    assert geometry.hw(50) == (50, 50) and geometry.hw([150, 200]) == (150, 200)


@pytest.mark.parametrize("value, message", [
    ("[150, 200, 3]", "two ints"), ("[4, 200]", "out of range"), ("[150, 2.5]", "two ints"),
    ("[a, b]", "two ints"), ("[]", "two ints")])
def test_a_bad_rectangle_is_refused_in_one_line(value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"data.image_size={value}"])
    assert load_config(None, ["data.image_size=[150, 200]"]).data.image_size == [150, 200]


def test_a_rectangular_run_trains_evaluates_and_serves(tmp_path):
    """The sample at its own 4:3 aspect ([24, 32]): train, evaluate, and the exported
    model's input shape and predictions agree with the run's."""
    from scripts_helper import run_script

    from multimodal.serving.export import export_model
    from multimodal.serving.predictor import Predictor

    work, out = tmp_path / "run", tmp_path / "eval"
    run_script("train.py", "--config", "configs/ham10000_sample.yaml", "--smoke", "--no-progress",
               "--workdir", str(work), "--set", "data.image_size=[24, 32]")
    run_script("evaluate.py", "--checkpoint", str(work), "--out", str(out), "--bootstrap", "20")
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["metrics"]["balanced_accuracy"]["value"] <= 1.0
    export_model(str(work), str(tmp_path / "model"))
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["inputs"]["image"]["shape"][1:] == [24, 32, 3]
    from multimodal.data.sample import SAMPLE_DIR
    from multimodal.serving.images import read_image_file

    folder = os.path.join(SAMPLE_DIR, "images")
    pictures = [read_image_file(os.path.join(folder, n)) for n in sorted(os.listdir(folder))[:2]]
    rows = [{}, {}]
    run_p = [p.probabilities for p in Predictor.open(str(work)).predict(pictures, rows)]
    exp_p = [p.probabilities for p in Predictor.open(str(tmp_path / "model")).predict(
        pictures, rows)]
    assert [list(p) for p in run_p] == [list(p) for p in exp_p]
    assert np.allclose([list(p.values()) for p in run_p], [list(p.values()) for p in exp_p],
                       atol=1e-4)
