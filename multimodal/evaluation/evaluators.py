"""The evaluators: each takes the `Context` and returns its `Output` (named results, its
report section, notes). `EVALUATORS` is the list `evaluate.py` runs, in report order; an
evaluator reads the context only, never another evaluator's results.
"""

from __future__ import annotations

import os
import shutil

import numpy as np

from multimodal.evaluation import calibration, plots
from multimodal.evaluation.context import Context, Output
from multimodal.evaluation.scoring import (confusion_matrix, evaluate_predictions,
                                           paired_difference, per_class, point_metrics)
from multimodal.evaluation.report import metrics_markdown, per_class_markdown
from multimodal.evaluation.saliency import confident_errors, error_gallery
from multimodal.evaluation.subgroups import subgroup_markdown, subgroup_tables
from multimodal.run.layout import CURVES


def metrics(ctx: Context) -> Output:
    """Point metrics, per-class table, confusion matrix, group-bootstrap intervals."""
    result = evaluate_predictions(ctx.labels, ctx.probs, ctx.preds["group_id"].to_numpy(),
                                  ctx.classes, ctx.options.n_boot)
    m = result["metrics"]
    return Output(result, [
        f"**Balanced accuracy {m['balanced_accuracy']['value']:.3f}**, macro AUC "
        f"{m['macro_auc']['value']:.3f}, accuracy {m['accuracy']['value']:.3f}. Intervals: 95% "
        f"bootstrap over {result['bootstrap']['resamples']} resamples of groups.", "",
        "## Metrics", "", metrics_markdown(result), "",
        "## Per class", "", per_class_markdown(result), ""])


def description(ctx: Context) -> Output:
    """What was evaluated, which rows calibration was fitted on, and the caller's notes."""
    info = dict(ctx.info)
    if ctx.val is None:
        info.pop("calibration_rows", None)
        return Output({**info, "calibration_on_same_rows": False}, notes=list(ctx.notes))
    shared, n = ctx.shared_rows, len(ctx.preds)
    if shared:
        note = (f"**Calibration on the same rows**: temperature scaling and the operating "
                f"point were fitted on {len(shared)} of the {n} rows they are reported on "
                f"({ctx.calibration_rows}), so the calibrated log loss / ECE and the operating "
                "point's sensitivity and specificity are in-sample, optimistic. Held-out "
                f"numbers: python scripts/evaluate.py --checkpoint {info['checkpoint']} "
                "--split test")
    else:
        note = (f"Temperature scaling and the operating point were fitted on {len(ctx.val)} "
                f"rows: {ctx.calibration_rows}; they and every other number are reported on "
                f"the {n} `{ctx.split}` rows (none of them among those).")
    return Output({**info, "calibration_rows": ctx.calibration_rows,
                   "calibration_on_same_rows": bool(shared),
                   "n_calibration_images": len(ctx.val)}, notes=[note, *ctx.notes])


def confusion_and_roc(ctx: Context) -> Output:
    cm = confusion_matrix(ctx.labels, ctx.probs, len(ctx.classes))
    plots.confusion(cm, ctx.classes, os.path.join(ctx.out_dir, "confusion.png"))
    plots.roc_curves(ctx.labels, ctx.probs, ctx.classes, os.path.join(ctx.out_dir, "roc.png"))
    return Output(section=["![confusion](confusion.png)", "", "![roc](roc.png)", ""])


def temperature_scaling(ctx: Context) -> Output:
    """Temperature fitted on the calibration rows; reliability diagram before / after."""
    path = os.path.join(ctx.out_dir, "reliability.png")
    image = ["![reliability](reliability.png)", ""]
    if ctx.val is None:
        plots.reliability(ctx.labels, {"model": ctx.probs}, path)
        return Output(section=image, notes=["No validation split: temperature scaling and "
                                            "operating point skipped."])
    t = calibration.fit_temperature(ctx.val_logits, ctx.val_labels)
    scaled = calibration.apply_temperature(ctx.logits, t)
    before, after = point_metrics(ctx.labels, ctx.probs), point_metrics(ctx.labels, scaled)
    result = {"temperature": t,
              "before": {"log_loss": before["log_loss"], "ece": before["ece"]},
              "after": {"log_loss": after["log_loss"], "ece": after["ece"]}}
    plots.reliability(ctx.labels, {"uncalibrated": ctx.probs, f"T={t:.2f}": scaled}, path)
    return Output({"temperature_scaling": result}, [
        "## Calibration", "",
        f"Temperature fitted on {ctx.calibrated_on}: T = {t:.3f}. Log loss "
        f"{before['log_loss']:.3f} -> {after['log_loss']:.3f}, ECE "
        f"{before['ece']:.3f} -> {after['ece']:.3f}.{ctx.in_sample}", "", *image])


