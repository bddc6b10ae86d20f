"""A cross-validation's pooled out-of-fold predictions scored: every development row once,
with lesion-bootstrap intervals, beside the fold-by-fold mean and spread (scripts/cv.py)."""

from __future__ import annotations

import json
import os

import numpy as np

from multimodal.evaluation.compare import classes_of, read_predictions
from multimodal.evaluation.context import arrays
from multimodal.evaluation.scoring import evaluate_predictions, point_metrics


def summarise_cv(workdir: str, n_boot: int = 1000, extra: dict | None = None) -> dict:
    """Score workdir/oof/predictions.csv; written to workdir/oof/metrics.json."""
    from multimodal.outputs import write_atomic

    oof = read_predictions(os.path.join(workdir, "oof"))
    classes = classes_of(oof)
    labels, _, probs = arrays(oof, classes)
    pooled = evaluate_predictions(labels, probs, oof["group_id"].to_numpy(), classes, n_boot)
    folds = [point_metrics(labels[idx], probs[idx])
             for idx in (np.flatnonzero(oof["fold"].to_numpy() == f)
                         for f in sorted(oof["fold"].unique()))]
    spread = {m: {"mean": float(np.mean([f[m] for f in folds])),
                  "sd": float(np.std([f[m] for f in folds], ddof=1))} for m in folds[0]}
    summary = {"kind": "cross_validation", **(extra or {}), "folds": len(folds),
               "rows": int(len(oof)), **pooled, "fold_metrics": folds, "fold_spread": spread}
    write_atomic(os.path.join(workdir, "oof", "metrics.json"), json.dumps(summary, indent=1))
    return summary


def cross_fitted_rule(frame, classes) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class per OOF row, offsets fitted on all rows): the balanced decision
    rule's own OOF figure, each fold's offsets fitted on the other folds' rows only."""
    from multimodal.evaluation.calibration import balanced_offsets

    labels, logits, _ = arrays(frame, classes)
    folds = frame["fold"].to_numpy()
    predicted = np.zeros(len(frame), np.int64)
    for j in np.unique(folds):
        rest, held = folds != j, folds == j
        predicted[held] = (logits[held] + balanced_offsets(logits[rest], labels[rest])).argmax(1)
    return predicted, balanced_offsets(logits, labels)


def _score(frame, classes, n_boot, offsets=None, rule_predicted=None) -> dict:
    labels, logits, probs = arrays(frame, classes)
    result = evaluate_predictions(labels, probs, frame["group_id"].to_numpy(), classes, n_boot)
    out = {"rows": int(len(frame)),
           **{m: result["metrics"][m] for m in ("balanced_accuracy", "macro_auc", "accuracy",
                                                  "ece")},
           "recall": {row["class"]: row["recall"] for row in result["per_class"]}}
    if rule_predicted is None and offsets is not None:
        rule_predicted = (logits + offsets).argmax(1)
    if rule_predicted is not None:
        from multimodal.metrics import balanced_accuracy

        out["rule_balanced_accuracy"] = balanced_accuracy(labels, rule_predicted, len(classes))
        out["rule_recall"] = {c: float((rule_predicted[labels == i] == i).mean())
                              for i, c in enumerate(classes) if (labels == i).any()}
    return out


def systems_table(systems: dict, n_boot: int = 1000) -> dict:
    """Score {name: (OOF frame | None, test frame | None)}: OOF with the cross-fitted rule,
    test with the rule fitted on all OOF rows."""
    scored = {}
    for name, (oof, test) in systems.items():
        classes = classes_of(oof if oof is not None else test)
        entry, offsets = {}, None
        if oof is not None:
            predicted, offsets = cross_fitted_rule(oof, classes)
            entry["oof"] = _score(oof, classes, n_boot, rule_predicted=predicted)
        if test is not None:
            entry["test"] = _score(test, classes, n_boot, offsets=offsets)
        scored[name] = entry
    return scored


def paired(systems: dict, a: str, b: str, where: str, n_boot: int = 1000) -> dict | None:
    """b minus a in balanced accuracy on the rows both scored (`where`: oof or test)."""
    from multimodal.evaluation.compare import compare

    index = 0 if where == "oof" else 1
    if a not in systems or b not in systems:
        return None
    fa, fb = systems[a][index], systems[b][index]
    if fa is None or fb is None:
        return None
    return compare(fa, fb, n_boot, metrics=("balanced_accuracy",))["metrics"][
        "balanced_accuracy"]


