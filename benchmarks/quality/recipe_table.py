"""The HAM10000 recipe ledger: every ingredient measured so far, one row each, read from the
benchmark result files (never typed in), into benchmarks/results/recipe_ham10000.md.

    python -m benchmarks.quality.recipe_table

Every row names the result file it comes from; that file holds the command that made it.
All rows share the grouped test split (1502 images of 1121 lesions, runs/ham_lite0/split.csv);
intervals are 95% lesion-bootstrap intervals from those files. A missing file is skipped.
"""

from __future__ import annotations

import argparse
import json
import os

from benchmarks.common import RESULTS, cell, points, write_result

# (result file, entry, what the row measures)
ROWS = [
    ("ensembles_ham10000", "image (heads on frozen features)",
     "frozen Lite0 features (128 px), MLP head, image"),
    ("ensembles_ham10000", "image: class-weighted logistic regression on the same features (peer)",
     "frozen features, class-weighted logistic regression (peer)"),
    ("ensembles_ham10000", "image+meta (heads on frozen features)",
     "frozen features, concat fusion head, image+meta"),
    ("ensembles_ham10000", "late fusion of image + meta (weights on val)",
     "late fusion of image and meta heads (weights on validation)"),
    ("ensembles_ham10000", "XGBoost stacking: 3-fold OOF image probs + metadata (members: train.epochs=8)",
     "XGBoost stacking on 3-fold out-of-fold image probabilities + metadata"),
    ("ensembles_ham10000", "XGBoost stacking: 3-fold OOF image probs + metadata + lesion context "
     "(label proxy in HAM10000) (members: train.epochs=8)",
     "the same + lesion context (a label proxy in HAM10000)"),
    ("finetune_lite0_cpu128", "image+meta", "fine-tuned end to end, 128 px, 5 epochs, image+meta"),
    ("recipe_ham10000_cpu", "image+meta", "recipe: + Shades of Gray, colour jitter, balance 0.5, "
     "encoder lr x0.3, EMA, label smoothing; 3 epochs, image+meta"),
    ("recipe_ham10000_cpu", "image", "the recipe, image only"),
    ("recipe_ham10000_cpu_camera", "image", "the recipe + camera augmentation (squash p=0.5, "
     "gamma, white balance, JPEG q20-95 p=0.5), image only"),
    ("recipe_ham10000_cpu_camera", "image+meta", "the recipe + camera augmentation, image+meta"),
    ("recipe_ham10000_cpu_camera_film", "image+meta", "the recipe + camera augmentation, "
     "image+meta, FiLM fusion"),
]
RULE_FILE = {"ensembles_ham10000": ("decision_rule_ham10000", {
    "image (heads on frozen features)": "image", "image+meta (heads on frozen features)":
    "image_meta", "late fusion of image + meta (weights on val)": "late_fusion"})}

SHIFT_FILE = ("shift_drop_ham10000", {"image (heads on frozen features)": "image/all",
                                      "image+meta (heads on frozen features)": "image_meta/all"})


