"""The train loop: one jitted step over a device mesh, Orbax checkpoints, early stopping.

Both tasks share it; where segmentation differs (its model, loss, step and validation)
the loop calls training/segmentation.py."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from multimodal.config import Config
from multimodal.data import pipeline
from multimodal.data.augment import parse_ops
from multimodal.errors import ConfigError, RunError
from multimodal.models import ENCODERS, build_model, build_segmenter, check_segmenter
from multimodal.models.pretrained import check_pretrained_name
from multimodal.training import losses, mesh as mesh_lib, segmentation
from multimodal.training.checkpoint import RunCheckpoints, write_run_files
from multimodal.training.curves import plot_curves
from multimodal.training.features import FeatureCache
from multimodal.data.inputs import build_inputs, example_loader
from multimodal.metrics import classification_metrics, softmax
from multimodal.training.logs import Board
from multimodal.training.optim import ema_weights, make_optimizer, use_weights
from multimodal.training.predict import predict_logits
from multimodal.training.progress import Progress


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


@partial(jax.jit, static_argnums=(0, 1, 6))
def _pure_step(graphdef, spec, state, batch, key, class_w, features_from):
    model, optimizer = nnx.merge(graphdef, state)
    step = segmentation.train_step if isinstance(spec, segmentation.SegLossSpec) else train_step
    loss, accuracy = step(spec, model, optimizer, batch, key, class_w, features_from)
    return nnx.state((model, optimizer)), loss, accuracy


class Stepper:
    """`train_step` jitted over the split (model, optimizer) state.

    nnx.jit walks the Python object graph on every call: about 40 ms a step for a
    Lite0-sized model on CPU, most of a step when heads train on cached features
    (benchmarks/step_overhead.py). Splitting once leaves jax.jit only the arrays to pass;
    `sync` writes them back into the objects before anything else reads them.
    """

    def __init__(self, model, optimizer, features_from=None):
        self.model, self.optimizer, self.features_from = model, optimizer, features_from
        self.graphdef, self.state = nnx.split((model, optimizer))

    def __call__(self, spec: LossSpec, batch, key, class_w):
        self.state, loss, accuracy = _pure_step(self.graphdef, spec, self.state, batch, key,
                                                class_w, self.features_from)
        return loss, accuracy

    def sync(self):
        nnx.update((self.model, self.optimizer), self.state)


def end_epoch(cfg, model, val_data, mesh, val_labels, progress: Progress, running, rate,
              steps_per_epoch, ema=None, features_from=None) -> dict:
    """Validate, record the epoch in `progress` and apply early stopping."""
    progress.epoch = math.ceil(progress.step / steps_per_epoch)
    segmenting = cfg.task == "segmentation"
    model.eval()
    with use_weights(model, ema):
        if segmenting:
            val = segmentation.validate(model, val_data, mesh, segmentation.SegLossSpec.of(cfg))
        else:
            logits, _ = predict_logits(model, val_data, mesh, features_from=features_from)
            val = classification_metrics(val_labels, softmax(logits))
    model.train()
    sums = np.asarray(jax.device_get(running), np.float64)
    record = {"epoch": progress.epoch, "step": progress.step,
              "train_loss": float(sums[0] / max(sums[2], 1)),
              "train_dice" if segmenting else "train_accuracy": float(sums[1] / max(sums[2], 1)),
              **{f"val_{k}": v for k, v in val.items()}, "images_per_s": rate}
    progress.history.append(record)
    score = val[cfg.train.early_stop_metric]
    if score > progress.best:
        progress.best, progress.bad_epochs = score, 0
    else:
        progress.bad_epochs += 1
    if cfg.train.patience and progress.bad_epochs >= cfg.train.patience:
        progress.stopped = f"early stop at epoch {progress.epoch}"
    tqdm.write(segmentation.epoch_line(record) if segmenting else
               f"epoch {record['epoch']}: loss {record['train_loss']:.3f}, val balanced acc "
               f"{val['balanced_accuracy']:.3f}, val AUC {val['macro_auc']:.3f}")
    return record


def class_factors(cfg, classes) -> dict[int, float] | None:
    if not cfg.data.oversample:
        return None
    unknown = sorted(set(cfg.data.oversample) - set(classes))
    if unknown:
        raise ConfigError(f"data.oversample: {unknown} are not classes {list(classes)}")
    return {classes.index(c): float(f) for c, f in cfg.data.oversample.items()}


def _sigterm_as_interrupt(*_):
    raise KeyboardInterrupt("SIGTERM")


def check_before_work(cfg: Config, workdir: str, resume: bool, mesh) -> None:
    """Everything that can be refused without reading data: names, the batch over the
    devices, and whether `workdir` holds (or, for --resume, lacks) a run."""
    if cfg.task == "segmentation":
        check_segmenter(cfg.model)
        if cfg.data.resample:
            raise ConfigError("data.resample: synthetic images have no masks; segmentation "
                              "cannot use them", "--set data.resample=null")
    elif cfg.uses_image:
        if cfg.model.encoder not in ENCODERS:
            raise ConfigError(f"model.encoder: unknown encoder {cfg.model.encoder!r}; known: "
                              f"{sorted(ENCODERS)}")
        if cfg.model.pretrained and not cfg.model.features:
            check_pretrained_name(cfg.model.pretrained, cfg.model.encoder)
    parse_ops(cfg.data.augment)
    n = mesh.devices.size
    if cfg.data.batch_size % n or cfg.data.batch_size % jax.process_count():
        raise ConfigError(f"data.batch_size {cfg.data.batch_size} must divide evenly over {n} "
                          f"devices and {jax.process_count()} hosts",
                          f"use --set data.batch_size={max(n, cfg.data.batch_size // n * n)} "
                          "or --devices")
    has_run = RunCheckpoints.latest_step_in(workdir) is not None
    if not resume and has_run:  # a folder whose run died before its first save may start over
        raise RunError(f"{workdir} already holds a run",
                       f"continue it with: python scripts/train.py --workdir {workdir} --resume "
                       "(or choose another --workdir)")
    if resume and not has_run:
        raise RunError(f"--resume: {workdir} holds no checkpoint to continue from",
                       f"start the run without --resume: python scripts/train.py --config CONFIG "
                       f"--workdir {workdir}")


def train(cfg: Config, workdir: str, resume: bool = False, num_devices: int | None = None,
          show_progress: bool = True, on_epoch=None) -> dict:
    """Train a config into `workdir`; return the final summary (also in summary.json).

    `on_epoch(record)`, when given, sees each epoch's metrics record after its checkpoint is
    saved; an exception it raises ends training there (hyperparameter search prunes so)."""
    mesh_lib.init_distributed()
    mesh = mesh_lib.make_mesh(num_devices)
    check_before_work(cfg, workdir, resume, mesh)
    cache = None
    if cfg.model.features and cfg.uses_image:  # heads on cached encoder features
        cache = FeatureCache.open(cfg.model.features)
        cfg = cache.configure(cfg)
    inputs = build_inputs(cfg, workdir, normalizer=cache.normalizer if cache else None)

    def loader(split, train):
        features = cache.for_split(inputs, split, train) if cache else None
        return example_loader(cfg, inputs, split, train, features)

    write_run_files(workdir, cfg.to_dict(), inputs.classes, inputs.meta_encoder,
                    inputs.normalizer)
    n_classes = len(inputs.classes)

    labels = inputs.labels("train")
    plan, steps_per_epoch = pipeline.training_plan(
        labels, n_classes, cfg.train.epochs, cfg.data.batch_size, cfg.train.seed,
        cfg.data.balance_alpha, factors=class_factors(cfg, inputs.classes),
        process_index=jax.process_index(),
        process_count=jax.process_count())
    total_steps = steps_per_epoch * cfg.train.epochs
    if cfg.train.max_steps:
        total_steps = min(total_steps, cfg.train.max_steps)
    local_batch = cfg.data.batch_size // jax.process_count()
    train_data = pipeline.train_dataset(loader("train", True), plan,
                                        local_batch, cfg.data.workers)
    val_data = pipeline.eval_dataset(loader("val", False),
                                     cfg.data.batch_size, jax.process_index(),
                                     jax.process_count(), cfg.data.workers)

    model = (build_segmenter(cfg.model, cfg.train.seed) if cfg.task == "segmentation" else
             build_model(cfg.model, cfg.modality, n_classes, inputs.meta_encoder.dim,
                         cfg.train.seed))
    features_from = cache.features_from if cache else None  # cached rows stand in for images
    if cache:
        cache.check_encoder(model.encoder)
    layer_order = getattr(model.encoder, "layer_order", None) if model.encoder else None
    optimizer = nnx.Optimizer(
        model, make_optimizer(cfg.train, steps_per_epoch, total_steps, layer_order), wrt=nnx.Param)
    class_w = jnp.asarray(losses.class_weights(labels, n_classes) if cfg.train.class_weights
                          else np.ones(n_classes, np.float32))
    ckpt = RunCheckpoints(workdir, cfg.train.early_stop_metric, cfg.train.keep_best)
    restored = ckpt.restore_latest(model, optimizer) if resume else None
    progress = Progress.from_dict(restored) if restored else Progress()
    state = jax.device_put(nnx.state((model, optimizer)), mesh_lib.replicated(mesh))
    nnx.update((model, optimizer), state)

    stepper = Stepper(model, optimizer, features_from)
    iterator = iter(train_data)
    if progress.iterator:
        iterator.set_state(json.loads(progress.iterator))
    key = jax.random.key(cfg.train.seed)
    spec = (segmentation.SegLossSpec.of(cfg) if cfg.task == "segmentation" else
            LossSpec.of(cfg))
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    board = Board(workdir if cfg.train.tensorboard and jax.process_index() == 0 else None)
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    bar = tqdm(total=total_steps, initial=progress.step, unit="step", disable=not show_progress,
               dynamic_ncols=True, desc=cfg.name)

    # Epoch sums of loss/accuracy/steps stay on device and go into checkpoints, so a
    # resumed epoch reports the same training loss as an uninterrupted one.
    running = jnp.asarray(progress.running, jnp.float32)

    def snapshot():
        return {**progress.to_dict(), "iterator": json.dumps(iterator.get_state()),
                "running": [float(x) for x in jax.device_get(running)]}

    try:
        seen, t0 = 0, time.perf_counter()
        while progress.step < total_steps and progress.stopped is None:
            batch = next(iterator)
            loss, acc = stepper(spec, mesh_lib.shard_batch(batch, mesh), key, class_w)
            progress.step += 1
            running = running + jnp.stack([loss, acc, 1.0])
            seen += cfg.data.batch_size
            if progress.step % cfg.train.log_every == 0:
                bar.set_postfix(loss=f"{float(loss):.3f}",
                                img_s=f"{seen / (time.perf_counter() - t0):.0f}")
            bar.update(1)
            if progress.step % steps_per_epoch == 0 or progress.step == total_steps:
                stepper.sync()
                ema = ema_weights(optimizer)
                record = end_epoch(cfg, model, val_data, mesh, inputs.labels("val"), progress,
                                   running, seen / (time.perf_counter() - t0), steps_per_epoch, ema,
                                   features_from)
                running, seen, t0 = jnp.zeros(3), 0, time.perf_counter()
                metric = cfg.train.early_stop_metric
                ckpt.save(progress.step, model, optimizer, snapshot(),
                          metrics={metric: float(record[f"val_{metric}"])}, best_weights=ema)
                board.write(record)
                if jax.process_index() == 0:
                    with open(metrics_path, "w") as f:  # the history is the truth on resume
                        f.writelines(json.dumps(r) + "\n" for r in progress.history)
                if on_epoch is not None:
                    on_epoch(record)
            elif cfg.train.checkpoint_every_steps and \
                    progress.step % cfg.train.checkpoint_every_steps == 0:
                stepper.sync()
                ckpt.save(progress.step, model, optimizer, snapshot())
    except KeyboardInterrupt:
        stepper.sync()
        ckpt.save(progress.step, model, optimizer, snapshot())
        ckpt.wait()
        print(f"\ninterrupted: saved step {progress.step}; continue with --resume", flush=True)
        raise
    finally:
        stepper.sync()
        bar.close()
        board.close()
        signal.signal(signal.SIGTERM, previous)
        ckpt.wait()
        ckpt.close()
    summary = {"steps": progress.step, "epochs": progress.epoch, "best_" +
               cfg.train.early_stop_metric: progress.best, "stopped": progress.stopped,
               "last": progress.history[-1] if progress.history else None}
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        plot_curves(progress.history, os.path.join(workdir, "curves.png"))
    return summary