def systems_markdown(scored: dict, differences: dict) -> str:
    def cell(m):
        ci = m.get("ci95")
        return f"{m['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    lines = ["A member's OOF row is the prediction of the fold model that never saw the row; "
             "its test row is the average of the K fold models (`single:` is fold 0's model "
             "alone). The rule: balanced decision rule (per-class logit offsets), its OOF "
             "figure cross-fitted (each fold's offsets fitted on the other folds), applied to "
             "test as fitted on all OOF rows.", "",
             "| system | OOF balanced acc. [95% CI] | OOF rule | OOF macro AUC | OOF mel recall "
             "(rule) | test balanced acc. | test rule | test AUC | test ECE |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, entry in scored.items():
        o, t = entry.get("oof"), entry.get("test")
        row = [name]
        row += ([cell(o["balanced_accuracy"]), f"{o['rule_balanced_accuracy']:.3f}",
                 cell(o["macro_auc"]), f"{o['recall'].get('mel', float('nan')):.3f} "
                 f"({o['rule_recall'].get('mel', float('nan')):.3f})"] if o else ["-"] * 4)
        rule = f"{t['rule_balanced_accuracy']:.3f}" if t and "rule_balanced_accuracy" in t else "-"
        row += ([cell(t["balanced_accuracy"]), rule,
                 cell(t["macro_auc"]), f"{t['ece']['value']:.3f}"] if t else ["-"] * 4)
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "| paired difference (balanced accuracy, b - a) | rows | difference [95% CI] |",
              "|---|---|---|"]
    for label, d in differences.items():
        if d is not None:
            lines.append(f"| {label} | {d['groups']} lesions | {100 * d['difference']:+.1f} "
                         f"[{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}] points |")
    return "\n".join(lines) + "\n"


def stack_report(cv_dirs: list[str], workdir: str, seed: int = 0, score_test: bool = False,
                 n_boot: int = 1000, device: str = "cpu") -> dict:
    """Stack CV folders (ensemble.cv_stack) with and without metadata, score every system
    side by side and write workdir/systems.{json,md} and each system's predictions."""
    from multimodal.run.files import load_run_config
    from multimodal.run.layout import ENCODER
    from multimodal.data.split.build import load_table
    from multimodal.data.pipeline.metadata import MetadataEncoder
    from multimodal.ensemble.cv_stack import stack_cv
    from multimodal.outputs import write_atomic

    fold0 = os.path.join(cv_dirs[0], "fold_0")
    table = load_table(load_run_config(fold0).data).frame
    encoder = MetadataEncoder.load(os.path.join(fold0, ENCODER))
    systems = stack_cv(cv_dirs, workdir, table, encoder, seed, score_test, device)
    plain = stack_cv(cv_dirs, workdir, table, None, seed, score_test, device)
    systems["stacker (no metadata)"] = plain["stacker"]
    for name, frames in systems.items():
        for where, frame in zip(("oof", "test"), frames):
            if frame is not None:
                safe = name.replace(":", "_").replace(" ", "_").strip("()").replace("(", "")
                write_atomic(os.path.join(workdir, "predictions", f"{safe}_{where}.csv"),
                             frame.to_csv(index=False))
    scored = systems_table(systems, n_boot)
    members = [n for n in systems if n.startswith("member:")]
    modality = {}
    for d in cv_dirs:
        with open(os.path.join(d, "cv.json")) as f:
            modality[f"member:{os.path.basename(os.path.normpath(os.path.abspath(d)))}"] = json.load(f)["modality"]
    differences = {}
    for where in ("oof", "test"):
        for m in members:
            differences[f"stacker - {m} ({where})"] = paired(
                systems, m, "stacker", where, n_boot)
        differences[f"metadata gain at the stacker ({where})"] = paired(
            systems, "stacker (no metadata)", "stacker", where, n_boot)
        image = [m for m in members if modality.get(m) == "image"]
        fused = [m for m in members if modality.get(m) == "image+meta"]
        if image and fused:
            differences[f"metadata gain at the fused network ({where})"] = paired(
                systems, image[0], fused[0], where, n_boot)
    result = {"cv": [os.path.abspath(d) for d in cv_dirs], "seed": seed, "systems": scored,
              "differences": differences}
    write_atomic(os.path.join(workdir, "systems.json"), json.dumps(result, indent=1))
    write_atomic(os.path.join(workdir, "systems.md"), systems_markdown(scored, differences))
    return result
