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
from multimodal.data import geometry, pipeline, prepare
from multimodal.data.metadata import MetadataEncoder
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
    from multimodal.runs import LoadedRun

    cfg = load_config(None, [f"data.geometry={geometry_name}", "data.image_size=32",
                             "modality=image", "data.augment=[]"])
    os.makedirs(workdir, exist_ok=True)
    prepare.write_reference(str(workdir), str(workdir / "none"),
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
    from multimodal.data.inputs import example_loader
    from multimodal.runs import external_inputs

    run = _fake_run(tmp_path / "run", "pad", train_ratio=2.0)  # trained on 2:1 pictures
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        inputs = external_inputs(run, _external(tmp_path, "wide", (120, 60)))
    assert _aspect_warnings(record) == []  # same aspect ratio: silent
    assert inputs.manifest["settings"]["geometry"] == "pad"
    assert inputs.manifest["settings"]["image_size"] == 32
    assert inputs.prepared_dir.startswith(prepare.store_root())
    image = example_loader(run.cfg, inputs, "test", train=False)((0, 0))["image"]
    check_geometry(image.astype(np.uint8), "pad", size=32)


def test_aspect_ratio_warning_names_both_ratios_and_the_geometry(tmp_path):
    from multimodal.runs import external_inputs

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
    from multimodal.data.inputs import build_inputs

    store = tmp_path / "store"
    monkeypatch.setenv(prepare.PREPARED_ENV, str(store))
    first = build_inputs(_sample_cfg(), str(tmp_path / "run1"))
    assert first.prepared_dir.startswith(str(store))

    def no_records(*args, **kwargs):
        raise AssertionError("the second run wrote an image record")

    with monkeypatch.context() as m:
        m.setattr(prepare, "_record", no_records)
        second = build_inputs(_sample_cfg(), str(tmp_path / "run2"))
    assert second.prepared_dir == first.prepared_dir
    assert [p.name for p in store.iterdir()] == [os.path.basename(first.prepared_dir)]
    for run in ("run1", "run2"):
        assert not (tmp_path / run / "prepared").exists()
        reference = prepare.read_reference(str(tmp_path / run))
        assert reference["path"] == first.prepared_dir
        assert reference["settings"]["geometry"] == "crop"
        assert reference["aspect_ratio"]["train"] == pytest.approx(4 / 3, abs=0.01)
    # resume / evaluation find it from the run directory alone
    with monkeypatch.context() as m:
        m.setattr(prepare, "_record", no_records)
        m.setenv(prepare.PREPARED_ENV, str(tmp_path / "elsewhere"))
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
    assert json.loads((tmp_path / "run3" / prepare.REFERENCE).read_text())["settings"][
        "geometry"] == "pad"
    assert not [p for p in os.listdir(store) if p.startswith(".tmp")]
