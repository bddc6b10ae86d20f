"""Adding a task is one file plus a registry line in each layer's table: a tiny multi-label
task (one sigmoid per label, binary cross-entropy, per-label AUC), registered from this
file alone, trains, resumes, loads and evaluates through the shared trainer, run layer and
evaluation entry point, which never name it."""

from __future__ import annotations

import json
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from multimodal import models, tasks
from multimodal.config import load_config
from multimodal.errors import ConfigError

NAME = "multilabel"


class BceSpec(NamedTuple):
    """The loss's static part (a jit static argument)."""
    kind: str = "bce"


def _targets(batch, n):
    # the sample's labels become one-hot label sets; a multi-label dataset brings its own
    return jax.nn.one_hot(batch["label"], n)


def multilabel_step(spec, model, optimizer, batch, key, class_w=None, features_from=None):
    step_key = jax.random.fold_in(key, optimizer.step[...])

    def compute(model):
        logits = model(batch["image"], batch["metadata"], batch["metadata_mask"],
                       rngs=nnx.Rngs(dropout=step_key))
        per_example = optax.sigmoid_binary_cross_entropy(
            logits, _targets(batch, logits.shape[-1])).mean(-1)
        mask = batch["mask"]
        return (per_example * mask).sum() / jnp.maximum(mask.sum(), 1.0), logits

    (loss, logits), grads = nnx.value_and_grad(compute, has_aux=True)(model)
    optimizer.update(model, grads, value=loss)
    agree = ((logits > 0) == (_targets(batch, logits.shape[-1]) > 0.5)).mean()
    return loss, agree


def label_metrics(labels: np.ndarray, logits: np.ndarray) -> dict:
    from sklearn.metrics import roc_auc_score

    targets = np.eye(logits.shape[1])[labels]
    aucs = [roc_auc_score(targets[:, k], logits[:, k]) for k in range(logits.shape[1])
            if 0 < targets[:, k].sum() < len(targets)]
    return {"macro_auc": float(np.mean(aucs)),
            "label_accuracy": float(((logits > 0) == (targets > 0.5)).mean())}


def validate(cfg, model, val_data, mesh, val_labels, features_from=None) -> dict:
    from multimodal.run.predict import predict_logits

    logits, _ = predict_logits(model, val_data, mesh)
    return label_metrics(val_labels, logits)


def evaluate(checkpoint, out_dir, data_config, split, *rest) -> dict:
    import os

    from multimodal.data.pipeline import loaders as pipeline
    from multimodal.data.pipeline.inputs import example_loader
    from multimodal.run import load_run, run_inputs
    from multimodal.run.predict import on_mesh, predict_logits

    run = load_run(checkpoint)
    inputs = run_inputs(run)
    data = pipeline.eval_dataset(example_loader(run.cfg, inputs, split, False),
                                 run.cfg.data.batch_size)
    logits, _ = predict_logits(run.model, data, on_mesh(run.model))
    result = {"task": NAME, "split": split, "n_examples": int(len(logits)),
              "metrics": label_metrics(inputs.labels(split), logits)}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(result, f)
    return result


@pytest.fixture
def multilabel(monkeypatch):
    """The task's registry lines, one per layer (undone after the test)."""
    from multimodal.evaluation import evaluate as evaluation
    from multimodal.training import classifier
    from multimodal.training import tasks as training_tasks

    monkeypatch.setitem(tasks.TASKS, NAME, tasks.Task(NAME, "labels", ("bce",),
                                                     ("macro_auc", "label_accuracy")))
    monkeypatch.setitem(models.TASK_MODELS, NAME, models.TASK_MODELS["classification"])
    monkeypatch.setitem(training_tasks.TRAINING, NAME, training_tasks.TrainingTask(
        lambda cfg: BceSpec(), multilabel_step, validate,
        lambda r: f"epoch {r['epoch']}: val label AUC {r['val_macro_auc']:.3f}", "agreement",
        classifier.check))
    monkeypatch.setitem(evaluation.EVALUATIONS, NAME, evaluate)
    monkeypatch.setitem(evaluation.RESULT_LINES, NAME,
                        lambda r: f"label AUC {r['metrics']['macro_auc']:.3f}")


def _cfg(*extra):
    return load_config("configs/ham10000_sample.yaml",
                       [f"task={NAME}", "train.loss=bce", "train.early_stop_metric=macro_auc",
                        *extra], smoke=True)


def test_an_unregistered_task_is_refused_with_the_known_ones():
    with pytest.raises(ConfigError, match="task: 'multilabel' is not one of"):
        _cfg()


def test_a_task_registered_in_each_table_trains_resumes_and_evaluates(multilabel, tmp_path):
    from multimodal.evaluation.evaluate import evaluate_run, result_line
    from multimodal.run import load_run, predict_split
    from multimodal.run.files import read_history
    from multimodal.training.trainer import train

    with pytest.raises(ConfigError, match="train.loss: 'cross_entropy' is not a multilabel"):
        load_config("configs/ham10000_sample.yaml", [f"task={NAME}"], smoke=True)
    work = str(tmp_path / "run")
    summary = train(_cfg("train.max_steps=2"), work, show_progress=False)
    assert summary["steps"] == 2
    summary = train(_cfg("train.max_steps=4"), work, resume=True, show_progress=False)
    assert summary["steps"] == 4
    history = read_history(work)
    assert {"train_agreement", "val_macro_auc", "val_label_accuracy"} <= set(history[-1])
    run = load_run(work)  # the model is rebuilt from the models layer's table
    assert run.cfg.task == NAME
    with pytest.raises(Exception, match="predicts labels, not classes"):
        predict_split(run, None, "test")  # the run layer reads the task's output kind
    result = evaluate_run(work, str(tmp_path / "eval"))
    assert result["task"] == NAME and result["n_examples"] > 0
    assert 0.0 <= result["metrics"]["macro_auc"] <= 1.0
    assert result_line(result).startswith("label AUC")
