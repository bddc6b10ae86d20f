"""Evaluate a trained run or an ensemble: build the `Context`, run the evaluators
(evaluators.py) in a list, write metrics.json, predictions.csv and the report."""

from __future__ import annotations

import json
import os

from multimodal.ensemble.manifest import (calibration_rows, ensemble_predictions, is_ensemble,
                                          read_manifest)
from multimodal import tasks
from multimodal.ensemble.members import ExternalData
from multimodal.errors import ConfigError, UserError
from multimodal.evaluation.adapt import CLASS_MIX_NOTE, adapt_batchnorm, check_target
from multimodal.evaluation.context import Context, Options
from multimodal.evaluation.evaluators import EVALUATORS
from multimodal.evaluation.report import evaluation_markdown, write_report
from multimodal.evaluation.segmenter import evaluate_segmentation
from multimodal.run.init import describe as describe_start, read_record as read_start
from multimodal.run import (external_inputs, load_run, load_run_config, predict_split,
                            run_cache, run_inputs)


def evaluate_run(checkpoint: str, out_dir: str, data_config: str | None = None,
                 split: str = "test", tta: bool = False, n_boot: int = 1000,
                 operating_class: str | None = "mel", target_sensitivity: float = 0.9,
                 n_saliency: int = 6, data_overrides=(), adapt_bn: float | None = None) -> dict:
    """Evaluate a run directory, or an ensemble directory (manifest.json), into out_dir
    (created only once the run or ensemble has loaded).

    `data_config` (with `data_overrides`, `key=value` items) scores every row of another
    dataset instead of `split`. Temperature scaling and the operating point are fitted on
    the model's own validation rows (`calibration_rows` in metrics.json says which); when
    those are the reported rows (`split="val"`) the report and metrics.json say so
    (`calibration_on_same_rows`).

    `adapt_bn` (a blend 0..1): a run's BatchNorm statistics are first re-estimated on the
    reported images, unlabelled (adapt.py); metrics.json records it (`adapted_batchnorm`).
    """
    if adapt_bn is not None:
        _check_adaptable(checkpoint)
    task = "classification" if is_ensemble(checkpoint) else load_run_config(checkpoint).task
    evaluation = tasks.part(EVALUATIONS, task, "evaluation.evaluate.EVALUATIONS")
    return evaluation(checkpoint, out_dir, data_config, split, tta, n_boot, operating_class,
                      target_sensitivity, n_saliency, tuple(data_overrides), adapt_bn)


def _evaluate_classifier(checkpoint, out_dir, data_config, split, tta, n_boot, operating_class,
                         target_sensitivity, n_saliency, data_overrides, adapt_bn) -> dict:
    """The evaluator list (evaluators.py) over a classifier run or an ensemble."""
    if data_config is not None:
        split = "test"  # another dataset: all its rows
    options = Options(n_boot, operating_class, target_sensitivity, n_saliency)
    if is_ensemble(checkpoint):
        return run_evaluators(_ensemble_context(checkpoint, out_dir, data_config, split, tta,
                                                options, tuple(data_overrides)))
    return run_evaluators(_run_context(checkpoint, out_dir, data_config, split, tta, options,
                                       tuple(data_overrides), adapt_bn))


def _evaluate_segmenter(checkpoint, out_dir, data_config, split, tta, n_boot, operating_class,
                        target_sensitivity, n_saliency, data_overrides, adapt_bn) -> dict:
    return evaluate_segmentation(checkpoint, out_dir, data_config, split, tta, n_boot,
                                 n_overlays=n_saliency)


def _classifier_line(result: dict) -> str:
    m = result["metrics"]
    ci = m["balanced_accuracy"]["ci95"]
    return (f"balanced accuracy {m['balanced_accuracy']['value']:.3f}"
            + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
            + f", macro AUC {m['macro_auc']['value']:.3f}, accuracy {m['accuracy']['value']:.3f}")


def _segmenter_line(result: dict) -> str:
    m = result["metrics"]
    ci = m["dice"]["ci95"]
    return (f"Dice {m['dice']['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
            + f", IoU {m['iou']['value']:.3f}, pooled Dice {m['pooled_dice']['value']:.3f} "
            f"({result['n_images']} images; {result['n_full_frame']} full-frame masks apart)")


# evaluation's part of the task table (multimodal/tasks.py): how a task's run is evaluated,
# and the one line that sums its result up
EVALUATIONS = {"classification": _evaluate_classifier, "segmentation": _evaluate_segmenter}
RESULT_LINES = {"classification": _classifier_line, "segmentation": _segmenter_line}


def result_line(result: dict) -> str:
    """One line of an evaluation's main figures (metrics.json as evaluate_run returns it)."""
    return RESULT_LINES[result.get("task", "classification")](result)