def operating_point(ctx: Context) -> Output:
    """Threshold on p(operating class) for the target sensitivity on the calibration rows,
    reported on the evaluated rows."""
    name, target = ctx.options.operating_class, ctx.options.target_sensitivity
    if ctx.val is None or name not in ctx.classes:
        return Output()
    c = ctx.classes.index(name)
    if not (ctx.val_labels == c).any():
        return Output(notes=[f"No `{name}` image among the calibration rows: operating point "
                             "skipped."])
    threshold = calibration.threshold_for_sensitivity(ctx.val_probs[:, c], ctx.val_labels == c,
                                                      target)
    split = ctx.split
    op = {"class": name, "target_sensitivity_on_val": target,
          "val": calibration.operating_point(ctx.val_probs[:, c], ctx.val_labels == c, threshold),
          split: calibration.operating_point(ctx.probs[:, c], ctx.labels == c, threshold)}
    return Output({"operating_point": op}, [
        "## Operating point", "", f"Chosen on {ctx.calibrated_on}.{ctx.in_sample}", "",
        f"Threshold on p({name}) chosen on validation for {target:.0%} sensitivity: "
        f"{op['val']['threshold']:.3f}. On {split}: sensitivity {op[split]['sensitivity']:.3f}, "
        f"specificity {op[split]['specificity']:.3f}, {op[split]['flagged_share']:.1%} of "
        "images flagged.", ""])


def balanced_decision(ctx: Context) -> Output:
    """Per-class logit offsets fitted on the calibration rows for balanced accuracy (ISIC's
    metric), reported on the evaluated rows beside plain argmax, with a paired interval."""
    if ctx.val is None:
        return Output()
    offsets = calibration.balanced_offsets(ctx.val_logits, ctx.val_labels)
    shifted = ctx.logits + offsets
    probs = np.exp(shifted - shifted.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    groups = ctx.preds["group_id"].to_numpy()
    gain = paired_difference(ctx.labels, ctx.probs, probs, groups, "balanced_accuracy",
                             ctx.options.n_boot or 200)
    mel = (per_class(ctx.labels, probs, ctx.classes)[ctx.classes.index("mel")]["recall"]
           if "mel" in ctx.classes else None)
    result = {"offsets": dict(zip(ctx.classes, map(float, offsets))),
              "balanced_accuracy": gain["b"], "argmax_balanced_accuracy": gain["a"],
              "gain": gain["difference"], "gain_ci95": gain["ci95"], "mel_recall": mel}
    lo, hi = gain["ci95"]
    return Output({"balanced_decision": result}, [
        "## Decision rule for balanced accuracy", "",
        f"Per-class logit offsets fitted on {ctx.calibrated_on} to maximise balanced accuracy"
        f"{ctx.in_sample}: balanced accuracy {gain['a']:.3f} (argmax) -> {gain['b']:.3f}, "
        f"{100 * gain['difference']:+.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}] (paired "
        "group bootstrap)" + (f"; melanoma recall {mel:.3f}" if mel is not None else "") + ". "
        "Offsets: " + ", ".join(f"{c} {o:+.2f}" for c, o in result["offsets"].items()) + ".",
        ""])


def subgroups(ctx: Context) -> Output:
    """Metrics by source (merged datasets) / sex / age band / site / Fitzpatrick type / view,
    gaps flagged."""
    frame = ctx.preds[["image_id"]].merge(ctx.table_frame, on="image_id", how="left")
    tables = subgroup_tables(frame, ctx.labels, ctx.probs)
    section = ["## Subgroups", "", "Gap = subgroup balanced accuracy minus overall; "
               "**flagged** when more than 0.05 below.", "", subgroup_markdown(tables)]
    return Output({"subgroups": tables}, section if tables else [])


def _figure(ctx: Context, name: str, title: str) -> list[str]:
    if os.path.exists(os.path.join(ctx.out_dir, name)):
        return [f"## {title}", "", f"![{name}]({name})", ""]
    return []


def saliency(ctx: Context) -> Output:
    """Integrated-gradient overlays of the most confident errors (single runs with images)."""
    run, n = ctx.run, ctx.options.n_saliency
    if run is not None and n and run.cfg.uses_image:
        errors = confident_errors(run, ctx.inputs, ctx.split, ctx.preds, ctx.probs, ctx.labels, n)
        error_gallery(run.model, errors, run.classes, run.normalizer,
                      os.path.join(ctx.out_dir, "saliency_errors.png"))
    return Output(section=_figure(ctx, "saliency_errors.png",
                                  "Most confident errors (integrated gradients)"))


def training_curves(ctx: Context) -> Output:
    """The run's training curves (curves.png), copied."""
    if ctx.run is not None:
        curves = os.path.join(ctx.run.workdir, CURVES)
        if os.path.exists(curves):
            shutil.copy(curves, os.path.join(ctx.out_dir, CURVES))
    return Output(section=_figure(ctx, CURVES, "Training curves"))


EVALUATORS = (metrics, description, confusion_and_roc, temperature_scaling, operating_point,
              balanced_decision, subgroups, saliency, training_curves)
