"""Declarative run configs: YAML files in `configs/`, typed by dataclasses.

A config file has the sections `data`, `model`, `train` and optionally
`smoke`, a flat mapping of overrides that shrinks the run to seconds (used by
the tests and by `--smoke`). Command-line `--set section.key=value` overrides
are parsed as YAML values. Unknown keys and values of the wrong type are
reported before any work starts.

`${VAR}` in strings expands from the environment once, when the config is loaded
(`MULTIMODAL_DATA` defaults to `../shared/data`, `MULTIMODAL_SAMPLE` to the bundled
HAM10000 sample), so a run's saved config.yaml holds the paths it really used and no
other module expands anything. This module is the base of the package: it imports none
of it but the errors, and it owns the modality and fusion choices.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from multimodal import tasks as task_table
from multimodal.config_sources import check_sources, one_source
from multimodal.errors import ConfigError

# The bundled sample (multimodal/data/sample); named here so the config needs no data code.
SAMPLE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sample",
                          "ham10000")
MODALITIES = ("image", "meta", "image+meta")
FUSIONS = ("concat", "film", "logit")


@dataclass
class DataConfig:
    source: str | None = "ham10000"  # one dataset; or `sources` (never both)
    options: dict = field(default_factory=lambda: {"root": "${MULTIMODAL_SAMPLE}"})
    # several datasets merged into one table (docs/datasets.md, "Merged sources"): a list of
    # {source, name, options, label_map}; ids and groups become `<name>:<id>`
    sources: list | None = None
    source_as_metadata: bool = False  # the rows' source as a categorical metadata column
    # the split's perceptual near-duplicate check (data/split/near_duplicates.py): pictures
    # of different sources (sources), of any two groups (all), or none (off)
    near_duplicates: str = "sources"
    on_missing: str = "error"  # error | drop
    verify: str = "exists"  # decode | exists | none
    split_file: str | None = None  # reuse a saved split; else one is made and saved
    split_by: str = "group"  # group | image (image-level leaks; reproduction only)
    fold: int | None = None  # K-fold run k: fold k = test, fold (k+1) mod K = val, rest = train
    folds: int = 5  # K when data.fold is set without a split file (grouped folds are made)
    val: float = 0.15
    test: float = 0.15
    split_seed: int = 0
    stratify: list = field(default_factory=lambda: ["label"])
    # bin edges of numeric stratify columns, e.g. {fitzpatrick: [0, 2, 4, 6]}: I-II/III-IV/V-VI
    stratify_bins: dict | None = None
    metadata: list | None = None  # feature columns; None = all the source declares
    metadata_encoding: dict | None = None  # column -> kind, e.g. {age: binned} (quantile bins)
    # the model input: a square's side, or [height, width] (e.g. [150, 200]: HAM10000 whole)
    image_size: int | list = 64
    # picture -> that input, everywhere (multimodal/data/images/geometry.py): crop (covering resize,
    # random/centre window) | squash (whole picture stretched) | pad (letterbox, black bars)
    geometry: str = "crop"
    prepared_dir: str | None = None  # ArrayRecord cache; default: the shared store (content-keyed)
    augment: list = field(default_factory=lambda: ["flip_h", "flip_v"])
    augment_classes: list | None = None  # augment only these classes; None = all
    normalize: str = "dataset"  # dataset | imagenet | minus1_1
    balance_alpha: float = 0.0  # sampling weight n_c^-alpha: 0 natural, 1 balanced
    resample: str | None = None  # random | smote | adasyn: synthetic training images
    oversample: dict | None = None  # per-class sampling factors, e.g. {mel: 2.0}
    batch_size: int = 32
    workers: int = 0  # grain worker processes; 0 = in-process

    @property
    def source_kinds(self) -> list[str]:
        """The dataset source(s) read: [data.source], or each data.sources entry's source."""
        return [self.source] if self.sources is None else [e["source"] for e in self.sources]


@dataclass
class ModelConfig:
    encoder: str = "small_cnn"  # the image encoder of a classifier (ENCODERS)
    # the mask model of task: segmentation (SEGMENTERS, e.g. unet); configs and runs written
    # before this key named it as model.encoder, which still loads (see _check_task)
    segmenter: str | None = None
    init_from: str | None = None  # another run to start from (run/init.py: what is loaded)
    init_normalizer: str = "own"  # own: fitted on this run's data | source: init_from's
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
    task: str = "classification"  # classification | segmentation (a mask per image; image only)
    modality: str = "image+meta"  # image | meta | image+meta
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def uses_image(self) -> bool:
        return self.modality in ("image", "image+meta")

    @property
    def uses_meta(self) -> bool:
        return self.modality in ("meta", "image+meta")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