def _check_adaptable(checkpoint: str) -> None:
    """BatchNorm adaptation is of one classification run's model."""
    if is_ensemble(checkpoint):
        raise ConfigError(f"--adapt-bn re-estimates one run's BatchNorm statistics; "
                          f"{checkpoint} is an ensemble", "pass one of its member runs")
    task = load_run_config(checkpoint).task
    if tasks.get(task).output != "classes":
        raise ConfigError(f"--adapt-bn adapts classification runs; {checkpoint} is a {task} "
                          "run", "drop --adapt-bn")


def _ensemble_context(checkpoint, out_dir, data_config, split, tta, options, overrides):
    manifest = read_manifest(checkpoint)
    data = ExternalData(data_config, overrides=overrides) if data_config is not None else None
    by_split, inputs, classes = ensemble_predictions(
        checkpoint, tuple(dict.fromkeys([split, "val"])), data)
    info = {"checkpoint": os.path.abspath(checkpoint), "step": None, "split": split,
            "data": data_config or "the members' own split", "tta": False,
            "modality": f"ensemble: {manifest['kind']}",
            "calibration_rows": calibration_rows(manifest)}
    notes = ["Ensemble: no saliency maps (they belong to single models)."]
    if tta:
        notes.append("TTA not applied: an ensemble combines its members' probabilities as "
                     "they were when it was fitted.")
    if manifest.get("group_context"):
        notes.append("The stacker uses group context (images per lesion, lesion-mean "
                     "probabilities): a label proxy in HAM10000, so its numbers there are "
                     "inflated.")
    return Context(by_split[split], by_split.get("val"), classes, inputs.table_frame, out_dir,
                   info, options, notes)


def _run_context(checkpoint, out_dir, data_config, split, tta, options, overrides,
                 adapt_bn=None):
    run = load_run(checkpoint)
    notes = []
    own = None
    if data_config is None:
        own = inputs = run_inputs(run)
    else:
        # another dataset is prepared with the run's size and geometry, in the shared store
        inputs = external_inputs(run, data_config, overrides=overrides)
        try:  # calibration and the operating point still come from the run's validation rows
            own = run_inputs(run)
        except (UserError, FileNotFoundError) as exc:
            notes.append(f"The run's own data did not load ({exc}): no validation rows to "
                         "calibrate on.")
    # a run trained on a feature cache is scored from it (same model, no encoder pass) unless
    # flips are asked for or the data is another dataset
    what = data_config or f"the {split} split"
    if adapt_bn is not None:
        check_target(run, inputs, split, adapt_bn, what=what)
    cache = run_cache(run.cfg) if own is not None and not tta else None
    # calibration rows first, by the model as trained: its own clinic's statistics
    val_preds = (predict_split(run, own, "val", tta=tta, features=cache)
                 if own and "val" in own.sources else None)
    adapted = None
    if adapt_bn is not None:  # then the statistics of the reported images; images, no cache
        adapted = adapt_batchnorm(run, inputs, split, adapt_bn, what=what)
        cache = None
        notes += [CLASS_MIX_NOTE, "Temperature scaling and the operating point were fitted "
                  "on the calibration rows by the model with its training statistics."]
    preds = predict_split(run, inputs, split, tta=tta,
                          features=cache if data_config is None else None)
    info = {"checkpoint": os.path.abspath(checkpoint), "step": run.step, "split": split,
            "data": data_config or "the run's own split", "tta": tta,
            "modality": run.cfg.modality,
            "calibration_rows": "the run's own validation split (its best checkpoint was "
                                "chosen on these rows)"}
    started = describe_start(read_start(run.workdir))
    if started:
        info["init_from"] = started
    if adapted is not None:
        info["adapted_batchnorm"] = adapted
    return Context(preds, val_preds, run.classes, inputs.table_frame, out_dir, info, options,
                   notes, run=run, inputs=inputs)


def run_evaluators(ctx: Context, evaluators=EVALUATORS) -> dict:
    """Run `evaluators` on `ctx` in order; their results, merged, are metrics.json (two
    evaluators may not give the same name), their sections and notes the report."""
    os.makedirs(ctx.out_dir, exist_ok=True)
    result, owner, outputs = {}, {}, []
    for evaluator in evaluators:
        out = evaluator(ctx)
        for name, value in out.results.items():
            if name in owner:
                raise ValueError(f"evaluators {owner[name]} and {_name(evaluator)} both give "
                                 f"{name!r}")
            owner[name] = _name(evaluator)
            result[name] = value
        outputs.append(out)
    ctx.preds.to_csv(os.path.join(ctx.out_dir, "predictions.csv"), index=False)
    with open(os.path.join(ctx.out_dir, "metrics.json"), "w") as f:
        json.dump(result, f, indent=1, default=float)
    write_report(ctx.out_dir, evaluation_markdown(ctx, outputs))
    return result


def _name(evaluator) -> str:
    return getattr(evaluator, "__name__", type(evaluator).__name__)
