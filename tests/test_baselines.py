"""configs/baselines: every report's system loads, and trains once in smoke mode.

The training test runs `benchmarks.quality.run_baselines --tiny` (in this process): each
system's smoke variant trains once (HAM10000 configs on the bundled sample, which has
HAM10000's format; Fitzpatrick17k on a synthetic Fitzpatrick-format set written into tmp_path;
the chest X-ray config on ../shared/data/covid_chestxray), is evaluated on its test split, and
becomes a row of the results table.
"""

from __future__ import annotations

import glob
import json
import os

import pytest

from conftest import SHARED_DATA
from multimodal.config import load_config
from multimodal.data.images.augment import parse_ops
from multimodal.models import ENCODERS
from multimodal.search.space import check_space, load_space
from scripts_helper import ROOT

FOLDER = os.path.join(ROOT, "configs", "baselines")
CONFIGS = sorted(p for p in glob.glob(os.path.join(FOLDER, "*.yaml"))
                 if not p.endswith("_space.yaml"))
ROWS = {"xception", "fitzpatrick", "fitzpatrick_meta", "resnet18", "resnet50",
        "chestxray_meta", "adasyn", "vgg16_frozen", "fusion", "stacking"}


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_baseline_config_and_its_smoke_variant_load(path):
    cfg, smoke = load_config(path), load_config(path, smoke=True)
    assert cfg.name.startswith("baseline_") and cfg.model.encoder in ENCODERS
    parse_ops(cfg.data.augment)
    assert smoke.train.max_steps <= 2 and smoke.data.image_size <= 32
    with open(path) as f:
        text = f.read()
    assert "Report:" in text or "No report claim" in text  # what it is measured against


def test_every_system_has_a_config_and_the_fitzpatrick_space_fits_it():
    names = {os.path.basename(p) for p in CONFIGS}
    assert names == {"xception_ham10000.yaml", "fitzpatrick17k.yaml", "resnet18_ham10000.yaml",
                     "resnet50_ham10000.yaml", "chestxray_opacity.yaml",
                     "smallcnn_adasyn_ham10000.yaml", "vgg16_frozen_ham10000.yaml",
                     "design_ham10000.yaml"}
    config = os.path.join(FOLDER, "fitzpatrick17k.yaml")
    space = load_space(os.path.join(FOLDER, "fitzpatrick17k_space.yaml"))
    assert {p.key: p.kind for p in space} == {"train.optimizer": "categorical",
                                              "train.learning_rate": "log_uniform"}
    check_space(space, lambda values: load_config(config, values), "space")
    fitz = load_config(config)
    assert fitz.train.early_stop_metric == "weighted_f1"
    assert fitz.data.stratify == ["label", "fitzpatrick"] and fitz.data.stratify_bins
    for name in ("resnet18_ham10000.yaml", "resnet50_ham10000.yaml"):
        cfg = load_config(os.path.join(FOLDER, name))
        assert cfg.train.schedule == "plateau" and cfg.data.oversample
        assert "nv" not in cfg.data.augment_classes and cfg.data.image_size == 224
    assert load_config(os.path.join(FOLDER, "smallcnn_adasyn_ham10000.yaml")).data.resample \
        == "adasyn"


