"""The train loop: one jitted step over a device mesh, Orbax checkpoints, early stopping.

Every task shares it: what differs (the model, loss, step, validation and the checks
before work) comes from the task table (training/tasks.py, models.build_for_task)."""

from __future__ import annotations

import json
import math
import signal
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from multimodal.config import Config
from multimodal.data.pipeline import loaders
from multimodal.data.images.augment import parse_ops
from multimodal.data.pipeline.inputs import build_inputs, example_loader
from multimodal.errors import ConfigError, RunError
from multimodal.models import build_for_task
from multimodal.run import mesh as mesh_lib
from multimodal.run.checkpoint import RunCheckpoints, use_weights
from multimodal.run.features import FeatureCache
from multimodal.run.files import write_history, write_run_files, write_summary
from multimodal.run.init import check_source, init_from_run, source_normalizer, write_record
from multimodal.run.layout import CURVES, path
from multimodal.training import classifier, losses
from multimodal.training.curves import plot_curves
from multimodal.training.logs import Board
from multimodal.training.optim import ema_weights, make_optimizer
from multimodal.training.progress import Progress
from multimodal.training.tasks import training_task


@partial(jax.jit, static_argnums=(0, 1, 2, 7))
def _pure_step(graphdef, step, spec, state, batch, key, class_w, features_from):
    model, optimizer = nnx.merge(graphdef, state)
    loss, figure = step(spec, model, optimizer, batch, key, class_w, features_from)
    return nnx.state((model, optimizer)), loss, figure


class Stepper:
    """The task's train step jitted over the split (model, optimizer) state.

    nnx.jit walks the Python object graph on every call: about 40 ms a step for a
    Lite0-sized model on CPU, most of a step when heads train on cached features
    (benchmarks/speed/step_overhead.py). Splitting once leaves jax.jit only the arrays to pass;
    `sync` writes them back into the objects before anything else reads them.
    """

    def __init__(self, model, optimizer, features_from=None, step=None):
        self.model, self.optimizer, self.features_from = model, optimizer, features_from
        self.step = step or classifier.train_step
        self.graphdef, self.state = nnx.split((model, optimizer))

    def __call__(self, spec, batch, key, class_w):
        self.state, loss, figure = _pure_step(self.graphdef, self.step, spec, self.state, batch,
                                              key, class_w, self.features_from)
        return loss, figure

    def sync(self):
        nnx.update((self.model, self.optimizer), self.state)


def end_epoch(cfg, model, val_data, mesh, val_labels, progress: Progress, running, rate,
              steps_per_epoch, ema=None, features_from=None) -> dict:
    """Validate, record the epoch in `progress` and apply early stopping."""
    progress.epoch = math.ceil(progress.step / steps_per_epoch)
    task = training_task(cfg)
    model.eval()
    with use_weights(model, ema):
        val = task.validate(cfg, model, val_data, mesh, val_labels, features_from)
    model.train()
    sums = np.asarray(jax.device_get(running), np.float64)
    record = {"epoch": progress.epoch, "step": progress.step,
              "train_loss": float(sums[0] / max(sums[2], 1)),
              f"train_{task.figure}": float(sums[1] / max(sums[2], 1)),
              **{f"val_{k}": v for k, v in val.items()}, "images_per_s": rate}
    progress.history.append(record)
    score = val[cfg.train.early_stop_metric]
    if score > progress.best:
        progress.best, progress.bad_epochs = score, 0
    else:
        progress.bad_epochs += 1
    if cfg.train.patience and progress.bad_epochs >= cfg.train.patience:
        progress.stopped = f"early stop at epoch {progress.epoch}"
    tqdm.write(task.epoch_line(record))
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
    training_task(cfg).check(cfg)
    check_source(cfg)
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
    inputs = build_inputs(cfg, workdir, normalizer=cache.normalizer if cache else
                          source_normalizer(cfg))

    def loader(split, train):
        features = cache.for_split(inputs, split, train) if cache else None
        return example_loader(cfg, inputs, split, train, features)

    write_run_files(workdir, cfg.to_dict(), inputs.classes, inputs.meta_encoder,
                    inputs.normalizer)
    n_classes = len(inputs.classes)

    labels = inputs.labels("train")
    plan, steps_per_epoch = loaders.training_plan(
        labels, n_classes, cfg.train.epochs, cfg.data.batch_size, cfg.train.seed,
        cfg.data.balance_alpha, factors=class_factors(cfg, inputs.classes),
        process_index=jax.process_index(),
        process_count=jax.process_count())
    total_steps = steps_per_epoch * cfg.train.epochs
    if cfg.train.max_steps:
        total_steps = min(total_steps, cfg.train.max_steps)
    local_batch = cfg.data.batch_size // jax.process_count()
    train_data = loaders.train_dataset(loader("train", True), plan,
                                       local_batch, cfg.data.workers)
    val_data = loaders.eval_dataset(loader("val", False),
                                    cfg.data.batch_size, jax.process_index(),
                                    jax.process_count(), cfg.data.workers)

    model = build_for_task(cfg, n_classes, inputs.meta_encoder.dim)
    if cfg.model.init_from and not resume:  # a resumed run's checkpoint holds its weights
        write_record(workdir, init_from_run(model, cfg, inputs.classes, inputs.meta_encoder))
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

    task = training_task(cfg)
    stepper = Stepper(model, optimizer, features_from, task.step)
    iterator = iter(train_data)
    if progress.iterator:
        iterator.set_state(json.loads(progress.iterator))
    key = jax.random.key(cfg.train.seed)
    spec = task.loss_spec(cfg)
    board = Board(workdir if cfg.train.tensorboard and jax.process_index() == 0 else None)
    bar = tqdm(total=total_steps, initial=progress.step, unit="step", disable=not show_progress,
               dynamic_ncols=True, desc=cfg.name)

    # Epoch sums of loss/accuracy/steps stay on device and go into checkpoints, so a
    # resumed epoch reports the same training loss as an uninterrupted one.
    running = jnp.asarray(progress.running, jnp.float32)

    def snapshot():
        return {**progress.to_dict(), "iterator": json.dumps(iterator.get_state()),
                "running": [float(x) for x in jax.device_get(running)]}

    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)  # restored in finally
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
                    write_history(workdir, progress.history)
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
        write_summary(workdir, summary)
        plot_curves(progress.history, path(workdir, CURVES))
    return summary
