"""Cross-validation results as a result file: pooled out-of-fold figures first, the fold
spread, the test split once per final row, and the stack of the fold models.

    python -m benchmarks.quality.cv_table --cv runs/cv/cpu_image_meta [--stack runs/cv/stack] \
        --made-by "python scripts/cv.py ..." --made-by "python scripts/stack.py --cv ..." \
        --name cv_ham10000_cpu

Reads only the folders' own files (oof/metrics.json, fold runs, systems.json). Wall minutes
per fold are the run's own (config.yaml written to summary.json written), on this machine
under whatever load it had.
"""

from __future__ import annotations

import argparse
import json
import os

from benchmarks.common import write_result


def _cell(m) -> str:
    ci = m.get("ci95")
    return f"{m['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def run_minutes(run: str) -> float:
    """A finished run's wall minutes: config.yaml written to summary.json written."""
    return (os.path.getmtime(os.path.join(run, "summary.json")) -
            os.path.getmtime(os.path.join(run, "config.yaml"))) / 60


def fold_minutes(cv_dir: str) -> list[float]:
    return [run_minutes(os.path.join(cv_dir, name)) for name in sorted(os.listdir(cv_dir))
            if name.startswith("fold_") and
            os.path.exists(os.path.join(cv_dir, name, "summary.json"))]


def write_table(args, text: list[str], data: dict) -> None:
    """The result file: `text`, then the commands that made the folders (--made-by)."""
    if args.made_by:
        text = [*text, "Made by:", "", *[f"- `{c}`" for c in args.made_by]]
    kwargs = {"folder": args.results} if args.results else {}
    print(write_result(args.name, "\n".join(text), data, **kwargs))


def cv_rows(cv_dirs) -> tuple[list[str], dict]:
    lines = ["| cross-validation | folds | OOF rows | OOF balanced accuracy [95% CI] | fold mean "
             "+- sd | OOF macro AUC | OOF melanoma recall | wall minutes (folds) |",
             "| --- | ---: | ---: | --- | --- | --- | --- | --- |"]
    data = {}
    for d in cv_dirs:
        with open(os.path.join(d, "oof", "metrics.json")) as f:
            m = json.load(f)
        with open(os.path.join(d, "cv.json")) as f:
            setting = json.load(f)
        spread = m["fold_spread"]["balanced_accuracy"]
        mel = next((r["recall"] for r in m["per_class"] if r["class"] == "mel"), float("nan"))
        minutes = fold_minutes(d)
        lines.append(f"| {setting['name']}, {setting['modality']} (`{d}`) | {m['folds']} | "
                     f"{m['rows']} | {_cell(m['metrics']['balanced_accuracy'])} | "
                     f"{spread['mean']:.3f} +- {spread['sd']:.3f} | "
                     f"{_cell(m['metrics']['macro_auc'])} | {mel:.3f} | "
                     f"{sum(minutes):.0f} ({', '.join(f'{x:.0f}' for x in minutes)}) |")
        data[d] = {"setting": setting, "metrics": m["metrics"], "fold_spread": m["fold_spread"],
                   "minutes": minutes}
    return lines, data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cv", nargs="+", required=True, help="cross-validation folders")
    parser.add_argument("--stack", help="a scripts/stack.py --cv folder (systems.md)")
    parser.add_argument("--made-by", action="append", default=[],
                        help="the commands that made the folders (repeatable)")
    parser.add_argument("--name", default="cv_ham10000_cpu")
    parser.add_argument("--results", default=None, help="result folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    lines, data = cv_rows(args.cv)
    text = ["# Cross-validation on HAM10000's development rows (the test split untouched)", "",
            "Pooled out-of-fold (OOF) predictions: every development row once, from the fold "
            "model that never trained or validated on its lesion; 95% lesion-bootstrap "
            "intervals. These are the figures choices are made on "
            "(docs/cross_validation.md).", "", *lines, ""]
    if args.stack:
        with open(os.path.join(args.stack, "systems.md")) as f:
            text += ["## Stacking the fold models (and the test split, scored once)", "",
                     f.read()]
        with open(os.path.join(args.stack, "systems.json")) as f:
            data["stack"] = json.load(f)
    write_table(args, text, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
