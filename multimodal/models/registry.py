"""Image encoders by name, timm style: `create_encoder("resnet18", rngs=...)`.

One module per family. A family module declares itself once with `register_family`
(the module classes it builds, its default preprocessing, its pretrained-weight loader
or none) and registers each encoder with the family's decorator:

    RESNET = register_family("resnet", modules=(ResNet,), default_cfg=DefaultCfg(224))

    @RESNET.register
    def resnet18(*, dtype=jnp.float32, rngs, width=1.0, dropout=0.0): ...

`import multimodal.models` imports every family module, so `ENCODERS` and `FAMILIES`
are complete from the first import on.

Every encoder is built by a factory `(*, dtype, rngs, **options)` (checked when it is
registered) and is an `nnx.Module` with attributes `embed_dim` and `layer_order`
(top-level layers in forward order, used by two-stage fine-tuning), and
`__call__(images, *, rngs=None) -> [B, embed_dim]`.

`ENCODERS[name]` is an `EncoderEntry`: call it like the factory; `.default_cfg`
holds the preprocessing defaults (timm's `default_cfg`), `.family` its family.

Segmentation models (`task: segmentation`) register the same way in their own tables: a
family declared with `register_family(..., task="segmentation")` puts its models in
`SEGMENTERS` (its family in `SEGMENTATION_FAMILIES`), never among the encoders. A segmenter
is an `nnx.Module` with `encoder` (its downsampling path, with `layer_order`) and
`__call__(images, *, rngs=None) -> [B, H, W, 1]` mask logits (`unet.py`).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from multimodal.errors import ConfigError

NORMALIZE_KINDS = ("dataset", "imagenet", "minus1_1")  # the `data.normalize` settings


@dataclasses.dataclass(frozen=True)
class DefaultCfg:
    """An encoder's preprocessing defaults (informative: the config still decides).

    `input_size`: the square side (px) the family was designed or pretrained at.
    `normalize`: the `data.normalize` setting that fits: `dataset` (statistics fitted on the
    training images, for training from scratch), `minus1_1` or `imagenet`.
    `mean`, `std`: the exact per-channel statistics on the 0-255 scale when pretrained
    weights fix them (None: fitted on the data). `min_input_size`: the smallest side the
    encoder accepts, when it refuses smaller ones.
    """
    input_size: int
    normalize: str = "dataset"
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    min_input_size: int | None = None

    def __post_init__(self):
        if self.normalize not in NORMALIZE_KINDS:
            raise ValueError(f"normalize must be one of {NORMALIZE_KINDS}, not {self.normalize!r}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither")


@dataclasses.dataclass(frozen=True)
class Weights:
    """A family's pretrained-weight loader (what `model.pretrained` may name for it).

    `accepts`: the accepted names, in words (error messages list it).
    `claims(name)`: whether `name` is one of this family's weights (right variant or not).
    `check(name, encoder_name)`: refuse, before any work, weights that cannot exist or
    cannot fit `encoder_name` (a ConfigError); called only for a claimed name and an
    encoder of this family.
    `load(encoder, name) -> unused tensor names`: read the weights into the encoder.
    """
    accepts: str
    claims: Callable[[str], bool]
    check: Callable[[str, str], None]
    load: Callable[[Any, str], list[str]]


@dataclasses.dataclass(frozen=True, eq=False)
class Family:
    """One family module: the classes it builds, its defaults, its weights (or None)."""
    name: str
    modules: tuple[type, ...]
    default_cfg: DefaultCfg
    weights: Weights | None = None
    encoders: list[str] = dataclasses.field(default_factory=list)
    task: str = "classification"  # or "segmentation": its models are SEGMENTERS

    def register(self, fn: Callable | None = None, /, *, name: str | None = None, **cfg):
        """Decorator registering an encoder factory of this family, under `name` (default:
        the function's name); `cfg` overrides fields of the family's `default_cfg`."""
        def wrap(factory):
            register_encoder(name or factory.__name__, family=self, **cfg)(factory)
            return factory
        return wrap(fn) if fn is not None else wrap

    def describe_weights(self) -> str:
        return (f"the {self.name} family accepts {self.weights.accepts}" if self.weights
                else f"the {self.name} family has no pretrained weights")


@dataclasses.dataclass(frozen=True, eq=False)
class EncoderEntry:
    """A registered encoder: call it like its factory."""
    name: str
    factory: Callable
    family: Family
    default_cfg: DefaultCfg

    def __call__(self, **kwargs):
        return self.factory(**kwargs)


ENCODERS: dict[str, EncoderEntry] = {}
FAMILIES: dict[str, Family] = {}
SEGMENTERS: dict[str, EncoderEntry] = {}  # image -> mask logits (task: segmentation)
SEGMENTATION_FAMILIES: dict[str, Family] = {}


# (models, families) of each task whose networks register by family
TASK_TABLES = {"classification": (ENCODERS, FAMILIES),
               "segmentation": (SEGMENTERS, SEGMENTATION_FAMILIES)}


def _tables(task: str) -> tuple[dict, dict]:
    """(models, families) of a task."""
    if task not in TASK_TABLES:
        raise ValueError(f"task must be one of {sorted(TASK_TABLES)}, not {task!r}")
    return TASK_TABLES[task]


def register_family(name: str, *, modules: tuple[type, ...], default_cfg: DefaultCfg,
                    weights: Weights | None = None, task: str = "classification") -> Family:
    _, families = _tables(task)
    if name in FAMILIES or name in SEGMENTATION_FAMILIES:
        raise ValueError(f"encoder family {name!r} registered twice")
    family = Family(name, tuple(modules), default_cfg, weights, task=task)
    families[name] = family
    return family


def _check_constructor(name: str, factory: Callable) -> None:
    """Every factory is `(*, dtype, rngs, **options)`: keyword-only, with dtype and rngs."""
    params = inspect.signature(factory).parameters.values()
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD,
                                                       p.VAR_POSITIONAL)]
    keyword = {p.name for p in params if p.kind == p.KEYWORD_ONLY}
    if positional or not {"dtype", "rngs"} <= keyword:
        raise TypeError(f"encoder {name!r}: a factory takes (*, dtype, rngs, **options); "
                        f"{factory.__qualname__} has positional {positional}, "
                        f"keyword-only {sorted(keyword)}")


def register_encoder(name: str, *, family: Family, **cfg):
    """Decorator registering `factory` as encoder `name` of `family` (see `Family.register`)."""
    def wrap(factory):
        entries, families = _tables(family.task)
        if name in entries:
            raise ValueError(f"encoder {name!r} registered twice")
        if families.get(family.name) is not family:
            raise ValueError(f"encoder {name!r}: family {family.name!r} is not registered")
        _check_constructor(name, factory)
        entries[name] = EncoderEntry(name, factory, family,
                                     dataclasses.replace(family.default_cfg, **cfg))
        family.encoders.append(name)
        return factory
    return wrap


def encoder_info(name: str) -> EncoderEntry:
    """The registry entry of encoder `name` (`.default_cfg`, `.family`)."""
    if name not in ENCODERS:
        raise ConfigError(f"model.encoder: unknown encoder {name!r}; known: {sorted(ENCODERS)}")
    return ENCODERS[name]


def create_encoder(name: str, **kwargs):
    return encoder_info(name)(**kwargs)


def segmenter_info(name: str) -> EncoderEntry:
    """The registry entry of segmentation model `name` (`model.segmenter` of a segmentation
    config)."""
    if name not in SEGMENTERS:
        raise ConfigError(f"model.segmenter: {name!r} is not a segmentation model; known: "
                          f"{sorted(SEGMENTERS)}", "task: segmentation trains one of these")
    return SEGMENTERS[name]


def create_segmenter(name: str, **kwargs):
    return segmenter_info(name)(**kwargs)


def family_of(encoder) -> Family:
    """The family whose module classes built `encoder` (an encoder instance)."""
    for family in FAMILIES.values():
        if isinstance(encoder, family.modules):
            return family
    raise ValueError(f"{type(encoder).__name__} is not an encoder of a registered family "
                     f"({sorted(FAMILIES)})")