CHOICES = {
    "modality": MODALITIES,
    "data.on_missing": ("error", "drop"),
    "data.verify": ("decode", "exists", "none"),
    "data.split_by": ("group", "image"),
    "data.near_duplicates": ("sources", "all", "off"),
    "data.geometry": ("crop", "squash", "pad"),
    "data.normalize": ("dataset", "imagenet", "minus1_1"),
    "data.resample": (None, "random", "smote", "adasyn"),
    "model.fusion": FUSIONS,
    "model.init_normalizer": ("own", "source"),
    "model.dtype": ("float32", "bfloat16"),
    "train.optimizer": ("adam", "adamw", "sgd", "rmsprop", "nadam"),
    "train.schedule": ("cosine", "constant", "step", "plateau"),
}


def _choices(path: str):
    """A key's allowed values; the task keys read the task table (tasks.py) when asked, so
    a task registered later is a choice too."""
    if path == "task":
        return tuple(task_table.TASKS)
    if path == "train.loss":
        return tuple(dict.fromkeys(x for t in task_table.TASKS.values() for x in t.losses))
    if path == "train.early_stop_metric":
        return tuple(dict.fromkeys(x for t in task_table.TASKS.values() for x in t.metrics))
    return CHOICES.get(path)


# Inclusive bounds (None: unbounded); `>0` marks a bound that excludes zero.
RANGES = {
    "data.val": (0.0, 0.9), "data.test": (0.0, 0.9), "data.image_size": (8, 4096),
    "data.batch_size": (1, None), "data.workers": (0, 64), "data.balance_alpha": (0.0, 1.0),
    "model.dropout": (0.0, 0.95), "model.modality_dropout": (0.0, 1.0),
    "train.epochs": (1, None), "train.max_steps": (1, None), "train.learning_rate": (">0", 10.0),
    "train.weight_decay": (0.0, None), "train.warmup_epochs": (0.0, None),
    "train.clip_norm": (">0", None), "train.label_smoothing": (0.0, 0.99),
    "train.focal_gamma": (0.0, None), "train.checkpoint_every_steps": (1, None),
    "train.freeze_encoder_epochs": (0, None), "train.finetune_lr_scale": (0.0, None),
    "train.ema_decay": (">0", 0.99999), "train.patience": (1, None), "train.keep_best": (1, None),
    "train.log_every": (1, None), "data.fold": (0, None), "data.folds": (3, 50),
}


def _check_range(path: str, value) -> None:
    if path not in RANGES or value is None:
        return
    if isinstance(value, list):  # a rectangle, [height, width]: each side in range
        if len(value) != 2 or any(not isinstance(v, int) or isinstance(v, bool) for v in value):
            raise ConfigError(f"{path}: {value!r} must be one int (a square) or "
                              f"[height, width] (two ints)")
        for v in value:
            _check_range(path, v)
        return
    low, high = RANGES[path]
    positive = low == ">0"
    low = 0 if positive else low
    if (value <= low if positive else low is not None and value < low) or \
            (high is not None and value > high):
        bound = f"> {low}" if positive else f">= {low}" if high is None else f"in [{low}, {high}]"
        if positive and high is not None:
            bound = f"in ({low}, {high}]"
        raise ConfigError(f"{path}: {value!r} is out of range (must be {bound})")


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
        value = float(value)
    if hint is float and isinstance(value, float) and not math.isfinite(value):
        # NaN passes every range check (all its comparisons are false) and fails later
        raise ConfigError(f"{path}: {value!r} is not a finite number")
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
    unknown = sorted(str(k) for k in data if k not in names)  # YAML keys may be null or 1
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
            _check_range(prefix + name, kwargs[name])
            allowed = _choices(prefix + name)
            if allowed and kwargs[name] not in allowed:
                raise ConfigError(f"{prefix}{name}: {value!r} is not one of {list(allowed)}")
    return cls(**kwargs)


