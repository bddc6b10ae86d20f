"""Optimisers and learning-rate schedules from a `TrainConfig` (all optax), and weight EMA."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from multimodal.models.blocks import param_labels
from multimodal.errors import ConfigError


class ParamEmaState(NamedTuple):
    count: Any  # updates averaged so far
    ema: Any


def ema_decay_at(decay: float, count):
    """The decay of update `count` (0-based): min(decay, (1 + count) / (10 + count)).

    Warmed up as TensorFlow's ExponentialMovingAverage does: a fixed 0.998 from the first step
    would keep 0.998^880 = 17% of the *initial* weights after a 4-epoch CPU schedule."""
    return jnp.minimum(decay, (1.0 + count) / (10.0 + count))


def param_ema(decay: float) -> optax.GradientTransformation:
    """Keeps an exponential moving average of the parameters in the optimiser state.

    Placed last in the chain it sees the final updates; living in the optimiser
    state, the average is checkpointed and resumed with it.
    """
    def init(params):
        return ParamEmaState(jnp.zeros([], jnp.int32), jax.tree.map(lambda p: p, params))

    def update(updates, state, params=None):
        new = optax.apply_updates(params, updates)
        d = ema_decay_at(decay, state.count.astype(jnp.float32))
        ema = jax.tree.map(lambda e, p: (d * e + (1 - d) * p).astype(e.dtype), state.ema, new)
        return updates, ParamEmaState(state.count + 1, ema)

    return optax.GradientTransformation(init, update)


def ema_weights(optimizer):
    """The averaged parameters as a pure dict, or None without `train.ema_decay`."""
    state = optimizer.opt_state[-1] if isinstance(optimizer.opt_state, tuple) else None
    return state.ema.to_pure_dict() if isinstance(state, ParamEmaState) else None


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
            raise ConfigError("train.freeze_encoder_epochs / unfreeze_from need an image encoder")
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
    if cfg.ema_decay:
        parts.append(param_ema(cfg.ema_decay))
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
