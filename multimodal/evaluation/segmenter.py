"""Evaluate a segmentation run (`task: segmentation`): Dice and IoU per image, their mean
and pooled values with lesion-bootstrap intervals, full-frame masks apart, best and worst
overlays, report.md / report.html.

- Per image: Dice 2TP / (2TP + FP + FN) and IoU TP / (TP + FP + FN) of the mask predicted
  at threshold 0.5 against the true one, both at the run's input size and geometry (what
  the model sees: `data.image_size`, `data.geometry`). Mean: the mean over images (each image
  counts once); pooled: every pixel of the split as one image (large lesions weigh more).
- Intervals: 95% percentile bootstrap resampling groups (lesions) with replacement, since
  images of one lesion are not independent.
- Full-frame masks (the whole picture is lesion, e.g. HAM10000's ISIC_0026042 and
  ISIC_0029819: MASKS.md): their Dice is trivial, so the headline numbers leave them out;
  they are listed apart, and `all_images` holds the numbers with them.
- Overlays: the best and worst images by Dice with the true (green) and predicted (red)
  contours.

Writes metrics.json, per_image.csv, overlays_best.png, overlays_worst.png, report.md and
report.html into the output folder.
"""

from __future__ import annotations

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from multimodal.data.images import geometry  # noqa: E402
from multimodal.data.pipeline.loaders import decode  # noqa: E402
from multimodal.errors import ConfigError  # noqa: E402
from multimodal.evaluation.report import write_report  # noqa: E402
from multimodal.metrics import dice_iou, mask_counts  # noqa: E402
from multimodal.run import load_run, predict_split_masks, run_inputs  # noqa: E402

METRICS = ("dice", "iou", "pooled_dice", "pooled_iou")


def per_image(frame: pd.DataFrame, pred: np.ndarray, target: np.ndarray) -> pd.DataFrame:
    """One row per image: ids, Dice, IoU, pixel counts and mask areas (fractions)."""
    tp, fp, fn = mask_counts(pred, target)
    dice, iou = dice_iou(tp, fp, fn)
    pixels = target[0].size if len(target) else 1
    return frame.assign(dice=dice, iou=iou, tp=tp, fp=fp, fn=fn,
                        area_true=target.reshape(len(target), -1).mean(1),
                        area_pred=pred.reshape(len(pred), -1).mean(1), pixels=pixels)


def summary(rows: pd.DataFrame) -> dict:
    """Mean per-image and pooled Dice / IoU of a per-image table."""
    if rows.empty:
        return {k: float("nan") for k in METRICS}
    pooled_dice, pooled_iou = dice_iou(rows["tp"].sum(), rows["fp"].sum(), rows["fn"].sum())
    return {"dice": float(rows["dice"].mean()), "iou": float(rows["iou"].mean()),
            "pooled_dice": float(pooled_dice), "pooled_iou": float(pooled_iou)}


