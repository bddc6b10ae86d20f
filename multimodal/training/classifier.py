"""What training a classifier (`task: classification`) needs from the trainer: its loss,
train step, validation and epoch line, registered in the training task table (tasks.py)."""

from __future__ import annotations

from typing import NamedTuple

import jax
from flax import nnx

from multimodal.config import Config
from multimodal.errors import ConfigError
from multimodal.metrics import classification_metrics, softmax
from multimodal.models import ENCODERS
from multimodal.models.pretrained import check_pretrained_name
from multimodal.run.predict import predict_logits
from multimodal.training import losses


class LossSpec(NamedTuple):
    """The static (hashable) part of the loss, a jit static argument."""
    kind: str
    label_smoothing: float
    gamma: float

    @classmethod
    def of(cls, cfg: Config) -> LossSpec:
        return cls(cfg.train.loss, cfg.train.label_smoothing, cfg.train.focal_gamma)


def loss_fn(spec: LossSpec, logits, batch, class_w):
    kwargs = dict(weights=class_w, example_mask=batch.get("mask"),
                  label_smoothing=spec.label_smoothing)
    if spec.kind == "focal":
        return losses.focal(logits, batch["label"], gamma=spec.gamma, **kwargs)
    return losses.cross_entropy(logits, batch["label"], **kwargs)


def train_step(spec: LossSpec, model, optimizer, batch, key, class_w, features_from=None):
    step_key = jax.random.fold_in(key, optimizer.step[...])

    def compute(model):
        # Dropout keys derive from (seed, step): a resumed run draws the same ones.
        rngs = nnx.Rngs(dropout=step_key)
        logits = model(batch["image"], batch["metadata"], batch["metadata_mask"],
                       features_from=features_from, rngs=rngs)
        return loss_fn(spec, logits, batch, class_w), logits

    (loss, logits), grads = nnx.value_and_grad(compute, has_aux=True)(model)
    optimizer.update(model, grads, value=loss)
    accuracy = (logits.argmax(-1) == batch["label"]).mean()
    return loss, accuracy


def validate(cfg: Config, model, val_data, mesh, val_labels, features_from=None) -> dict:
    """Validation metrics of a model in eval mode (balanced accuracy, AUC, ...)."""
    logits, _ = predict_logits(model, val_data, mesh, features_from=features_from)
    return classification_metrics(val_labels, softmax(logits))


def epoch_line(record: dict) -> str:
    return (f"epoch {record['epoch']}: loss {record['train_loss']:.3f}, val balanced acc "
            f"{record['val_balanced_accuracy']:.3f}, val AUC {record['val_macro_auc']:.3f}")


def check(cfg: Config) -> None:
    """The encoder and its pretrained weights are known, before any data is read."""
    if not cfg.uses_image:
        return
    if cfg.model.encoder not in ENCODERS:
        raise ConfigError(f"model.encoder: unknown encoder {cfg.model.encoder!r}; known: "
                          f"{sorted(ENCODERS)}")
    if cfg.model.pretrained and not cfg.model.features:
        check_pretrained_name(cfg.model.pretrained, cfg.model.encoder)
