"""Declarative run configs: YAML files in `configs/`, typed by dataclasses.

A config file has the sections `data`, `model`, `train` and optionally
`smoke`, a flat mapping of overrides that shrinks the run to seconds (used by
the tests and by `--smoke`). Command-line `--set section.key=value` overrides
are parsed as YAML values. Unknown keys and values of the wrong type are
reported before any work starts.

`${VAR}` in strings expands from the environment; `MULTIMODAL_DATA` defaults to
`../shared/data` and `MULTIMODAL_SAMPLE` to the bundled HAM10000 sample.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from multimodal.data.sample import SAMPLE_DIR


class ConfigError(ValueError):
    pass


@dataclass
class DataConfig:
    source: str = "ham10000"
    options: dict = field(default_factory=lambda: {"root": "${MULTIMODAL_SAMPLE}"})
    on_missing: str = "error"  # error | drop
    verify: str = "exists"  # decode | exists | none
    split_file: str | None = None  # reuse a saved split; else one is made and saved
    split_by: str = "group"  # group | image (image-level leaks; reproduction only)
    val: float = 0.15
    test: float = 0.15
    split_seed: int = 0
    stratify: list = field(default_factory=lambda: ["label"])
    metadata: list | None = None  # feature columns; None = all the source declares
    image_size: int = 64
    prepared_dir: str | None = None  # ArrayRecord cache; default <workdir>/prepared
    augment: list = field(default_factory=lambda: ["flip_h", "flip_v"])
    augment_classes: list | None = None  # augment only these classes; None = all
    normalize: str = "dataset"  # dataset | imagenet | minus1_1
    balance_alpha: float = 0.0  # sampling weight n_c^-alpha: 0 natural, 1 balanced
    resample: str | None = None  # random | smote | adasyn: synthetic training images
    oversample: dict | None = None  # per-class sampling factors, e.g. {mel: 2.0}
    batch_size: int = 32
    workers: int = 0  # grain worker processes; 0 = in-process


@dataclass
class ModelConfig:
    encoder: str = "small_cnn"
    encoder_options: dict = field(default_factory=dict)
    pretrained: str | None = None  # ImageNet weights: efficientnet_lite0 | a Keras Xception file
    features: str | None = None  # a feature cache (scripts/extract_features.py) in place of images
    fusion: str = "concat"  # concat | film | logit
    meta_hidden: list = field(default_factory=lambda: [64, 64])
    dropout: float = 0.3
    modality_dropout: float = 0.1  # chance per example of hiding its metadata in training
    dtype: str = "float32"  # float32 | bfloat16 (compute dtype)


@dataclass
class TrainConfig:
    epochs: int = 10
    max_steps: int | None = None  # stop after this many steps in all (smoke runs)
    optimizer: str = "adamw"  # adam | adamw | sgd | rmsprop | nadam
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # cosine | constant | step | plateau
    warmup_epochs: float = 1.0
    clip_norm: float | None = 1.0
    loss: str = "cross_entropy"  # cross_entropy | focal
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    class_weights: bool = False
    checkpoint_every_steps: int | None = None  # also save `latest` mid-epoch
    freeze_encoder_epochs: int = 0  # stage 1: heads only, image encoder frozen
    unfreeze_from: str | None = None  # stage 2 trains the encoder from this block, e.g. blocks.12
    finetune_lr_scale: float = 0.1  # encoder learning rate relative to the heads' in stage 2
    ema_decay: float | None = None  # validate and keep best checkpoints with averaged weights
    tensorboard: bool = False  # also write TensorBoard event files to <workdir>/tensorboard
    early_stop_metric: str = "balanced_accuracy"
    patience: int | None = 5
    keep_best: int = 2
    seed: int = 0
    log_every: int = 10


@dataclass
class Config:
    name: str = "run"
    modality: str = "image+meta"  # image | meta | image+meta
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


CHOICES = {
    "modality": ("image", "meta", "image+meta"),
    "data.on_missing": ("error", "drop"),
    "data.verify": ("decode", "exists", "none"),
    "data.split_by": ("group", "image"),
    "data.normalize": ("dataset", "imagenet", "minus1_1"),
    "data.resample": (None, "random", "smote", "adasyn"),
    "model.fusion": ("concat", "film", "logit"),
    "model.dtype": ("float32", "bfloat16"),
    "train.optimizer": ("adam", "adamw", "sgd", "rmsprop", "nadam"),
    "train.schedule": ("cosine", "constant", "step", "plateau"),
    "train.loss": ("cross_entropy", "focal"),
}


def _check_type(path: str, value: Any, hint) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(path, value, option)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    base = origin or hint
    if not isinstance(value, base) or (base is int and isinstance(value, bool)):
        raise ConfigError(f"{path}: expected {getattr(base, '__name__', base)}, "
                          f"got {value!r} ({type(value).__name__})")
    return value


def _build(cls, data: dict, prefix: str = ""):
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {[prefix + k for k in unknown]}; "
                          f"valid keys: {sorted(prefix + n for n in names)}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _check_type(prefix + name, value, hint)
            allowed = CHOICES.get(prefix + name)
            if allowed and kwargs[name] not in allowed:
                raise ConfigError(f"{prefix}{name}: {value!r} is not one of {list(allowed)}")
    return cls(**kwargs)


def _set_path(tree: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {key} is not a section")
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw.strip() else ""


def load_config(path: str | None = None, overrides=(), smoke: bool = False,
                modality: str | None = None) -> Config:
    """Read a YAML config, apply smoke overrides, then `key=value` overrides, and check it."""
    tree: dict = {}
    if path:
        if not os.path.exists(path):
            raise ConfigError(f"config file not found: {path}")
        with open(path) as f:
            tree = yaml.safe_load(f) or {}
    smoke_overrides = tree.pop("smoke", {}) or {}
    if smoke:
        for key, value in smoke_overrides.items():
            _set_path(tree, key, value)
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        _set_path(tree, key, value)
    if modality:
        tree["modality"] = modality
    return _build(Config, tree)


def config_from_cli(path: str | None, overrides=(), smoke: bool = False,
                    modality: str | None = None, features: str | None = None) -> Config | None:
    """`load_config` for the scripts: `--features CACHE` becomes `model.features`; a config
    error is printed to stderr and None returned (the script then exits with 2)."""
    try:
        extra = [f"model.features={features}"] if features else []
        return load_config(path, [*overrides, *extra], smoke=smoke, modality=modality)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return None


def expand(value):
    """Expand ${VAR} in strings (recursively), with the project's defaults."""
    env = {"MULTIMODAL_DATA": os.environ.get("MULTIMODAL_DATA", os.path.join("..", "shared", "data")),
           "MULTIMODAL_SAMPLE": os.environ.get("MULTIMODAL_SAMPLE", SAMPLE_DIR)}
    if isinstance(value, str):
        for key, default in env.items():
            value = value.replace("${" + key + "}", default)
        return os.path.expandvars(value)
    if isinstance(value, dict):
        return {k: expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v) for v in value]
    return value
