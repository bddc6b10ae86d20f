"""Argmax against the balanced-accuracy decision rule (per-class logit offsets fitted on each
model's validation rows by scripts/evaluate.py), tabulated from existing evaluations.

    python -m benchmarks.quality.decision_rule --evals runs/ensembles/*/eval --name decision_rule_ham10000

Reads each evaluation's metrics.json (`balanced_decision`: the offsets, balanced accuracy with
and without them on the same test rows, and the paired lesion-bootstrap interval of the gain);
computes nothing new, so the table is exactly what those evaluations reported.
"""

from __future__ import annotations

import argparse
import json
import os

from benchmarks.common import publish


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evals", nargs="+", required=True, help="evaluation folders")
    parser.add_argument("--name", default="decision_rule")
    args = parser.parse_args()
    rows, data = [], {}
    for folder in args.evals:
        with open(os.path.join(folder, "metrics.json")) as f:
            rule = json.load(f).get("balanced_decision")
        if not rule:
            continue
        label = os.path.basename(os.path.dirname(os.path.normpath(folder)))
        lo, hi = rule["gain_ci95"]
        mel = rule.get("mel_recall")
        rows.append(f"| {label} | {rule['argmax_balanced_accuracy']:.3f} | "
                    f"{rule['balanced_accuracy']:.3f} | {100 * rule['gain']:+.1f} "
                    f"[{100 * lo:+.1f}, {100 * hi:+.1f}] | "
                    f"{'n/a' if mel is None else f'{mel:.3f}'} |")
        data[label] = rule
    lines = ["# Decision rule for balanced accuracy: argmax vs per-class offsets fitted on "
             "validation", "",
             "Same test rows for both columns; the gain's interval is a paired 95% lesion "
             "bootstrap. The offsets are fitted on each model's validation rows (an ensemble's: "
             "its calibration rows), never on test.", "",
             "| model | balanced accuracy, argmax | with the rule | gain, points [95% CI] | "
             "melanoma recall with the rule |", "| --- | ---: | ---: | --- | ---: |", *rows]
    publish(args.name, lines, data)


if __name__ == "__main__":
    main()
