"""Transfer, measured: a clinic's few hundred images fine-tuned from ImageNet, from another
run (`model.init_from`), or from scratch, each pair compared on the same rows.

    python -m benchmarks.quality.transfer --source runs/cv/cpu_image/fold_0 --out runs/transfer

The dermatology user's case on HAM10000: the source run is a fold model of a grouped
cross-validation (`scripts/cv.py`), so the lesions of its held-out fold were never in its
training or validation rows. Those lesions are halved (grouped, stratified): one half is the
evaluation set, shared by every run; from the other half, `--subsets` target sets of about
`--size` images are drawn (grouped, stratified, one seed each; they may overlap), each split
into training and about 15% validation by lesion. Every target set is fine-tuned three ways
with the same config, epochs and seed, and scored on the evaluation half; the paired
differences (scripts/compare.py, lesion bootstrap) are per target set, the summary row the
mean and spread over target sets.

The chest X-ray case (`--chestxray`) is a grouped cross-validation per start
(`scripts/cv.py`, patient-grouped folds), compared on the pooled out-of-fold rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import warnings

import numpy as np
import pandas as pd

from benchmarks.common import ROOT, cell, points, publish, run_script, timed, train_and_evaluate

STARTS = {  # label: overrides (the config's own model.pretrained is the ImageNet start)
    "ImageNet (Lite0)": [],
    "another run": ["model.init_from={source}", "model.pretrained=null"],
    "scratch": ["model.pretrained=null"],
}
PAIRS = [("another run", "ImageNet (Lite0)"), ("ImageNet (Lite0)", "scratch"),
         ("another run", "scratch")]


def _folds(frame: pd.DataFrame, k: int, seed: int) -> np.ndarray:
    """Grouped, label-stratified fold of every row (sklearn's StratifiedGroupKFold)."""
    from sklearn.model_selection import StratifiedGroupKFold

    folds = np.empty(len(frame), np.int64)
    warnings.filterwarnings("ignore", message="The least populated class")  # rare classes
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for fold, (_, idx) in enumerate(splitter.split(frame, frame["label"], frame["group_id"])):
        folds[idx] = fold
    return folds


def target_splits(source: str, n_subsets: int, size: int, seed: int = 0):
    """The evaluation half and the target sets (module docstring), as split-file frames.
    Refuses a source whose training or validation lesions reach the rows drawn here."""
    split = pd.read_csv(os.path.join(source, "split.csv"), dtype=str)
    held = split[split["split"] == "test"].reset_index(drop=True)
    seen = set(split.loc[split["split"] != "test", "group_id"])
    if seen & set(held["group_id"]):
        raise SystemExit(f"error: {source}'s test rows share lesions with its training rows")
    half = _folds(held, 2, seed)
    evaluation, pool = held[half == 0], held[half == 1].reset_index(drop=True)
    grain = 20  # the pool in twentieths; a target set is the first twentieths reaching `size`
    out = []
    for s in range(n_subsets):
        folds = _folds(pool, grain, seed + 1 + s)
        sizes = np.bincount(folds, minlength=grain)
        take = int(np.argmin(abs(np.cumsum(sizes) - size))) + 1  # twentieths nearest `size`
        n_val = max(1, round(0.15 * take))  # validation: about 15% of the set, by lesion
        if take <= n_val:
            raise SystemExit(f"error: --size {size} is under two twentieths of the "
                             f"{len(pool)}-image pool: too few to hold out validation lesions")
        chosen = pool[folds < take].copy()
        chosen["split"] = np.where(folds[folds < take] < n_val, "val", "train")
        out.append(pd.concat([chosen, evaluation.assign(split="test")], ignore_index=True))
    return out


def source_as_is(source: str, evaluation: pd.DataFrame, out: str) -> str:
    """The source run without fine-tuning, on the evaluation rows: its out-of-fold
    predictions (scripts/cv.py wrote them; the same model, no flips) restricted to them,
    scored like an evaluation (metrics.json beside predictions.csv, for scripts/compare.py)."""
    from multimodal.evaluation.compare import classes_of
    from multimodal.evaluation.context import arrays
    from multimodal.evaluation.scoring import evaluate_predictions

    preds = pd.read_csv(os.path.join(source, "oof_predictions.csv"), dtype={"image_id": str})
    preds = preds[preds["image_id"].isin(set(evaluation["image_id"]))]
    if len(preds) != len(evaluation):
        raise SystemExit(f"error: {source}/oof_predictions.csv covers {len(preds)} of the "
                         f"{len(evaluation)} evaluation rows")
    os.makedirs(out, exist_ok=True)
    preds.to_csv(os.path.join(out, "predictions.csv"), index=False)
    classes = classes_of(preds)
    labels, _, probs = arrays(preds, classes)
    result = evaluate_predictions(labels, probs, preds["group_id"].to_numpy(), classes, 1000)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump({**result, "n_images": len(preds)}, f, indent=1, default=float)
    return out


def _overrides(sets: list[str]) -> str:
    return " with " + " ".join(f"`{x}`" for x in sets) if sets else ""


def _compare(a: str, b: str, names, out: str) -> dict:
    run_script("scripts/compare.py", a, b, "--names", *names, "--out", out)
    with open(out) as f:
        return json.load(f)["metrics"]


def _paired_row(label: str, diffs: list[dict]) -> str:
    """A paired difference over the target sets: each set's, the mean, how many CIs are
    above 0."""
    return (f"| {label} | " + " ; ".join(points(d) for d in diffs) + " | "
            f"{100 * statistics.mean(d['difference'] for d in diffs):+.1f} | "
            f"{sum(d['ci95'][0] > 0 for d in diffs)} / {len(diffs)} |")


def _metrics(folder: str) -> dict:
    with open(os.path.join(folder, "metrics.json")) as f:
        return json.load(f)


def ham10000(args) -> None:
    rows, data, results = [], {"subsets": []}, {label: [] for label in STARTS}
    gains = {pair: [] for pair in PAIRS}
    for s, frame in enumerate(target_splits(args.source, args.subsets, args.size, args.seed)):
        split_file = os.path.join(args.out, f"subset_{s}", "split.csv")
        os.makedirs(os.path.dirname(split_file), exist_ok=True)
        text = frame[["image_id", "group_id", "label", "split"]].to_csv(index=False)
        if os.path.exists(split_file):  # its runs were trained on it: never another draw
            with open(split_file) as f:
                if f.read() != text:
                    raise SystemExit(f"error: {split_file} holds another draw (other --source, "
                                     "--size, --seed or --subsets); use another --out")
        else:
            with open(split_file, "w") as f:
                f.write(text)
        n_target = int((frame["split"] != "test").sum())
        entry = {"subset": s, "target_images": n_target,
                 "evaluation_images": int((frame["split"] == "test").sum()), "runs": {}}
        for label, sets in STARTS.items():
            workdir = os.path.join(args.out, f"subset_{s}", label.split()[0].lower())
            sets = [x.format(source=args.source) for x in sets]
            minutes = train_and_evaluate(args.config, "image", workdir,
                                         [f"data.split_file={split_file}", *args.set, *sets],
                                         reuse_eval=True)
            m = _metrics(os.path.join(workdir, "eval"))["metrics"]
            results[label].append(m["balanced_accuracy"]["value"])
            entry["runs"][label] = {"workdir": workdir, "metrics": m, "minutes": minutes}
            rows.append(f"| {s} ({n_target}) | {label} | "
                        f"{cell(m['balanced_accuracy']['value'], m['balanced_accuracy']['ci95'])}"
                        f" | {cell(m['macro_auc']['value'], m['macro_auc']['ci95'])} | "
                        f"{minutes:.1f} |")
            print(rows[-1], flush=True)
        entry["paired"] = {}
        for b, a in PAIRS:
            wa, wb = (entry["runs"][x]["workdir"] for x in (a, b))
            diff = _compare(os.path.join(wa, "eval"), os.path.join(wb, "eval"), [a, b],
                            os.path.join(args.out, f"subset_{s}", f"{b[:7]}-{a[:7]}.json"))
            gains[(b, a)].append(diff["balanced_accuracy"])
            entry["paired"][f"{b} - {a}"] = diff["balanced_accuracy"]
        data["subsets"].append(entry)
    as_is = source_as_is(args.source, frame[frame["split"] == "test"],
                         os.path.join(args.out, "source_as_is"))
    m = _metrics(as_is)["metrics"]
    data["source_as_is"] = {"metrics": m, "paired": []}
    for entry in data["subsets"]:
        tuned = os.path.join(entry["runs"]["another run"]["workdir"], "eval")
        data["source_as_is"]["paired"].append(_compare(
            as_is, tuned, ["source as is", "another run"],
            os.path.join(args.out, f"subset_{entry['subset']}", "tuned-as_is.json"))[
            "balanced_accuracy"])
    tuned_gain = data["source_as_is"]["paired"]
    source_row = (f"| the source run as it is (no fine-tuning) | "
                  f"{cell(m['balanced_accuracy']['value'], m['balanced_accuracy']['ci95'])} | "
                  f"{cell(m['macro_auc']['value'], m['macro_auc']['ci95'])} |")
    summary = [f"| {label} | {statistics.mean(v):.3f} +- {statistics.stdev(v):.3f} | "
               f"{min(v):.3f}-{max(v):.3f} |" for label, v in results.items()]
    paired = [_paired_row(f"{b} - {a}", gains[(b, a)]) for b, a in PAIRS]
    paired.append(_paired_row("another run (fine-tuned) - the source as it is", tuned_gain))
    ev = data["subsets"][0]["evaluation_images"]
    lines = ["# Transfer to a clinic's few hundred images (HAM10000)", "",
             (f"Source run `{args.source}` (a fold model of a grouped CV: its held-out lesions "
              f"were never trained or validated on). Target sets of about {args.size} images "
              f"drawn from half of those lesions ({args.subsets} draws, seeds "
              f"{args.seed + 1}..{args.seed + args.subsets}), each fine-tuned with "
              f"`{args.config}` (image only){_overrides(args.set)}; every "
              f"run scored on the same {ev} evaluation images (the other half). 95% lesion-"
              "bootstrap intervals."), "",
             "| target set (images) | start | balanced accuracy [95% CI] | macro AUC | "
             "minutes |", "| --- | --- | --- | --- | ---: |", *rows, "",
             "| start | balanced accuracy, mean +- sd over target sets | range |",
             "| --- | --- | --- |", *summary, "",
             "| reference (the same evaluation rows) | balanced accuracy [95% CI] | macro AUC |",
             "| --- | --- | --- |", source_row, "",
             "| paired difference (balanced accuracy, points) | per target set [95% CI] | mean "
             "| sets with CI above 0 |", "| --- | --- | ---: | ---: |", *paired, "",
             ("The target sets are HAM10000 pictures: the source run was trained on the same "
              "cameras and population, so `another run` measures starting from more of the "
              "same data, not transfer to another clinic's camera (which would also call for "
              "`--adapt-bn` or fine-tuning on the new pictures). Target sets overlap (drawn "
              "from one pool); their spread is the draw's, not independent replicates'.")]
    data["size"], data["target_images"] = args.size, [e["target_images"]
                                                     for e in data["subsets"]]
    data["summary"] = {k: {"mean": statistics.mean(v), "sd": statistics.stdev(v), "values": v}
                       for k, v in results.items()}
    publish(args.name, lines, data)


def chestxray(args) -> None:
    rows, data = [], {}
    for label, sets in STARTS.items():
        workdir = os.path.join(args.out, "cxr_" + label.split()[0].lower())
        sets = [x.format(source=args.source) for x in sets]
        minutes = timed(workdir, os.path.join("oof", "metrics.json"), lambda: run_script(
            "scripts/cv.py", "--config", args.config, "--modality", "image", "--folds",
            str(args.folds), "--workdir", workdir, "--no-progress",
            *[x for s in [*args.set, *sets] for x in ("--set", s)])) / 60
        result = _metrics(os.path.join(workdir, "oof"))
        m = result["metrics"]
        data[label] = {"workdir": workdir, "metrics": m, "minutes": minutes,
                       "rows": result.get("rows")}
        rows.append(f"| {label} | {cell(m['balanced_accuracy']['value'], m['balanced_accuracy']['ci95'])}"
                    f" | {cell(m['macro_auc']['value'], m['macro_auc']['ci95'])} | "
                    f"{minutes:.1f} |")
        print(rows[-1], flush=True)
    paired = []
    for b, a in PAIRS:
        wa, wb = data[a]["workdir"], data[b]["workdir"]
        diff = _compare(os.path.join(wa, "oof"), os.path.join(wb, "oof"), [a, b],
                        os.path.join(args.out, f"cxr_{b[:7]}-{a[:7]}.json"))
        data[f"{b} - {a}"] = diff
        paired.append(f"| {b} - {a} | {points(diff['balanced_accuracy'])} | "
                      f"{points(diff['macro_auc'])} |")
    lines = ["# Transfer on covid-chestxray: a patient-grouped finding task", "",
             (f"`{args.config}` (image only){_overrides(args.set)}, "
              f"{args.folds}-fold patient-grouped cross-validation (`scripts/cv.py`) per start; "
              f"pooled out-of-fold predictions, 95% patient-bootstrap intervals. `another run`: "
              f"`{args.source}`, its head re-initialised (other classes)."), "",
             "| start | OOF balanced accuracy [95% CI] | OOF macro AUC | minutes (all folds) |",
             "| --- | --- | --- | ---: |", *rows, "",
             "| paired difference (points) | balanced accuracy | macro AUC |", "| --- | --- | --- |",
             *paired]
    publish(args.name, lines, data)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="the run to start from")
    parser.add_argument("--config", default="configs/ham10000_cpu.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="runs/transfer")
    parser.add_argument("--subsets", type=int, default=5)
    parser.add_argument("--size", type=int, default=500, help="images per target set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chestxray", action="store_true",
                        help="the chest X-ray case: --config is a chest X-ray config")
    parser.add_argument("--folds", type=int, default=3, help="chest X-ray CV folds")
    parser.add_argument("--name", default=None, help="result file name")
    args = parser.parse_args()
    if args.subsets < 2 and not args.chestxray:
        parser.error("--subsets: at least 2 (the summary gives the spread over target sets)")
    args.name = args.name or ("transfer_chestxray" if args.chestxray else "transfer_ham10000")
    os.chdir(ROOT)
    (chestxray if args.chestxray else ham10000)(args)


if __name__ == "__main__":
    main()
