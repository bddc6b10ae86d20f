"""The report systems of benchmarks/quality/run_baselines.py, one function each: train and evaluate a
system's runs under a Bench and return its rows of the results table."""

from __future__ import annotations

import os

from benchmarks.common import ROOT, timed
from benchmarks.quality.baseline_bench import (
    CFG,
    FITZ_ENCODERS,
    make_row,
    metric_value,
    missing_row,
    shown_path,
    train_command,
)


def xception(bench):
    cfg_sets = [*bench.ham(), *bench.cpu("xception")]
    cfg = bench.config("xception_ham10000.yaml", cfg_sets)
    isic = os.path.join(bench.data_root, "isic2018")
    external = (os.path.join(ROOT, "configs", "isic2018_test.yaml")
                if os.path.isdir(isic) and bench.budget != "tiny" else None)
    workdir = os.path.join(bench.out, "xception", "group")
    run = bench.train_eval(workdir, cfg)
    runs = {"group": run}
    if external:
        runs["isic2018"] = {**bench.evaluate(workdir, external), "train_seconds": 0.0}
        report = f"{metric_value(runs['isic2018']):.3f} (ISIC 2018 test, {runs['isic2018']['n_test']})"
    else:
        report = (f"not run: no ISIC 2018 Task 3 test set in {shown_path(isic)} (then: python "
                  f"scripts/evaluate.py --checkpoint {run['workdir']} --data "
                  "configs/isic2018_test.yaml)")
    extra = ["ImageNet weights: NONE given, random initialisation (the report fine-tuned "
             "ImageNet weights; pass --set model.pretrained=xception.h5)"
             if not cfg.model.pretrained else f"weights {cfg.model.pretrained}",
             f"head-only epochs: {cfg.train.freeze_encoder_epochs}, then from Keras block 13"]
    return [make_row("xception", "1. Xception transfer learning, HAM10000", "80% accuracy (ISIC "
                 "2018 Task 3 test, 1,511 images)", cfg, runs, bench, report, extra,
                 train_command("xception_ham10000.yaml"))]


