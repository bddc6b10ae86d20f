"""Evaluate a trained run: metrics with intervals, plots, subgroups, calibration, saliency."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

from multimodal.ensemble.manifest import ensemble_predictions, is_ensemble, read_manifest
from multimodal.evaluation import calibration, plots
from multimodal.evaluation.metrics import evaluate_predictions, point_metrics
from multimodal.evaluation.report import metrics_markdown, per_class_markdown, write_report
from multimodal.evaluation.saliency import error_gallery
from multimodal.evaluation.subgroups import subgroup_markdown, subgroup_tables
from multimodal.training.features import run_cache
from multimodal.training.inputs import example_loader
from multimodal.training.predict import external_inputs, load_run, predict_split, run_inputs


def _arrays(preds, classes):
    lookup = {c: i for i, c in enumerate(classes)}
    labels = preds["label"].map(lookup).to_numpy()
    logits = preds[[f"logit_{c}" for c in classes]].to_numpy(np.float64)
    probs = preds[[f"prob_{c}" for c in classes]].to_numpy(np.float64)
    return labels, logits, probs


def _confident_errors(run, inputs, split, preds, probs, labels, k):
    wrong = np.flatnonzero(probs.argmax(1) != labels)
    order = wrong[np.argsort(-probs[wrong].max(1))][:k]
    loader = example_loader(run.cfg, inputs, split, train=False)
    position = {i: n for n, i in enumerate(inputs.frames[split]["image_id"])}
    examples = []
    for row in order:
        ex = loader((0, position[preds["image_id"].iloc[row]]))
        examples.append({**ex, "predicted": int(probs[row].argmax()),
                         "confidence": float(probs[row].max())})
    return examples


def evaluate_run(checkpoint: str, out_dir: str, data_config: str | None = None,
                 split: str = "test", tta: bool = False, n_boot: int = 1000,
                 operating_class: str | None = "mel", target_sensitivity: float = 0.9,
                 n_saliency: int = 6) -> dict:
    """Evaluate a run directory, or an ensemble directory (manifest.json), into out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    if is_ensemble(checkpoint):
        if data_config is not None:
            raise ValueError("--data is not supported for ensembles yet: evaluate the members")
        by_split, inputs, classes = ensemble_predictions(checkpoint, tuple({split, "val"}))
        kind = read_manifest(checkpoint)["kind"]
        info = {"checkpoint": os.path.abspath(checkpoint), "step": None, "split": split,
                "data": "the members' own split", "tta": False, "modality": f"ensemble: {kind}"}
        notes = ["Ensemble: no saliency maps (they belong to single models)."]
        if kind == "stacking":
            notes.append("Calibration and the operating point use the stacker's grouped inner "
                         "validation rows (the base validation rows fed the stacker).")
        return _evaluate(by_split[split], by_split.get("val"), classes, inputs.table_frame,
                         out_dir, info, n_boot, operating_class, target_sensitivity, notes)
    run = load_run(checkpoint)
    own = run_inputs(run) if data_config is None else None
    inputs = own if own is not None else external_inputs(run, data_config,
                                                         os.path.join(out_dir, "prepared"))
    if data_config is not None:
        split = "test"
    # a run trained on a feature cache is scored from it (same model, no encoder pass) unless
    # flips are asked for or the data is another dataset
    cache = run_cache(run.cfg) if own is not None and not tta else None
    preds = predict_split(run, inputs, split, tta=tta, features=cache)
    val_preds = (predict_split(run, own, "val", tta=tta, features=cache)
                 if own and "val" in own.sources else None)
    info = {"checkpoint": os.path.abspath(checkpoint), "step": run.step, "split": split,
            "data": data_config or "the run's own split", "tta": tta,
            "modality": run.cfg.modality}

    def saliency(probs, labels):
        if n_saliency and run.cfg.modality != "meta":
            errors = _confident_errors(run, inputs, split, preds, probs, labels, n_saliency)
            error_gallery(run.model, errors, run.classes, run.normalizer,
                          os.path.join(out_dir, "saliency_errors.png"))
        curves = os.path.join(checkpoint, "curves.png")
        if os.path.exists(curves):
            shutil.copy(curves, os.path.join(out_dir, "curves.png"))

    return _evaluate(preds, val_preds, run.classes, inputs.table_frame, out_dir, info, n_boot,
                     operating_class, target_sensitivity, [], saliency)


