"""Starting a run from another run (`model.init_from`): what is loaded and what starts anew
(head on other classes, metadata part on other fields), another image size, refusals in one
line, the record in the run and in its evaluation report, and segmentation runs."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from flax import nnx

from multimodal.config import load_config
from multimodal.data.pipeline.metadata import MetadataEncoder
from multimodal.errors import ConfigError, RunError
from multimodal.models import build_for_task
from multimodal.run import load_run
from multimodal.run.init import check_source, init_from_run

from scripts_helper import refused, run_script

SAMPLE = "configs/ham10000_sample.yaml"


def _leaves(tree):
    if isinstance(tree, dict):
        for key in sorted(tree, key=str):
            yield from _leaves(tree[key])
    else:
        yield np.asarray(tree)


def _same(a, b) -> bool:
    la, lb = list(_leaves(a)), list(_leaves(b))
    return len(la) == len(lb) and all(x.shape == y.shape and np.array_equal(x, y)
                                      for x, y in zip(la, lb))


def _target(smoke_run, *overrides):
    return load_config(SAMPLE, [f"model.init_from={smoke_run}", *overrides], smoke=True)


def test_matching_parts_load_and_mismatched_ones_start_anew(smoke_run):
    source = load_run(smoke_run)
    theirs = nnx.state(source.model).to_pure_dict()
    cfg = _target(smoke_run, "data.image_size=48")  # another size: convolutions do not care
    check_source(cfg)
    model = build_for_task(cfg, len(source.classes), source.meta_encoder.dim)
    record = init_from_run(model, cfg, source.classes, source.meta_encoder)
    mine = nnx.state(model).to_pure_dict()
    assert {"encoder", "head", "meta"} <= set(record["loaded"]) and not record["reinitialised"]
    assert all(_same(mine[k], theirs[k]) for k in ("encoder", "head", "meta"))
    assert record["step"] == source.step and len(record["encoder_digest"]) == 16

    # other classes (the same names in another order): the head starts anew
    classes = list(reversed(source.classes))
    model = build_for_task(cfg, len(classes), source.meta_encoder.dim)
    fresh_head = nnx.state(model).to_pure_dict()["head"]
    record = init_from_run(model, cfg, classes, source.meta_encoder)
    assert "the classes differ" in record["reinitialised"]["head"]
    mine = nnx.state(model).to_pure_dict()
    assert _same(mine["head"], fresh_head) and _same(mine["encoder"], theirs["encoder"])

    # other metadata features: the metadata part starts anew, the encoder still loads
    other = MetadataEncoder({"age": "numeric", "site": "categorical"}).fit(pd.DataFrame(
        {"age": [30.0, 50.0, np.nan], "site": ["back", "face", "back"]}))
    model = build_for_task(cfg, len(source.classes), other.dim)
    record = init_from_run(model, cfg, source.classes, other)
    assert "meta" in record["reinitialised"] and "encoder" in record["loaded"]


def test_an_incompatible_source_is_refused_before_any_work(smoke_run, tmp_path):
    with pytest.raises(ConfigError, match="its weights do not fit"):
        check_source(_target(smoke_run, "model.encoder=resnet18"))
    with pytest.raises(RunError, match="not a run directory"):
        check_source(_target(str(tmp_path)))
    out = run_script("train.py", "--config", SAMPLE, "--smoke", "--no-progress", "--workdir",
                     str(tmp_path / "run"), "--set", "model.encoder=resnet18", "--set",
                     f"model.init_from={smoke_run}", check=False)
    refused(out, "model.init_from", "do not fit")
    assert not (tmp_path / "run" / "split.csv").exists()


def test_a_run_started_from_another_records_it_and_its_report_shows_it(smoke_run, tmp_path):
    work = tmp_path / "run"
    out = run_script("train.py", "--config", SAMPLE, "--smoke", "--no-progress", "--workdir",
                     str(work), "--set", f"model.init_from={smoke_run}", "--set",
                     "model.init_normalizer=source")
    assert "init_from: loaded encoder" in out.stdout
    record = json.loads((work / "init_from.json").read_text())
    assert record["run"] == os.path.abspath(smoke_run)
    assert json.loads((work / "normalizer.json").read_text()) == \
        json.loads(open(os.path.join(smoke_run, "normalizer.json")).read())
    run_script("evaluate.py", "--checkpoint", str(work), "--out", str(tmp_path / "eval"),
               "--bootstrap", "10")
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "started from" in report and "loaded encoder" in report


def test_a_segmentation_run_starts_from_another_and_not_from_a_classifier(smoke_run, tmp_path):
    unet = "configs/ham10000_sample_unet.yaml"
    first = tmp_path / "unet"
    run_script("train.py", "--config", unet, "--smoke", "--no-progress", "--workdir", str(first))
    out = run_script("train.py", "--config", unet, "--smoke", "--no-progress", "--workdir",
                     str(tmp_path / "unet2"), "--set", f"model.init_from={first}")
    assert "init_from: loaded" in out.stdout
    assert not json.loads((tmp_path / "unet2" / "init_from.json").read_text())["reinitialised"]
    with pytest.raises(ConfigError, match="does not start a U-Net"):
        check_source(load_config(unet, [f"model.init_from={smoke_run}"], smoke=True))
