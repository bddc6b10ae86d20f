"""Evaluate a trained run or an ensemble: build the `Context`, run the evaluators
(evaluators.py) in a list, write metrics.json, predictions.csv and the report."""

from __future__ import annotations

import json
import os

from multimodal.ensemble.manifest import (calibration_rows, ensemble_predictions, is_ensemble,
                                          read_manifest)
from multimodal.ensemble.members import ExternalData
from multimodal.config import load_run_config
from multimodal.errors import UserError
from multimodal.evaluation.context import Context, Options
from multimodal.evaluation.evaluators import EVALUATORS
from multimodal.evaluation.report import evaluation_markdown, write_report
from multimodal.evaluation.segmentation import evaluate_segmentation
from multimodal.runs import external_inputs, load_run, predict_split, run_cache, run_inputs


def evaluate_run(checkpoint: str, out_dir: str, data_config: str | None = None,
                 split: str = "test", tta: bool = False, n_boot: int = 1000,
                 operating_class: str | None = "mel", target_sensitivity: float = 0.9,
                 n_saliency: int = 6, data_overrides=()) -> dict:
    """Evaluate a run directory, or an ensemble directory (manifest.json), into out_dir
    (created only once the run or ensemble has loaded).

    `data_config` (with `data_overrides`, `key=value` items) scores every row of another
    dataset instead of `split`. Temperature scaling and the operating point are fitted on
    the model's own validation rows (`calibration_rows` in metrics.json says which); when
    those are the reported rows (`split="val"`) the report and metrics.json say so
    (`calibration_on_same_rows`).
    """
    if not is_ensemble(checkpoint) and load_run_config(checkpoint).task == "segmentation":
        return evaluate_segmentation(checkpoint, out_dir, data_config, split, tta, n_boot,
                                     n_overlays=n_saliency)
    if data_config is not None:
        split = "test"  # another dataset: all its rows
    options = Options(n_boot, operating_class, target_sensitivity, n_saliency)
    make = _ensemble_context if is_ensemble(checkpoint) else _run_context
    return run_evaluators(make(checkpoint, out_dir, data_config, split, tta, options,
                               tuple(data_overrides)))


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


def _run_context(checkpoint, out_dir, data_config, split, tta, options, overrides):
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
    cache = run_cache(run.cfg) if own is not None and not tta else None
    preds = predict_split(run, inputs, split, tta=tta,
                          features=cache if data_config is None else None)
    val_preds = (predict_split(run, own, "val", tta=tta, features=cache)
                 if own and "val" in own.sources else None)
    info = {"checkpoint": os.path.abspath(checkpoint), "step": run.step, "split": split,
            "data": data_config or "the run's own split", "tta": tta,
            "modality": run.cfg.modality,
            "calibration_rows": "the run's own validation split (its best checkpoint was "
                                "chosen on these rows)"}
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