def _set_path(tree: dict, dotted: str, value) -> None:
    """Set `a.b.c` in the tree; a number indexes a list (data.sources.1.options.root)."""
    keys = str(dotted).split(".")
    node = tree
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(f"--set {dotted}: {key!r} is not an entry of "
                                  f"{'.'.join(keys[:i])} (0..{len(node) - 1})")
            key = int(key)
        elif not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {keys[i - 1]} is not a section")
        if last:
            node[key] = value
        else:
            node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` with the value parsed as YAML (`[a, b]` a list, `null` None)."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    if not raw.strip():
        return key.strip(), ""
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key.strip()}: {raw!r} is not a YAML value "
                          f"({_yaml_problem(exc)})",
                          f"quote a text value: --set '{key.strip()}=\"...\"'") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's problem in one short phrase (its message spans several lines)."""
    return " ".join(str(getattr(exc, "problem", None) or exc).split())


def load_config(path: str | None = None, overrides=(), smoke: bool = False,
                modality: str | None = None, task: str | None = None) -> Config:
    """Read a YAML config, apply smoke overrides, then `key=value` overrides, and check it."""
    tree = _read_config_file(path) if path else {}
    smoke_overrides = tree.pop("smoke", {}) or {}
    if not isinstance(smoke_overrides, dict):
        raise ConfigError(f"{path}: smoke: expected a mapping of key: value overrides, got "
                          f"{smoke_overrides!r}")
    if smoke:
        for key, value in smoke_overrides.items():
            _set_path(tree, key, value)
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        _set_path(tree, key, value)
    if modality:
        tree["modality"] = modality
    if task:
        tree["task"] = task
    return config_from_dict(tree)


def _read_config_file(path: str) -> dict:
    """The YAML mapping in a config file; a missing, unreadable or non-mapping file is a
    ConfigError naming it."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            tree = yaml.safe_load(f)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})",
                          "save the config as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({_yaml_problem(exc)})") from None
    if not isinstance(tree or {}, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data, model, train), got "
                          f"{type(tree).__name__}", "see configs/ham10000_sample.yaml")
    return tree or {}


def config_from_dict(tree: dict) -> Config:
    """A checked `Config` from a mapping (a parsed YAML file), `${VAR}` paths expanded:
    the defaults' too (data.options.root is `${MULTIMODAL_SAMPLE}` when a file omits it)."""
    tree = expand(tree)
    merged = _over(expand(Config().to_dict()), tree)
    one_source(tree.get("data") if isinstance(tree, dict) else None, merged)
    cfg = _build(Config, merged)
    _check_task(cfg)
    check_sources(cfg.data)
    for column, kind in (cfg.data.metadata_encoding or {}).items():
        if kind != "binned":
            raise ConfigError(f"data.metadata_encoding: {column}: unknown encoding {kind!r}; "
                              "known: binned",
                              f"--set \"data.metadata_encoding={{{column}: binned}}\"")
    if cfg.data.val + cfg.data.test >= 0.95:
        raise ConfigError(f"data.val ({cfg.data.val}) + data.test ({cfg.data.test}) leave no "
                          "training data (their sum must be below 0.95)")
    return cfg


def _over(defaults: dict, tree: dict) -> dict:
    """`tree` over `defaults`, section by section (a section's own mapping values, such as
    data.options, replace the default whole)."""
    if not isinstance(tree, dict):
        return tree
    return {**defaults, **{k: _over(defaults[k], v) if isinstance(defaults.get(k), dict)
                           and k in ("data", "model", "train") else v for k, v in tree.items()}}


def _check_task(cfg: Config) -> None:
    """The loss and early-stopping metric must be the task's; a segmentation model sees
    images only, so its modality is `image` whatever the file says."""
    task = task_table.get(cfg.task)
    for key, value, allowed in (("train.loss", cfg.train.loss, task.losses),
                                ("train.early_stop_metric", cfg.train.early_stop_metric,
                                 task.metrics)):
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not a {cfg.task} choice {list(allowed)}",
                              f"--set {key}={allowed[-1] if key == 'train.loss' else allowed[0]}")
    if task.images_only:
        cfg.modality = "image"
    if task.output == "masks" and cfg.model.segmenter is None:
        cfg.model.segmenter = cfg.model.encoder  # the older spelling: model.encoder: unet


def config_from_cli(path: str | None, overrides=(), smoke: bool = False,
                    modality: str | None = None, features: str | None = None,
                    task: str | None = None) -> Config:
    """`load_config` for the scripts: `--features CACHE` becomes `model.features`, `--task`
    the config's `task`."""
    extra = [f"model.features={features}"] if features else []
    return load_config(path, [*overrides, *extra], smoke=smoke, modality=modality, task=task)


def config_differences(a: Config, b: Config) -> list[str]:
    """Dotted keys whose values differ between two configs (`key: a -> b`)."""
    def flat(tree, prefix=""):
        for key, value in tree.items():
            if isinstance(value, dict) and key in ("data", "model", "train"):
                yield from flat(value, f"{key}.")
            else:
                yield prefix + key, value
    left, right = dict(flat(a.to_dict())), dict(flat(b.to_dict()))
    return [f"{k}: {left[k]!r} -> {right[k]!r}" for k in left if left[k] != right.get(k)]


def expand(value):
    """Expand ${VAR} in strings (recursively), with the project's defaults; called by
    `config_from_dict` only."""
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
