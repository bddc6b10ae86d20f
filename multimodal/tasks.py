"""The task table: a task's name keys what it is, and each layer keeps its own part of
what it needs under the same name (models: the network a task trains, models/__init__.py;
the run layer: what it predicts, run/predict.py; training: loss, step and validation,
training/tasks.py; evaluation: its evaluation, evaluation/evaluate.py). The trainer, the
run layer and the inputs ask these tables instead of branching on the name.

Adding a task is one new file that registers its part in each table (tests/test_tasks.py
adds a multi-label task so).
"""

from __future__ import annotations

import dataclasses

from multimodal.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    output: str  # "classes": a probability per class | "masks": a mask per image
    losses: tuple[str, ...]  # train.loss choices; the last is the suggestion on a bad one
    metrics: tuple[str, ...]  # train.early_stop_metric choices; the first is the default
    masks: bool = False  # examples carry the lesion mask (inputs read the dataset's masks)
    images_only: bool = False  # the model sees no metadata: modality is forced to `image`


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    TASKS[task.name] = task
    return task


def get(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"task: {name!r} is not one of {sorted(TASKS)}",
                          "set --task classification (or segmentation)")
    return TASKS[name]


def part(table: dict, name: str, where: str):
    """A layer's part of the task table for task `name` (`where`: the table, for the
    message); a task registered here without that part is a ConfigError."""
    name = get(name).name
    if name not in table:
        raise ConfigError(f"task {name!r} has no entry in {where}")
    return table[name]


CLASSIFICATION = register(Task(
    "classification", "classes", ("cross_entropy", "focal"),
    ("balanced_accuracy", "macro_auc", "accuracy", "weighted_f1")))
# a lesion mask per image (U-Net), images only
SEGMENTATION = register(Task(
    "segmentation", "masks", ("bce", "dice", "bce_dice"), ("dice", "iou"), masks=True,
    images_only=True))
