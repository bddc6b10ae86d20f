"""Optimisers and learning-rate schedules from a `TrainConfig` (all optax)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from multimodal.training.freeze import param_labels


def schedule(cfg, steps_per_epoch: int, total_steps: int):
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if cfg.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, cfg.learning_rate, max(warmup, 1), max(total_steps, warmup + 1),
            end_value=cfg.learning_rate * 0.01)
    constant = optax.linear_schedule(0.0, cfg.learning_rate, max(warmup, 1))
    if cfg.schedule in ("constant", "plateau"):
        return optax.join_schedules([constant, optax.constant_schedule(cfg.learning_rate)],
                                    [max(warmup, 1)])
    if cfg.schedule == "step":  # x0.1 at 50% and 75% of training, as in classic recipes
        return optax.join_schedules([constant, optax.piecewise_constant_schedule(
            cfg.learning_rate, {int(0.5 * total_steps) - warmup: 0.1,
                                int(0.75 * total_steps) - warmup: 0.1})], [max(warmup, 1)])
    raise ValueError(f"unknown schedule {cfg.schedule!r}")


def decay_mask(params):
    """Weight decay on kernels only, not on biases or normalisation parameters."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(cfg, steps_per_epoch: int, total_steps: int,
                   layer_order=None) -> optax.GradientTransformation:
    """The configured optimiser; with two-stage fine-tuning, per-group learning rates.

    `layer_order` is the image encoder's forward order (None without an encoder).
    """
    lr = schedule(cfg, steps_per_epoch, total_steps)
    parts = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm else []
    if cfg.freeze_encoder_epochs or cfg.unfreeze_from:
        if layer_order is None:
            raise ValueError("freeze_encoder_epochs / unfreeze_from need an image encoder")
        frozen_steps = cfg.freeze_encoder_epochs * steps_per_epoch

        def encoder_lr(step):
            return jnp.where(step < frozen_steps, 0.0, cfg.finetune_lr_scale * lr(step))

        parts.append(optax.multi_transform(
            {"head": _core(cfg, lr), "encoder": _core(cfg, encoder_lr),
             "frozen": optax.set_to_zero()},
            lambda params: param_labels(params, layer_order, cfg.unfreeze_from)))
    else:
        parts.append(_core(cfg, lr))
    if cfg.schedule == "plateau":  # halves the rate when the epoch's mean loss stalls
        parts.append(optax.contrib.reduce_on_plateau(factor=0.5, patience=2,
                                                     accumulation_size=steps_per_epoch))
    return optax.chain(*parts)


def _core(cfg, lr) -> optax.GradientTransformation:
    wd = cfg.weight_decay
    optimizers = {
        "adam": lambda: optax.adam(lr),
        "adamw": lambda: optax.adamw(lr, weight_decay=wd, mask=decay_mask),
        "sgd": lambda: optax.chain(optax.add_decayed_weights(wd, decay_mask),
                                   optax.sgd(lr, momentum=0.9, nesterov=True)),
        "rmsprop": lambda: optax.chain(optax.add_decayed_weights(wd, decay_mask),
                                       optax.rmsprop(lr)),
        "nadam": lambda: optax.nadam(lr),
    }
    if cfg.optimizer not in optimizers:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; known: {sorted(optimizers)}")
    return optimizers[cfg.optimizer]()