def bootstrap(rows: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict:
    """95% intervals of `summary`'s metrics, resampling groups with replacement."""
    if n_boot == 0 or rows.empty:
        return {}
    by_group = rows.groupby("group_id")[["dice", "iou", "tp", "fp", "fn"]].sum()
    stats = np.column_stack([by_group.to_numpy(np.float64),
                             rows.groupby("group_id").size().to_numpy(np.float64)])
    rng = np.random.default_rng(seed)
    n = len(stats)
    samples = []
    for _ in range(n_boot):
        s_dice, s_iou, tp, fp, fn, count = stats[rng.integers(n, size=n)].sum(0)
        pooled_dice, pooled_iou = dice_iou(tp, fp, fn)
        samples.append((s_dice / count, s_iou / count, float(pooled_dice), float(pooled_iou)))
    low, high = np.percentile(np.asarray(samples), [2.5, 97.5], axis=0)
    return {k: [float(a), float(b)] for k, a, b in zip(METRICS, low, high)}


def full_frame(frame: pd.DataFrame, table_frame: pd.DataFrame | None,
               target: np.ndarray) -> np.ndarray:
    """Whether each image's source mask is lesion everywhere (else: its fitted mask is)."""
    fitted = target.reshape(len(target), -1).all(1)
    if table_frame is None or "mask_path" not in table_frame:
        return fitted
    paths = table_frame.set_index("image_id")["mask_path"]
    out = []
    for image_id, fallback in zip(frame["image_id"], fitted):
        path = paths.get(image_id)
        if path is None or not os.path.exists(path):
            out.append(bool(fallback))
            continue
        with Image.open(path) as im:
            out.append(bool((np.asarray(im.convert("L")) > 127).all()))
    return np.asarray(out, bool)


def overlay(path: str, cases: list[dict], title: str) -> None:
    """A row of images with the true (green) and predicted (red) mask contours."""
    if not cases:
        return
    fig, axes = plt.subplots(1, len(cases), figsize=(2.6 * len(cases), 3.0), squeeze=False)
    for ax, case in zip(axes[0], cases):
        ax.imshow(case["image"])
        for mask, colour in ((case["target"], "lime"), (case["pred"], "red")):
            if mask.any() and not mask.all():
                ax.contour(mask.astype(float), levels=[0.5], colors=colour, linewidths=1.2)
            elif mask.all():  # no contour to draw: frame the picture
                ax.add_patch(plt.Rectangle((0, 0), mask.shape[1] - 1, mask.shape[0] - 1,
                                           fill=False, edgecolor=colour, linewidth=2))
        ax.set_title(f"{case['image_id']}\nDice {case['dice']:.3f} ({case['label']})",
                     fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{title}: true mask green, prediction red", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cases(run, source, rows: pd.DataFrame, index, masks: dict) -> list[dict]:
    """Overlay inputs of the rows at positions `index` (the picture as the model saw it)."""
    cases = []
    for i in index:
        record = source[int(i)]
        if record["image_id"].decode() != rows["image_id"].iloc[i]:
            raise AssertionError("predictions are not in the prepared split's order")
        image = geometry.fit(decode(record["image"]), run.cfg.data.image_size,
                             run.cfg.data.geometry)
        cases.append({"image": image, "pred": masks["pred"][i], "target": masks["target"][i],
                      "image_id": rows["image_id"].iloc[i], "dice": rows["dice"].iloc[i],
                      "label": rows["label"].iloc[i]})
    return cases


def _cell(result: dict, key: str) -> str:
    value, ci = result[key]["value"], result[key]["ci95"]
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def markdown(result: dict, rows: pd.DataFrame, overlays: list[str]) -> str:
    m, every = result["metrics"], result["all_images"]
    lines = ["# Segmentation report", "",
             f"Checkpoint `{result['checkpoint']}` (step {result['step']}), split "
             f"`{result['split']}`, TTA {'on' if result['tta'] else 'off'}: "
             f"{result['n_images']} images of {result['n_groups']} lesions "
             f"({result['n_full_frame']} full-frame masks reported apart). Masks compared at "
             f"{result['resolution']}.", "",
             f"**Dice {_cell(result['metrics'], 'dice')}**, IoU {_cell(m, 'iou')} (mean per "
             "image); pooled Dice " + _cell(m, "pooled_dice") + ", pooled IoU "
             + _cell(m, "pooled_iou") + ". Intervals: 95% bootstrap over "
             f"{result['bootstrap']['resamples']} resamples of lesions.", "",
             "## Metrics", "", "| metric | without full-frame masks [95% CI] | all images |",
             "| --- | --- | --- |"]
    for key in METRICS:
        lines.append(f"| {key.replace('_', ' ')} | {_cell(m, key)} | {every[key]:.3f} |")
    lines += ["", "## By class (without full-frame masks)", "",
              "| class | images | mean Dice | mean IoU |", "| --- | ---: | ---: | ---: |"]
    for label, part in rows[~rows["full_frame"]].groupby("label"):
        lines.append(f"| {label} | {len(part)} | {part['dice'].mean():.3f} | "
                     f"{part['iou'].mean():.3f} |")
    lines += ["", "## Full-frame masks", ""]
    if result["full_frame"]:
        lines += ["The true mask covers the whole picture: any prediction covering most of it "
                  "scores well, so these images are left out of the numbers above.", "",
                  "| image | lesion | Dice | IoU | predicted area |", "| --- | --- | ---: | ---: "
                  "| ---: |"]
        lines += [f"| {r['image_id']} | {r['group_id']} | {r['dice']:.3f} | {r['iou']:.3f} | "
                  f"{r['area_pred']:.3f} |" for r in result["full_frame"]]
    else:
        lines.append("None in this split.")
    lines += ["", "## Best and worst images", ""] + [f"![{o}]({o})" for o in overlays]
    lines += ["", f"- Distribution of per-image Dice: median {rows['dice'].median():.3f}, "
              f"10th percentile {rows['dice'].quantile(0.1):.3f}, "
              f"{int((rows['dice'] < 0.5).sum())} images below 0.5.",
              "- An image whose true and predicted masks are both empty scores 1."]
    return "\n".join(lines) + "\n"


def evaluate_segmentation(checkpoint: str, out_dir: str, data_config: str | None = None,
                          split: str = "test", tta: bool = False, n_boot: int = 1000,
                          n_overlays: int = 6) -> dict:
    """Evaluate a segmentation run on its own `split` into `out_dir` (see the module doc);
    return what metrics.json holds."""
    if data_config is not None:
        raise ConfigError("--data: a segmentation run is evaluated on its own split (reading "
                          "another dataset's masks is not supported yet)",
                          "drop --data (use --split test|val|train)")
    run = load_run(checkpoint)
    inputs = run_inputs(run)
    if split not in inputs.sources:
        raise ConfigError(f"--split {split}: the run's split has {sorted(inputs.sources)}")
    frame, masks = predict_split_masks(run, inputs, split, tta=tta)
    rows = per_image(frame, masks["pred"], masks["target"])
    rows["full_frame"] = full_frame(frame, inputs.table_frame, masks["target"])
    main = rows[~rows["full_frame"]]
    intervals = bootstrap(main, n_boot)
    point = summary(main)
    size = run.cfg.data.image_size
    result = {
        "task": "segmentation", "checkpoint": os.path.abspath(checkpoint), "step": run.step,
        "split": split, "tta": tta, "n_images": int(len(rows)),
        "n_groups": int(rows["group_id"].nunique()),
        "n_full_frame": int(rows["full_frame"].sum()),
        "resolution": f"{'x'.join(map(str, geometry.hw(size)))} px (data.geometry {run.cfg.data.geometry}), threshold 0.5",
        "metrics": {k: {"value": point[k], "ci95": intervals.get(k)} for k in METRICS},
        "all_images": summary(rows),
        "full_frame": rows[rows["full_frame"]][["image_id", "group_id", "label", "dice", "iou",
                                                "area_pred"]].to_dict("records"),
        "bootstrap": {"resamples": n_boot, "unit": "group", "seed": 0},
    }
    os.makedirs(out_dir, exist_ok=True)
    overlays = []
    k = min(n_overlays, len(main))
    if k:
        order = main.sort_values("dice", kind="stable").index.to_numpy()
        for name, index, title in (("overlays_best.png", order[::-1][:k], "Best Dice"),
                                   ("overlays_worst.png", order[:k], "Worst Dice")):
            overlay(os.path.join(out_dir, name), _cases(run, inputs.sources[split], rows,
                                                        index, masks), title)
            overlays.append(name)
    rows.drop(columns=["pixels"]).to_csv(os.path.join(out_dir, "per_image.csv"), index=False)
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(result, f, indent=1, default=float)
    write_report(out_dir, markdown(result, rows, overlays))
    return result