def fitzpatrick(bench):
    """Random search on the small CNN, the report's other encoders with its best values,
    and image + Fitzpatrick type; on a synthetic set when the images are missing."""
    from multimodal.data.sources.synthetic import fitzpatrick17k_counts, write_fitzpatrick17k
    from multimodal.search import run_search

    real_csv = os.path.join(bench.data_root, "fitzpatrick17k", "fitzpatrick17k.csv")
    real_images = os.path.join(bench.data_root, "fitzpatrick17k", "images")
    real = (bench.budget != "tiny" and os.path.isdir(real_images)
            and len(os.listdir(real_images)) > 1000)
    if real:
        sets, data_note = [], f"real images ({shown_path(real_images)})"
    else:
        folder = os.path.join(bench.out, "fitzpatrick17k_synthetic")
        tiny = bench.budget == "tiny"
        # the real classes at 1/8 of their sizes (8 to 82 images each, 2,086 in all)
        counts = None if tiny else fitzpatrick17k_counts(real_csv, scale=1 / 8, minimum=8)
        csv_path = os.path.join(folder, "fitzpatrick17k.csv")
        if not os.path.exists(csv_path):
            write_fitzpatrick17k(folder, counts, n_classes=6 if tiny else 114, per_class=60,
                                 size=48 if tiny else 96)
        n_images = sum(counts.values()) if counts else (360 if tiny else 114 * 60)
        sets = [f"data.options.csv={csv_path}", f"data.options.image_dir={folder}/images"]
        data_note = (f"SYNTHETIC Fitzpatrick-format set ({n_images} drawn images"
                     + (", the real classes at 1/8 of their sizes" if counts else "")
                     + "; the real images are not here: python "
                     f"scripts/download_fitzpatrick17k.py --csv {shown_path(real_csv)} --out "
                     f"{shown_path(real_images)})")
    common = [*sets, *bench.cpu("fitzpatrick")]
    search_dir = os.path.join(bench.out, "fitzpatrick", "search")
    trials = 1 if bench.budget == "tiny" else 10

    def search():  # a finished search is read back at once
        return run_search(os.path.join(CFG, "fitzpatrick17k.yaml"),
                          os.path.join(CFG, "fitzpatrick17k_space.yaml"), search_dir,
                          trials=trials, sampler="random", overrides=common,
                          smoke=bench.budget == "tiny", modality="image",
                          show_progress=not bench.args.no_progress, log=print)
    made = []
    search_seconds = timed(search_dir, "best_config.yaml", lambda: made.append(search()))
    result = made[0] if made else search()
    best = result["best"]
    best_sets = list(best["params"].items())  # (key, value): no YAML round trip
    variants = {"small_cnn (search best)": {**bench.evaluate(best["workdir"]),
                                            "train_seconds": search_seconds}}
    for encoder, size in FITZ_ENCODERS[bench.budget]:
        cfg = bench.config("fitzpatrick17k.yaml", [
            *common, *best_sets, *bench.cpu("fitzpatrick_encoders"), f"model.encoder={encoder}",
            "model.encoder_options={}", f"data.image_size={size}"], "image")
        variants[encoder] = bench.train_eval(os.path.join(bench.out, "fitzpatrick", encoder), cfg)
    chosen = max(variants, key=lambda v: variants[v]["best_val"].get("best_weighted_f1", -1))
    run = variants[chosen]
    cfg = bench.config("fitzpatrick17k.yaml", [*common, *best_sets], "image")
    cell = (f"acc {metric_value(run):.3f}, wF1 {metric_value(run, 'weighted_f1'):.3f} (the same split: "
            "no groups in Fitzpatrick17k)")
    listing = ", ".join(f"{v}: acc {metric_value(r):.3f} / wF1 {metric_value(r, 'weighted_f1'):.3f}"
                        for v, r in variants.items())
    extra = [data_note, f"random search {result['finished']} trials (best {best['params']})",
             f"reported variant: {chosen} (best validation weighted F1); all: {listing}",
             "70/15/15 stratified on label + Fitzpatrick range"]
    rows = [make_row("fitzpatrick", "2. Fitzpatrick17k, 114 classes: small CNN / VGG / ResNet-50 "
                 "v2 / InceptionV3", "0.32 accuracy, 0.33 weighted F1", cfg, variants, bench,
                 cell, extra, train_command("fitzpatrick17k.yaml") + " (after downloading the images)",
                 metric="accuracy", group_run=run)]
    rows[0]["grouped_weighted_f1"] = metric_value(run, "weighted_f1")
    # image + Fitzpatrick type, the search's best values
    cfg_meta = bench.config("fitzpatrick17k.yaml", [*common, *best_sets], "image+meta")
    meta = bench.train_eval(os.path.join(bench.out, "fitzpatrick", "image_meta"), cfg_meta)
    rows.append(make_row("fitzpatrick_meta", "2. Fitzpatrick17k, small CNN + Fitzpatrick type "
                     "(image+meta)", "- (report: image only)", cfg_meta, {"group": meta}, bench,
                     f"acc {metric_value(meta):.3f}, wF1 {metric_value(meta, 'weighted_f1'):.3f} (same split)",
                     [data_note, "the search's best optimiser and rate"],
                     train_command("fitzpatrick17k.yaml", modality="image+meta")))
    return rows


def _resnet(bench, depth, claim):
    key, config = f"resnet{depth}", f"resnet{depth}_ham10000.yaml"
    runs = bench.protocols(key, config)
    cfg = bench.config(config, [*bench.ham(), *bench.cpu(key)])
    extra = ["oversampling, augmentation of all classes but nv, Adam + plateau, 10% test"]
    if "image" in runs:
        gap = metric_value(runs["image"]) - metric_value(runs["group"])
        extra.insert(0, f"leakage gap (image-level minus grouped accuracy): {gap:+.3f}")
    return [make_row(key, f"3. ResNet-{depth} from scratch, HAM10000", claim, cfg, runs, bench,
                 extra=extra, gpu_command=train_command(config) + " (and --set data.split_by=image)")]


def resnet18(bench):
    return _resnet(bench, 18, "88% accuracy (random 10% image-level split)")


def resnet50(bench):
    return _resnet(bench, 50, "85% accuracy (random 10% image-level split)")


