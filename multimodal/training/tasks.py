"""Training's part of the task table (multimodal/tasks.py): for each task, the static part
of its loss, its train step, its validation, its epoch line and its checks before work.
The trainer asks `training_task(cfg)` and never branches on the task's name."""

from __future__ import annotations

from typing import Callable, NamedTuple

from multimodal import tasks
from multimodal.config import Config
from multimodal.training import classifier, segmenter


class TrainingTask(NamedTuple):
    loss_spec: Callable  # cfg -> the loss's static (hashable) part, a jit static argument
    step: Callable  # (spec, model, optimizer, batch, key, class_w, features_from) -> (loss, figure)
    validate: Callable  # (cfg, model, val_data, mesh, val_labels, features_from) -> metrics
    epoch_line: Callable  # epoch record -> the line printed after validation
    figure: str  # what the step's second output is, logged as train_<figure>
    check: Callable  # cfg -> None, or a ConfigError before any data is read


TRAINING: dict[str, TrainingTask] = {}


def register(name: str, task: TrainingTask) -> TrainingTask:
    TRAINING[name] = task
    return task


def training_task(cfg: Config) -> TrainingTask:
    return tasks.part(TRAINING, cfg.task, "training/tasks.py TRAINING")


def _segmentation_validate(cfg, model, val_data, mesh, val_labels, features_from=None):
    return segmenter.validate(model, val_data, mesh, segmenter.SegLossSpec.of(cfg))


register("classification", TrainingTask(
    classifier.LossSpec.of, classifier.train_step, classifier.validate,
    classifier.epoch_line, "accuracy", classifier.check))
register("segmentation", TrainingTask(
    segmenter.SegLossSpec.of, segmenter.train_step, _segmentation_validate,
    segmenter.epoch_line, "dice", segmenter.check))