def load(name: str) -> dict | None:
    path = os.path.join(RESULTS, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def minutes(entry: dict) -> str:
    for key, scale in (("train_minutes", 1), ("train_seconds", 60), ("build_seconds", 60)):
        if key in entry:
            return f"{entry[key] / scale:.1f}"
    return ""


def rule(name: str, key: str, entry: dict) -> str:
    if "balanced_decision" in entry:
        return f"{entry['balanced_decision']['balanced_accuracy']:.3f}"
    if name in RULE_FILE and key in RULE_FILE[name][1]:
        rules = load(RULE_FILE[name][0]) or {}
        found = rules.get(RULE_FILE[name][1][key])
        return f"{found['balanced_accuracy']:.3f}" if found else ""
    return ""


def shift(name: str, key: str, entry: dict) -> str:
    drop = entry.get("shift_drop")
    if drop is None and name == "ensembles_ham10000" and key in SHIFT_FILE[1]:
        drop = ((load(SHIFT_FILE[0]) or {}).get(SHIFT_FILE[1][key]) or {}).get("balanced_accuracy")
    if not drop:
        return ""
    return points(drop)


# Paired comparisons of two runs' evaluations (scripts/compare.py --out into the results folder)
PAIRED = [("recipe_camera_vs_plain_original", "camera augmentation minus plain recipe, image, "
           "original test split", "runs/recipe_cpu/image/eval runs/recipe_camera/image/eval"),
          ("recipe_camera_vs_plain_shifted", "the same on the shifted copy",
           "runs/recipe_cpu/image/eval_shifted runs/recipe_camera/image/eval_shifted")]


def paired_lines() -> list[str]:
    lines = []
    for name, what, evals in PAIRED:
        data = load(name)
        if not data:
            continue
        parts = []
        for metric in ("balanced_accuracy", "macro_auc", "accuracy"):
            d = data["metrics"][metric]
            parts.append(f"{metric.replace('_', ' ')} {d['a']:.3f} -> {d['b']:.3f}, "
                         f"{100 * d['difference']:+.1f} points [{100 * d['ci95'][0]:+.1f}, "
                         f"{100 * d['ci95'][1]:+.1f}]")
        lines.append(f"- {what}: " + "; ".join(parts) + f" (`python scripts/compare.py {evals} "
                     f"--names plain camera --out benchmarks/results/{name}.json`)")
    return ["", "Paired differences (1000 lesion-bootstrap resamples, same test rows):", *lines] \
        if lines else []


def each_shift_lines() -> list[str]:
    """Which shift costs the fine-tuned recipe most (shift_drop.py --each)."""
    data = load("shift_drop_each_recipe_cpu")
    if not data:
        return []
    cells = [f"{key.split('/')[1]} {100 * value['balanced_accuracy']['difference']:+.1f}"
             for key, value in data.items() if "/" in key and "balanced_accuracy" in value]
    return ["", "One shift at a time, the plain recipe (image), points of balanced accuracy: "
            + ", ".join(cells) + " (`shift_drop_each_recipe_cpu.md`)."]


def metadata_variant_lines(name: str = "metadata_gain_ham10000", seed: int = 0) -> list[str]:
    """Where the metadata gain goes: fusion variants on frozen features (metadata_gain.py)."""
    data = load(name)
    if not data:
        return []
    cells = []
    for label, entry in data.items():
        gain = entry.get("gain", {}) if isinstance(entry, dict) else {}
        if "balanced_accuracy" in gain:
            cells.append(f"{label} {points(gain['balanced_accuracy'])}")
    return ["", f"Metadata variants, heads on frozen Lite0 features, training seed {seed}, "
            "image+meta minus the image-only head (points of balanced accuracy, paired): "
            + "; ".join(cells) + f" (`{name}.md`)."] if cells else []


def corruption_drops() -> dict:
    """CV folder -> its fold model's mean drop over the corruption families at severity 3,
    plain and with BatchNorm adapted, in points (shift_severity.py result files)."""
    out = {}
    for name in ("shift_severity_cv_fold0_image_meta", "shift_severity_cv_fold0_image"):
        data = load(name)
        if not data or "runs/cv/" not in data["run"]:
            continue
        folder = "runs/cv/" + data["run"].split("runs/cv/", 1)[1].rsplit("/fold_", 1)[0]
        cells = [c for k, c in data["cells"].items() if k.endswith("-s3") and c.get("drop")]
        if not cells:
            continue
        plain = 100 * sum(c["drop"]["difference"] for c in cells) / len(cells)
        adapted = [c["adapted"]["drop"]["difference"] for c in cells
                   if (c.get("adapted") or {}).get("drop")]
        out[folder] = f"{plain:+.1f}" + (f" ({100 * sum(adapted) / len(adapted):+.1f} "
                                         "adapted)" if adapted else "")
    return out


def cv_lines() -> list[str]:
    """The rows re-measured on grouped cross-validation (cv_table.py, screen_table.py): the
    evidence choices are made on now; the test split scored once per final row."""
    data, screens = load("cv_ham10000_cpu"), load("screen_resolution_cpu")
    if not data:
        return []
    lines = ["", "## Re-measured on grouped cross-validation (the evidence choices are made on)",
             "", ("Pooled out-of-fold (OOF) balanced accuracy over the development rows, the test "
                  "split untouched by every choice; a stack's members are these fold models. "
                  "`test` is scored once per final row, a check, not a target."), "",
             ("Corruption drop: the fold-0 model on its held-out rows, mean over the 12 "
              "families at severity 3 minus clean, in points (with BatchNorm re-estimated on "
              "each copy: `adapted`; shift_severity_cv_fold0_*.md)."), "",
             "| what was measured | OOF balanced accuracy [95% CI] | fold mean +- sd | OOF macro "
             "AUC | test, once | corruption drop | chosen by | minutes | source |",
             "| --- | --- | --- | --- | --- | --- | --- | ---: | --- |"]
    drops = corruption_drops()
    for key, entry in data.items():
        if not key.startswith("runs/"):
            continue
        m, spread = entry["metrics"], entry["fold_spread"]["balanced_accuracy"]
        setting = entry["setting"]
        systems = data.get("stack", {}).get("systems", {})
        test = next((v["test"]["balanced_accuracy"] for k, v in systems.items()
                     if k == f"member:{os.path.basename(key)}"), None)
        lines.append(f"| `{setting['name']}`, {setting['modality']}, {setting['folds']} folds "
                     f"(`{key}`) | {cell(m['balanced_accuracy']['value'], m['balanced_accuracy']['ci95'])}"
                     f" | {spread['mean']:.3f} +- {spread['sd']:.3f} | "
                     f"{cell(m['macro_auc']['value'], m['macro_auc']['ci95'])} | "
                     + (f"{cell(test['value'], test['ci95'])} (fold average)" if test else "")
                     + f" | {drops.get(key, '')} | {setting['folds']}-fold OOF | "
                     f"{sum(entry['minutes']):.0f} | "
                     "`cv_ham10000_cpu.md` |")
    for name, system in data.get("stack", {}).get("systems", {}).items():
        if name.startswith(("member:", "single:")):
            continue
        oof, test = system["oof"], system["test"]
        lines.append(f"| {name} on both CV folders' OOF probabilities | "
                     f"{cell(oof['balanced_accuracy']['value'], oof['balanced_accuracy']['ci95'])}"
                     f" | | {cell(oof['macro_auc']['value'], oof['macro_auc']['ci95'])} | "
                     f"{cell(test['balanced_accuracy']['value'], test['balanced_accuracy']['ci95'])}"
                     " | | OOF (its own inner grouped split) | | `cv_ham10000_cpu.md` |")
    for key, entry in ((screens or {}).get("screens") or {}).items():
        if key == screens["reference"]:
            continue
        d = entry["comparison"]["metrics"]["balanced_accuracy"]
        lines.append(f"| screen: {entry['setting']} (`{key}`) | fold {screens['fold']} only: "
                     f"{d['b']:.3f}, {points(d)} vs the recipe's fold model | | | | | fold-"
                     f"{screens['fold']} screen at equal wall time | {entry['minutes']:.0f} | "
                     "`screen_resolution_cpu.md` |")
    return lines


def main():
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    lines = ["# HAM10000 recipe ledger: each ingredient, measured on the grouped test split", "",
             ("Read the first table with care: each ingredient in it was kept or dropped by its "
              "effect on this one test split (+-5 points of interval), so its gains may not "
              "carry over to another split; its `chosen by` column says so. The cross-"
              "validated rows below are the evidence choices are made on now."), "",
             "Generated by `python -m benchmarks.quality.recipe_table` from the result files named "
             "in the last column (each holds its command). Balanced accuracy and melanoma recall at "
             "argmax; `rule` = per-class logit offsets fitted on validation for balanced "
             "accuracy; shift drop = balanced accuracy on the shifted copy (all six shifts of "
             "scripts/shift_testset.py, seed 0) minus the original, in points, paired interval. "
             "Minutes: training (or building) on this 2-core CPU.", "",
             "| what was measured | balanced accuracy | rule | macro AUC | melanoma recall | "
             "shift drop, points | chosen by | minutes | source |",
             "| --- | --- | ---: | --- | --- | --- | --- | ---: | --- |"]
    for name, key, what in ROWS:
        data = load(name)
        if not data or key not in data:
            continue
        entry, m = data[key], data[key]["metrics"]
        mel = entry.get("mel", {})
        recall = cell(mel["recall"], mel.get("recall_ci95")) if "recall" in mel else ""
        lines.append(f"| {what} | {cell(m['balanced_accuracy']['value'], m['balanced_accuracy']['ci95'])} "
                     f"| {rule(name, key, entry)} | {cell(m['macro_auc']['value'], m['macro_auc']['ci95'])} "
                     f"| {recall} | {shift(name, key, entry)} | the test split | "
                     f"{minutes(entry)} | `{name}.md` |")
    for name in ("recipe_ham10000_cpu", "recipe_ham10000_cpu_camera",
                 "recipe_ham10000_cpu_camera_film"):
        gain = (load(name) or {}).get("metadata_gain")
        if gain:
            low, high = gain["ci95"]
            lines.append(f"\nMetadata gain in `{name}` (image+meta minus image, paired): "
                         f"{100 * gain['difference']:+.1f} points [{100 * low:+.1f}, "
                         f"{100 * high:+.1f}].")
    lines += (paired_lines() + each_shift_lines() + metadata_variant_lines()
              + metadata_variant_lines("metadata_gain_ham10000_seed1", seed=1) + cv_lines())
    path = write_result("recipe_ham10000", "\n".join(lines), {"rows": [r[:2] for r in ROWS]})
    print("\n".join(lines))
    print("->", path)


if __name__ == "__main__":
    main()