def chestxray(bench):
    root = os.path.join(bench.data_root, "covid_chestxray")
    config = "chestxray_opacity.yaml"
    if not os.path.isdir(root):
        return [missing_row("chestxray", "4. Chest X-ray opacity, Xception",
                         "77.8% binary accuracy (SIIM data)", f"no data at {shown_path(root)}", bench)]
    rows = []
    both = (("image", "chestxray"), ("image+meta", "chestxray_meta"))
    for modality, key in both[1:] if bench.budget == "tiny" else both:  # --tiny: one of them
        cfg = bench.config(config, bench.cpu("chestxray"), modality)
        run = bench.train_eval(os.path.join(bench.out, key, "group"), cfg)
        extra = ["covid-chestxray-dataset (opacity vs no finding), split by patient",
                 ("NOT REPRODUCED: merging an external chest X-ray set and pretraining on the "
                  "merged set (no second set here; data.sources and model.init_from do both, "
                  "measured in transfer_chestxray.md)"),
                 "equalisation, flip/zoom/shear/brightness, two stages",
                 "Xception from random init (no ImageNet file given)"]
        rows.append(make_row(key, f"4. Chest X-ray opacity, Xception ({modality})",
                         "77.8% binary accuracy (SIIM data, image)" if modality == "image"
                         else "- (report: image only)", cfg, {"group": run}, bench,
                         "n/a (the report's SIIM data are not here)", extra,
                         train_command(config, modality=modality)))
    return rows


def adasyn(bench):
    config = "smallcnn_adasyn_ham10000.yaml"
    runs = bench.protocols("adasyn", config, tiny_both=True)  # --tiny: the cheapest model
    cfg = bench.config(config, [*bench.ham(), *bench.cpu("adasyn")])
    gap = metric_value(runs["image"]) - metric_value(runs["group"])
    return [make_row("adasyn", "5. Small CNN, 32 px, ADASYN, HAM10000", "72% accuracy", cfg, runs,
                 bench, extra=[f"leakage gap (image-level minus grouped accuracy): {gap:+.3f}",
                               "ADASYN on the training split", "whole picture squashed"],
                 gpu_command=train_command(config))]


def vgg16_frozen(bench):
    config = "vgg16_frozen_ham10000.yaml"
    runs = bench.protocols("vgg16_frozen", config)
    cfg = bench.config(config, [*bench.ham(), *bench.cpu("vgg16_frozen")])
    return [make_row("vgg16_frozen", "5. VGG-16, frozen base, 32 px, HAM10000", "63.6% accuracy",
                 cfg, runs, bench, extra=[("frozen base RANDOMLY INITIALISED (no ImageNet VGG "
                                           "weights here): a random-feature probe")],
                 gpu_command=train_command(config))]


def design(bench):
    from multimodal.ensemble.build import build_stacking
    from multimodal.training.trainer import train

    config = "design_ham10000.yaml"
    sets = [*bench.ham(), *bench.cpu("design")]
    cfg = bench.config(config, sets)
    fusion = bench.train_eval(os.path.join(bench.out, "design", "fusion"), cfg)
    image_cfg = bench.config(config, sets, "image")
    stack_dir = os.path.join(bench.out, "design", "stacking")
    folds = 3 if bench.budget in ("tiny", "cpu") else 5
    os.makedirs(stack_dir, exist_ok=True)
    seconds = timed(stack_dir, "manifest.json", lambda: build_stacking(
        image_cfg, stack_dir, train, folds, show_progress=not bench.args.no_progress))
    member = bench.evaluate(os.path.join(stack_dir, "full"))
    stack = {**bench.evaluate(stack_dir), "train_seconds": seconds, "epochs": member["epochs"]}
    note = (f"image-only member alone: acc {metric_value(member):.3f}, balanced acc "
            f"{metric_value(member, 'balanced_accuracy'):.3f}")
    return [
        make_row("fusion", "6a. Image + metadata fusion (design), HAM10000", "- (design)", cfg,
             {"group": fusion}, bench, "-", ["concat fusion, modality dropout 0.1", note],
             train_command(config)),
        make_row("stacking", "6b. XGBoost stacking on the image model (design), HAM10000",
             "- (design)", image_cfg, {"group": stack}, bench, "-",
             [f"{folds} grouped folds of out-of-fold probabilities + metadata", note],
             f"python scripts/stack.py --config configs/baselines/{config} --modality image "
             "--folds 5"),
    ]
