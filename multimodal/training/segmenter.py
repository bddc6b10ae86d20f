"""What training a segmentation model (`task: segmentation`) adds to the trainer: the mask
loss, the train step's loss and batch Dice, validation Dice/IoU, and predicted masks over a
dataset (evaluation reads them through the run layer, multimodal/run/predict.py).

Everything else (the mesh, the jitted step over the split state, Orbax checkpoints,
--resume, early stopping) is the classification trainer's own: trainer.py calls these
functions where the tasks differ.

Losses (`train.loss`): `bce` (binary cross-entropy with logits, mean over pixels), `dice`
(soft Dice, 1 - (2 sum(p t) + 1) / (sum p + sum t + 1) per image), `bce_dice` (their sum).
Validation metrics: mean per-image `dice` and `iou` of the masks thresholded at 0.5 (what
`train.early_stop_metric` reads), the pooled ones, and the validation loss.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from multimodal.errors import ConfigError
from multimodal.metrics import segmentation_metrics
from multimodal.models import check_segmenter
from multimodal.run.predict import predict_masks

SMOOTH = 1.0  # soft Dice smoothing: an empty mask predicted empty has loss 0


class SegLossSpec(NamedTuple):
    """The static part of the mask loss (a jit static argument, like trainer.LossSpec)."""
    kind: str  # bce | dice | bce_dice

    @classmethod
    def of(cls, cfg) -> SegLossSpec:
        return cls(cfg.train.loss)

    def __call__(self, logits, target):  # the per-example loss the run layer's predict reads
        return per_example_loss(self, logits, target)


def per_example_loss(spec: SegLossSpec, logits, target):
    """[B] loss of logits and 0/1 targets, both [B, H, W, 1]."""
    logits = logits.astype(jnp.float32).reshape(len(logits), -1)
    target = target.astype(jnp.float32).reshape(len(target), -1)
    loss = jnp.zeros(len(logits))
    if spec.kind in ("bce", "bce_dice"):
        loss = loss + optax.sigmoid_binary_cross_entropy(logits, target).mean(-1)
    if spec.kind in ("dice", "bce_dice"):
        p = jax.nn.sigmoid(logits)
        dice = (2 * (p * target).sum(-1) + SMOOTH) / (p.sum(-1) + target.sum(-1) + SMOOTH)
        loss = loss + 1 - dice
    return loss


def mask_loss(spec: SegLossSpec, logits, target, example_mask=None):
    """Mean loss over the examples (padding, `example_mask` 0, left out)."""
    loss = per_example_loss(spec, logits, target)
    w = jnp.ones_like(loss) if example_mask is None else example_mask.astype(jnp.float32)
    return (loss * w).sum() / jnp.maximum(w.sum(), 1e-8)


def hard_dice(logits, target):
    """Mean per-image Dice of the masks thresholded at 0.5 (both empty: 1)."""
    pred = (logits > 0).reshape(len(logits), -1)
    target = (target > 0.5).reshape(len(target), -1)
    tp = (pred & target).sum(-1)
    total = pred.sum(-1) + target.sum(-1)
    return jnp.where(total > 0, 2 * tp / jnp.maximum(total, 1), 1.0).mean()


def train_step(spec: SegLossSpec, model, optimizer, batch, key, class_w=None,
               features_from=None):
    """One optimiser step on a batch; returns (loss, batch Dice). `class_w` and
    `features_from` are the classification step's arguments, unused here."""
    step_key = jax.random.fold_in(key, optimizer.step[...])

    def compute(model):
        logits = model(batch["image"], rngs=nnx.Rngs(dropout=step_key))
        return mask_loss(spec, logits, batch["seg_mask"], batch.get("mask")), logits

    (loss, logits), grads = nnx.value_and_grad(compute, has_aux=True)(model)
    optimizer.update(model, grads, value=loss)
    return loss, hard_dice(logits, batch["seg_mask"])


def validate(model, val_data, mesh, spec: SegLossSpec) -> dict:
    """Validation Dice/IoU (mean per image and pooled) and loss of a model in eval mode."""
    out = predict_masks(model, val_data, mesh, loss=spec)
    return {**segmentation_metrics(out["pred"], out["target"]),
            "loss": float(out["loss"].mean())}


def epoch_line(record: dict) -> str:
    return (f"epoch {record['epoch']}: loss {record['train_loss']:.3f}, val Dice "
            f"{record['val_dice']:.3f}, val IoU {record['val_iou']:.3f}")


def check(cfg) -> None:
    """A known segmenter, and no synthetic images (they have no masks)."""
    check_segmenter(cfg.model)
    if cfg.data.resample:
        raise ConfigError("data.resample: synthetic images have no masks; segmentation "
                          "cannot use them", "--set data.resample=null")
