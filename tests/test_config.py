import glob

import pytest

from multimodal.config import Config, ConfigError, expand, load_config


@pytest.mark.parametrize("path", sorted(glob.glob("configs/*.yaml")))
def test_every_shipped_config_and_its_smoke_variant_parse(path):
    assert isinstance(load_config(path), Config)
    smoke = load_config(path, smoke=True)
    assert smoke.train.max_steps is not None and smoke.train.max_steps <= 10


def test_overrides_are_typed_yaml_values():
    cfg = load_config("configs/ham10000_sample.yaml",
                      ["train.learning_rate=0.01", "data.augment=[flip_h]", "train.patience=null",
                       "model.meta_hidden=[8]"])
    assert cfg.train.learning_rate == 0.01 and cfg.data.augment == ["flip_h"]
    assert cfg.train.patience is None and cfg.model.meta_hidden == [8]
    assert load_config(None, ["train.learning_rate=1"]).train.learning_rate == 1.0


@pytest.mark.parametrize("override,message", [
    ("train.lr=0.1", r"unknown key\(s\) \['train.lr'\]"),
    ("train.epochs=ten", "train.epochs: expected int, got 'ten'"),
    ("model.fusion=sum", "model.fusion: 'sum' is not one of"),
    ("data.batch_size=true", "data.batch_size: expected int"),
    ("train=3", "train: expected a mapping"),
    ("nokey", "key=value"),
])
def test_config_errors_before_any_work(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("configs/ham10000_sample.yaml", [override])


def test_modality_argument_and_missing_file():
    assert load_config(None, modality="meta").modality == "meta"
    with pytest.raises(ConfigError, match="modality"):
        load_config(None, modality="text")
    with pytest.raises(ConfigError, match="not found"):
        load_config("configs/nope.yaml")


def test_expand_env(monkeypatch):
    monkeypatch.setenv("MULTIMODAL_DATA", "/data")
    assert expand({"a": ["${MULTIMODAL_DATA}/x"]}) == {"a": ["/data/x"]}