def _evaluate(preds, val_preds, classes, table_frame, out_dir, info, n_boot, operating_class,
              target_sensitivity, notes, extras=None) -> dict:
    split = info["split"]
    labels, logits, probs = _arrays(preds, classes)
    result = evaluate_predictions(labels, probs, preds["group_id"].to_numpy(), classes, n_boot)
    result.update(info)

    # Calibration and operating point are chosen on validation, reported on this split.
    if val_preds is not None:
        v_labels, v_logits, v_probs = _arrays(val_preds, classes)
        temperature = calibration.fit_temperature(v_logits, v_labels)
        scaled = calibration.apply_temperature(logits, temperature)
        after = point_metrics(labels, scaled)
        before = result["metrics"]
        result["temperature_scaling"] = {
            "temperature": temperature,
            "before": {"log_loss": before["log_loss"]["value"], "ece": before["ece"]["value"]},
            "after": {"log_loss": after["log_loss"], "ece": after["ece"]}}
        plots.reliability(labels, {"uncalibrated": probs, f"T={temperature:.2f}": scaled},
                          os.path.join(out_dir, "reliability.png"))
        if operating_class in classes:
            c = classes.index(operating_class)
            threshold = calibration.threshold_for_sensitivity(v_probs[:, c], v_labels == c,
                                                              target_sensitivity)
            result["operating_point"] = {
                "class": operating_class, "target_sensitivity_on_val": target_sensitivity,
                "val": calibration.operating_point(v_probs[:, c], v_labels == c, threshold),
                split: calibration.operating_point(probs[:, c], labels == c, threshold)}
    else:
        plots.reliability(labels, {"model": probs}, os.path.join(out_dir, "reliability.png"))
        notes.append("No validation split: temperature scaling and operating point skipped.")

    frame = preds[["image_id"]].merge(table_frame, on="image_id", how="left")
    result["subgroups"] = subgroup_tables(frame, labels, probs)
    plots.confusion(result["confusion_matrix"], classes, os.path.join(out_dir, "confusion.png"))
    plots.roc_curves(labels, probs, classes, os.path.join(out_dir, "roc.png"))
    if extras is not None:
        extras(probs, labels)
    preds.to_csv(os.path.join(out_dir, "predictions.csv"), index=False)
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(result, f, indent=1, default=float)
    write_report(out_dir, _markdown(result, out_dir, notes))
    return result


def _markdown(result: dict, out_dir: str, notes) -> str:
    m = result["metrics"]
    lines = [
        "# Evaluation report", "",
        f"Checkpoint `{result['checkpoint']}` (step {result['step'] or '-'}, modality "
        f"`{result['modality']}`), data: {result['data']}, split `{result['split']}`, "
        f"TTA {'on' if result['tta'] else 'off'}: {result['n_images']} images of "
        f"{result['n_groups']} groups.", "",
        f"**Balanced accuracy {m['balanced_accuracy']['value']:.3f}**, macro AUC "
        f"{m['macro_auc']['value']:.3f}, accuracy {m['accuracy']['value']:.3f}. Intervals: 95% "
        f"bootstrap over {result['bootstrap']['resamples']} resamples of groups.", "",
        "## Metrics", "", metrics_markdown(result), "",
        "## Per class", "", per_class_markdown(result), "",
        "![confusion](confusion.png)", "", "![roc](roc.png)", ""]
    if "temperature_scaling" in result:
        t = result["temperature_scaling"]
        lines += ["## Calibration", "",
                  f"Temperature fitted on validation: T = {t['temperature']:.3f}. Log loss "
                  f"{t['before']['log_loss']:.3f} -> {t['after']['log_loss']:.3f}, ECE "
                  f"{t['before']['ece']:.3f} -> {t['after']['ece']:.3f}.", ""]
    lines += ["![reliability](reliability.png)", ""]
    if "operating_point" in result:
        op = result["operating_point"]
        split = result["split"]
        lines += ["## Operating point", "",
                  f"Threshold on p({op['class']}) chosen on validation for "
                  f"{op['target_sensitivity_on_val']:.0%} sensitivity: "
                  f"{op['val']['threshold']:.3f}. On {split}: sensitivity "
                  f"{op[split]['sensitivity']:.3f}, specificity {op[split]['specificity']:.3f}, "
                  f"{op[split]['flagged_share']:.1%} of images flagged.", ""]
    if result["subgroups"]:
        lines += ["## Subgroups", "", "Gap = subgroup balanced accuracy minus overall; "
                  "**flagged** when more than 0.05 below.", "",
                  subgroup_markdown(result["subgroups"])]
    for name, title in (("saliency_errors.png", "Most confident errors (integrated gradients)"),
                        ("curves.png", "Training curves")):
        if os.path.exists(os.path.join(out_dir, name)):
            lines += [f"## {title}", "", f"![{name}]({name})", ""]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"