def test_every_system_trains_once_in_smoke_mode(tmp_path, monkeypatch, capsys):
    """Every system but ResNet-50, whose row is ResNet-18's code (`_resnet`) with another
    config (loaded above): its training would add a minute and no path. In this process:
    `make test` already compiles without XLA's backend optimisation, as --tiny asks."""
    from benchmarks.quality import run_baselines
    from benchmarks.quality.baseline_bench import SYSTEMS

    for name in ("MULTIMODAL_DATA", "XLA_FLAGS"):  # main() may set them: restored afterwards
        monkeypatch.setenv(name, os.environ.get(name, SHARED_DATA if name[0] == "M" else ""))
    results = tmp_path / "results"
    code = run_baselines.main(["--tiny", "--only", *(s for s in SYSTEMS if s != "resnet50"),
                               "--data-root", SHARED_DATA, "--out", str(tmp_path / "runs"),
                               "--results", str(results), "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, out.out[-3000:] + out.err[-3000:]
    rows = json.loads((results / "baselines_tiny.json").read_text())["rows"]
    expected = set(ROWS) - {"resnet50"}
    if not os.path.isdir(os.path.join(SHARED_DATA, "covid_chestxray")):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("no ../shared/data/covid_chestxray; CI=true needs it")
        expected = expected - {"chestxray_meta"} | {"chestxray"}  # the 'not run' row
    assert set(rows) == expected
    for key, row in rows.items():
        if key == "chestxray" and row["grouped"] is None:
            continue
        assert 0 <= row["grouped"] <= 1 and 0 <= row["balanced_accuracy"] <= 1, key
        assert row["seconds"] > 0 and row["budget"] == "tiny" and row["what"], key
    assert "SYNTHETIC" in rows["fitzpatrick"]["what"]
    synthetic = tmp_path / "runs" / "tiny" / "fitzpatrick17k_synthetic"
    assert (synthetic / "fitzpatrick17k.csv").exists()
    assert "image-level split" in rows["adasyn"]["report_protocol"]  # both protocols
    assert "leakage gap" in rows["adasyn"]["what"]
    assert rows["resnet18"]["report_protocol"] == "not run in --tiny"
    assert "random initialisation" in rows["xception"]["what"]
    assert "RANDOMLY INITIALISED" in rows["vgg16_frozen"]["what"]
    if "chestxray_meta" in rows:
        assert "NOT REPRODUCED" in rows["chestxray_meta"]["what"]
    table = (results / "baselines_tiny.md").read_text().splitlines()
    assert table[2].startswith("Commands: `python -m benchmarks.quality.run_baselines --tiny")
    assert sum(line.startswith("| ") and "---" not in line for line in table) == 1 + len(rows)


def test_the_knobs_the_baselines_added():
    """weighted F1 (a metric early stopping may use), stratification on binned columns, an
    asymmetric brightness range."""
    import numpy as np
    from sklearn.metrics import f1_score

    from multimodal.config import DataConfig
    from multimodal.data.images.augment import OPS
    from multimodal.data.split.build import _bins
    from multimodal.errors import ConfigError
    from multimodal.metrics import classification_metrics

    labels, preds = np.array([0, 0, 1, 1, 2, 2, 2]), np.array([0, 1, 1, 1, 2, 0, 2])
    probs = np.eye(4)[preds] * 0.9 + 0.025  # class 3 absent from the labels
    got = classification_metrics(labels, probs)["weighted_f1"]
    assert got == pytest.approx(f1_score(labels, preds, average="weighted", labels=[0, 1, 2]))
    assert load_config(None, ["train.early_stop_metric=weighted_f1"]).train.early_stop_metric \
        == "weighted_f1"
    assert _bins(DataConfig(stratify=["label", "fitzpatrick"],
                            stratify_bins={"fitzpatrick": [0, 2, 4, 6]}))
    with pytest.raises(ConfigError, match="not a data.stratify column"):
        _bins(DataConfig(stratify=["label"], stratify_bins={"fitzpatrick": [0, 2, 4, 6]}))
    with pytest.raises(ConfigError, match="increasing numbers"):
        _bins(DataConfig(stratify=["label", "fitzpatrick"], stratify_bins={"fitzpatrick": [4, 2]}))
    image = np.full((8, 8, 3), 100, np.uint8)
    rng = np.random.default_rng(0)
    brighter = OPS["brightness"].fn(image, rng, factors=[1.5, 1.5])
    assert int(brighter[0, 0, 0]) == 150
    parse_ops([{"brightness": {"factors": [0.8, 1.1]}}])
