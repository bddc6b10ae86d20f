"""Why does metadata add so little? Image+meta heads on frozen features, one change at a time,
each paired against the image-only head on the same split, seed and schedule.

    python -m benchmarks.quality.metadata_gain --features runs/ham_lite0/features/efficientnet_lite0-<digest> \
        --root runs/ham_lite0 --out runs/metadata_gain --set train.epochs=20

Rows: the default fusion (concat of the image features and a 64-64 metadata MLP, metadata
hidden for 10% of training examples); no or more modality dropout; FiLM and logit fusion;
age in quantile bins; one metadata column at a time (age; anatomical site); a smaller
metadata MLP (overfitting).
Every row's gain is image+meta minus image in points of balanced accuracy (and macro AUC),
with a paired lesion-bootstrap 95% interval from scripts/compare.py. Heads train on cached
(frozen) encoder features, minutes each on 2 cores: a proxy for the fine-tuned recipe, where
each variant would cost 20+ minutes.
"""

from __future__ import annotations

import json
import os

from benchmarks.common import (ROOT, cell, feature_bench_parser, points, publish, run_script,
                    train_and_evaluate)

VARIANTS = {  # label: (modality, overrides)
    "image only (the reference)": ("image", []),
    "concat, modality dropout 0.1 (default)": ("image+meta", []),
    "concat, no modality dropout": ("image+meta", ["model.modality_dropout=0.0"]),
    "concat, modality dropout 0.3": ("image+meta", ["model.modality_dropout=0.3"]),
    "FiLM (metadata scales and shifts the image features)": ("image+meta", ["model.fusion=film"]),
    "logit (metadata logits added to the image logits)": ("image+meta", ["model.fusion=logit"]),
    "concat, age in 8 quantile bins (one-hot)": ("image+meta",
                                                 ["data.metadata_encoding={age: binned}"]),
    "concat, age only": ("image+meta", ["data.metadata=[age]"]),
    "concat, anatomical site only": ("image+meta", ["data.metadata=[localization]"]),
    "concat, metadata MLP 16 wide (less to overfit)": ("image+meta", ["model.meta_hidden=[16]"]),
}


def gain_cell(gain: dict, metric: str) -> str:
    """A metric's paired gain in points ('' for the reference row, which has none)."""
    return points(gain[metric]) if metric in gain else ""


def main():
    parser = feature_bench_parser(__doc__)
    parser.add_argument("--only", nargs="+", type=int, help="variant numbers (0 = reference)")
    parser.add_argument("--out", default="runs/metadata_gain")
    parser.add_argument("--name", default="metadata_gain_ham10000")
    args = parser.parse_args()
    os.chdir(ROOT)  # the scripts run from the repository root: relative paths mean the same
    shared = [f"model.features={args.features}",
              f"data.split_file={os.path.join(args.root, 'split.csv')}", *args.set]
    chosen = [v for i, v in enumerate(VARIANTS) if args.only is None or i in args.only or i == 0]
    rows, data = [], {}
    reference = None
    for label in chosen:
        modality, sets = VARIANTS[label]
        workdir = os.path.join(args.out, f"v{list(VARIANTS).index(label)}")
        minutes = train_and_evaluate(args.config, modality, workdir, [*shared, *sets])
        with open(os.path.join(workdir, "eval", "metrics.json")) as f:
            result = json.load(f)
        m = result["metrics"]
        gain = {}
        if reference is None:
            reference = workdir
        else:
            gain_json = os.path.join(workdir, "gain_vs_image.json")
            run_script("scripts/compare.py", os.path.join(reference, "eval"),
                       os.path.join(workdir, "eval"), "--names", "image", "image+meta",
                       "--out", gain_json)
            with open(gain_json) as f:
                gain = json.load(f)["metrics"]
        with open(os.path.join(workdir, "summary.json")) as f:  # what a user could pick by
            val = json.load(f)["best_balanced_accuracy"]     # (validation, never test)
        mel = next((r for r in result["per_class"] if r["class"] == "mel"),
                   {"recall": float("nan")})
        rows.append(f"| {label} | {' '.join(sets) or '-'} | {val:.3f} | "
                    f"{cell(m['balanced_accuracy']['value'], m['balanced_accuracy']['ci95'])} | "
                    f"{gain_cell(gain, 'balanced_accuracy')} | {m['macro_auc']['value']:.3f} | "
                    f"{gain_cell(gain, 'macro_auc')} | {mel['recall']:.3f} | {minutes:.1f} |")
        data[label] = {"workdir": workdir, "overrides": sets, "metrics": m, "gain": gain,
                       "validation_balanced_accuracy": val,
                       "melanoma_recall": mel["recall"], "minutes": minutes}
        print(rows[-1], flush=True)
    title = "# Where the metadata gain goes: fusion variants on frozen Lite0 features (HAM10000)"
    lines = [title,
             "", (f"Config `{args.config}` with {', '.join(f'`{s}`' for s in shared)}; grouped "
             "test split, 95% lesion-bootstrap intervals (1000 resamples); gains are paired "
             "against the image-only head on the same rows (scripts/compare.py)."), "",
             ("| variant | overrides | validation balanced accuracy (best epoch) | test balanced "
              "accuracy | gain, points | macro AUC | AUC gain, points | melanoma recall | "
              "minutes |"),
             "| --- | --- | ---: | --- | --- | ---: | --- | ---: | ---: |", *rows,
             "", ("One seed each. The validation column is what a user choosing a variant may "
                  "look at; test intervals of variants overlap, and picking the best of several "
                  "on test would overstate its gain.")]
    publish(args.name, lines, data)


if __name__ == "__main__":
    main()
