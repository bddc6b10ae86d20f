"""Models: image encoders by name, the metadata MLP and fusion classifiers; segmentation
models (U-Net) by name."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

# every family module registers its encoders when imported: ENCODERS and FAMILIES are
# complete from the first import of the package on (timm style)
from multimodal.models import efficientnet_lite, inception, resnet, small_cnn, vgg, xception  # noqa: F401
from multimodal.models import unet  # noqa: F401  (segmentation models: SEGMENTERS)
from multimodal.models.fusion import Classifier
from multimodal.models.pretrained import check_pretrained_name, load_pretrained_encoder
from multimodal import tasks as task_table
from multimodal.errors import ConfigError
from multimodal.models.registry import (ENCODERS, FAMILIES, SEGMENTERS, DefaultCfg, create_encoder,
                                        create_segmenter, encoder_info, segmenter_info)

__all__ = ["ENCODERS", "FAMILIES", "SEGMENTERS", "TASK_MODELS", "Classifier", "DefaultCfg",
           "build_for_task", "build_model",
           "build_segmenter", "check_pretrained_name", "check_segmenter", "create_encoder",
           "create_segmenter", "encoder_info", "load_pretrained_encoder", "segmenter_info"]


def build_model(model_cfg, modality: str, num_classes: int, meta_dim: int, seed: int = 0
                ) -> Classifier:
    """The classifier a config describes (`model_cfg` is a `ModelConfig`).

    With `model_cfg.pretrained` the image encoder starts from ImageNet weights.
    """
    model = Classifier(
        num_classes, modality, meta_dim=meta_dim, encoder=model_cfg.encoder,
        encoder_options=model_cfg.encoder_options, fusion=model_cfg.fusion,
        meta_hidden=tuple(model_cfg.meta_hidden), dropout=model_cfg.dropout,
        modality_dropout=model_cfg.modality_dropout,
        dtype=jnp.bfloat16 if model_cfg.dtype == "bfloat16" else jnp.float32,
        rngs=nnx.Rngs(seed))
    if model_cfg.pretrained and model.encoder is not None:
        load_pretrained_encoder(model.encoder, model_cfg.pretrained)
    return model


def check_segmenter(model_cfg) -> None:
    """Refuse, before any work, a `model.segmenter` that is no segmentation model, or
    `model.pretrained` weights its family cannot load."""
    name_ = model_cfg.segmenter or model_cfg.encoder
    if model_cfg.encoder not in (type(model_cfg)().encoder, name_):  # would be ignored
        raise ConfigError(f"model.encoder={model_cfg.encoder} is a classifier's encoder; a "
                          f"segmentation config names its model in model.segmenter ({name_})",
                          f"--set model.segmenter={model_cfg.encoder}")
    entry = segmenter_info(name_)
    name, weights = model_cfg.pretrained, entry.family.weights
    if name and not model_cfg.features:
        if weights is None or not weights.claims(name):
            raise ConfigError(f"model.pretrained: no weights named {name!r} for "
                              f"{name_}; " + (f"the {entry.family.name} family "
                              f"accepts {weights.accepts}" if weights else "it has none"))
        weights.check(name, name_)
    if model_cfg.features:
        raise ConfigError("model.features: segmentation trains on images, not a feature cache",
                          "drop --features / model.features")


def build_segmenter(model_cfg, seed: int = 0):
    """The segmentation model a config describes (`model.segmenter` names it in SEGMENTERS,
    `model.encoder_options` its options); `model.pretrained` loads its encoder's weights."""
    entry = segmenter_info(model_cfg.segmenter or model_cfg.encoder)
    model = entry(dtype=jnp.bfloat16 if model_cfg.dtype == "bfloat16" else jnp.float32,
                  rngs=nnx.Rngs(seed), **model_cfg.encoder_options)
    if model_cfg.pretrained:
        entry.family.weights.load(model, model_cfg.pretrained)
    return model


# the models layer's part of the task table (multimodal/tasks.py): the network a task trains
def _classifier(cfg, n_classes: int, meta_dim: int):
    return build_model(cfg.model, cfg.modality, n_classes, meta_dim, cfg.train.seed)


def _segmenter(cfg, n_classes: int, meta_dim: int):
    return build_segmenter(cfg.model, cfg.train.seed)


TASK_MODELS = {"classification": _classifier, "segmentation": _segmenter}


def build_for_task(cfg, n_classes: int, meta_dim: int):
    """The network `cfg.task` trains (TASK_MODELS[task](cfg, n_classes, meta_dim))."""
    return task_table.part(TASK_MODELS, cfg.task, "models.TASK_MODELS")(cfg, n_classes, meta_dim)
