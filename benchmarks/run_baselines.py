"""Every course report's system rebuilt with this toolkit, measured beside what the report
claimed: benchmarks/results/baselines.md (+ .json).

    python benchmarks/run_baselines.py --data-root ../shared/data --budget cpu   # 2 cores: ~6 h
    python benchmarks/run_baselines.py --data-root ../shared/data --budget gpu   # full recipes
    python benchmarks/run_baselines.py --budget cpu --only resnet18 resnet50     # some systems
    python benchmarks/run_baselines.py --tiny                                    # seconds: tests

Systems (--only names; configs in configs/baselines/):
    xception      1. Xception transfer learning, HAM10000 (ISIC 2018 test when present)
    fitzpatrick   2. Fitzpatrick17k: random search (small CNN), VGG-16/19, ResNet-50 v2,
                     InceptionV3, and image + Fitzpatrick type; synthetic data when the
                     images are missing (they are not in ../shared/data)
    resnet18      3. ResNet-18 from scratch, HAM10000: image-level and grouped split
    resnet50      3. ResNet-50 alike
    chestxray     4. chest X-ray opacity, Xception, image vs image + age/sex/view
    adasyn        5. small CNN, 32 px, ADASYN: image-level and grouped split
    vgg16_frozen  5. VGG-16 with a frozen base, 32 px: image-level and grouped split
    design        6. image + metadata fusion and XGBoost stacking (grouped split)

`--budget gpu` trains each config as it is (the reports' resolutions and epochs); `cpu`
applies the reductions listed in CPU below (each row says what ran and the GPU command);
`--tiny` trains the configs' smoke variants, HAM10000 ones on the bundled sample, on a
small synthetic Fitzpatrick17k set: a pipeline check whose numbers mean nothing, written to
baselines_tiny.md (compiled without XLA's backend optimisation: half the compile time).
Runs live in OUT/<budget>/<system>/<protocol>; a finished run is reused (trained again when
its config changed) and an interrupted one resumed, so the command can be repeated after a
stop. Rows of systems not run this time are kept from the previous results file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, ROOT, machine  # noqa: E402

from multimodal.errors import ConfigError, UserError, cli  # noqa: E402

SYSTEMS = ("xception", "fitzpatrick", "resnet18", "resnet50", "chestxray", "adasyn",
           "vgg16_frozen", "design")
CFG = os.path.join(ROOT, "configs", "baselines")
SAMPLE_ROOT = "data.options.root=${MULTIMODAL_SAMPLE}"

# What `--budget cpu` changes, per system (2 CPU cores; each row states it). Training images/s
# measured on 2 shared cores: Xception 64 px 4.5, ResNet-50 64 px 6.9, ResNet-18 64 px 8.1,
# VGG-16 32 px 7.6, small CNN 96 px 30; by those the CPU budget takes about 6 hours on 2 idle
# cores (8-9 on shared ones). Per system (shared cores): xception 80 min, fitzpatrick 75,
# resnet18 100, resnet50 80, chestxray 30, adasyn 25, vgg16_frozen 60, design 45.
CPU = {
    "xception": ["data.image_size=64", "train.epochs=3", "train.freeze_encoder_epochs=1"],
    "fitzpatrick": ["data.image_size=64", "train.epochs=10"],
    "fitzpatrick_encoders": ["train.epochs=2"],  # VGG at 48 px, ResNet 64, Inception 80
    "resnet18": ["data.image_size=64", "train.epochs=3"],
    "resnet50": ["data.image_size=64", "train.epochs=2"],
    "chestxray": ["data.image_size=64", "train.epochs=10", "train.freeze_encoder_epochs=2"],
    "adasyn": ["train.epochs=6"],
    "vgg16_frozen": ["train.epochs=2"],
    "design": ["data.image_size=64", "train.epochs=5"],
}
FITZ_ENCODERS = {"gpu": [("vgg16", 224), ("vgg19", 224), ("resnet50v2", 224),
                         ("inception_v3", 299)],
                 "cpu": [("vgg16", 48), ("vgg19", 48), ("resnet50v2", 64), ("inception_v3", 80)],
                 "tiny": []}


class Bench:
    """One invocation: budget, folders, and how runs are trained and evaluated."""

    def __init__(self, args, argv):
        self.args, self.budget = args, "tiny" if args.tiny else args.budget
        self.command = "python benchmarks/run_baselines.py " + " ".join(argv)
        self.out = os.path.join(args.out, self.budget)
        self.data_root = os.path.abspath(args.data_root)
        self.n_boot = 0 if args.tiny else 1000

    def cpu(self, key: str) -> list[str]:
        return CPU.get(key, []) if self.budget == "cpu" else []

    def ham(self) -> list[str]:
        """HAM10000 configs read the bundled sample in --tiny (same format, 503 images)."""
        return [SAMPLE_ROOT] if self.budget == "tiny" else []

    def config(self, name, sets=(), modality=None):
        from multimodal.config import load_config

        return load_config(os.path.join(CFG, name), list(sets), smoke=self.budget == "tiny",
                           modality=modality)

    def train_eval(self, workdir: str, cfg, data_config: str | None = None) -> dict:
        """Train `cfg` into workdir (reused when finished, resumed when interrupted) and
        evaluate it on its test split (and on `data_config` when given)."""
        from multimodal.config import config_differences, load_run_config
        from multimodal.training.checkpoint import RunCheckpoints
        from multimodal.training.trainer import train

        if os.path.exists(os.path.join(workdir, "config.yaml")):
            changed = config_differences(load_run_config(workdir), cfg)
            if changed:  # made with other settings: not this row's run
                print(f"   {workdir}: config changed ({changed[0]}...): trained again")
                shutil.rmtree(workdir)

        def run():
            train(cfg, workdir, resume=RunCheckpoints.latest_step_in(workdir) is not None,
                  show_progress=not self.args.no_progress)
        seconds = timed(workdir, "summary.json", run)
        return {"train_seconds": seconds, **self.evaluate(workdir, data_config)}

    def evaluate(self, workdir: str, data_config: str | None = None) -> dict:
        from multimodal.evaluation.evaluate import evaluate_run

        t0 = time.perf_counter()
        out = os.path.join(workdir, "eval" if data_config is None else "eval_external")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = evaluate_run(workdir, out, data_config, "test", n_boot=self.n_boot,
                                  n_saliency=0)
        summary_path = os.path.join(workdir, "summary.json")
        summary = {}
        if os.path.exists(summary_path):
            with open(summary_path) as f:
                summary = json.load(f)
        return {"eval_seconds": time.perf_counter() - t0, "workdir": _rel(workdir),
                "metrics": {k: v for k, v in result["metrics"].items()
                            if k in ("accuracy", "balanced_accuracy", "macro_auc",
                                     "weighted_f1")},
                "n_test": result.get("n_images"), "n_groups": result.get("n_groups"),
                "epochs": summary.get("epochs"), "stopped": summary.get("stopped"),
                "best_val": {k: v for k, v in summary.items() if k.startswith("best_")}}

    def protocols(self, key, config, modality=None, sets=(), tiny_both=False):
        """The report's image-level split and the grouped split of one config (--tiny: the
        grouped one only, unless `tiny_both`)."""
        runs = {}
        both = self.budget != "tiny" or tiny_both
        for protocol in (["image"] if both else []) + ["group"]:
            cfg = self.config(config, [*self.ham(), *self.cpu(key), *sets,
                                       f"data.split_by={protocol}"], modality)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the image-level split's leakage warning
                runs[protocol] = self.train_eval(os.path.join(self.out, key, protocol), cfg)
        return runs


def timed(workdir: str, done: str, fn) -> float:
    """Seconds `fn` took to build workdir, measured once: a finished workdir (holding `done`)
    keeps the time of the session that built it."""
    timing = os.path.join(workdir, "baseline_timing.json")
    if os.path.exists(os.path.join(workdir, done)) and os.path.exists(timing):
        with open(timing) as f:
            return json.load(f)["train_seconds"]
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    with open(timing, "w") as f:
        json.dump({"train_seconds": seconds}, f)
    return seconds


# -- rows -------------------------------------------------------------------------------------
def _value(run, metric="accuracy"):
    return run["metrics"][metric]["value"] if run else None


def _what(cfg, run, budget, extra=()) -> str:
    size, epochs = cfg.data.image_size, run.get("epochs") if run else None
    weights = cfg.model.pretrained or "random init"
    parts = [f"{cfg.model.encoder}, {size} px, epochs run: {epochs} ({weights})",
             f"budget {budget}", *extra]
    return "; ".join(parts)


def _row(key, system, claim, cfg, runs, bench, report_cell=None, extra=(), gpu_command=None,
         metric="accuracy", group_run=None):
    group = group_run or runs.get("group")
    image = runs.get("image")
    seconds = sum(r["train_seconds"] + r["eval_seconds"] for r in runs.values() if r)
    report = report_cell if report_cell is not None else (
        f"{_value(image, metric):.3f} (image-level split)" if image else
        "not run in --tiny" if bench.budget == "tiny" else "n/a")
    what = _what(cfg, group, bench.budget, extra)
    if bench.budget == "cpu" and gpu_command:
        what += f"; full recipe: `{gpu_command}`"
    return {"key": key, "system": system, "claim": claim, "report_protocol": report,
            "grouped": _value(group, metric), "metric": metric,
            "balanced_accuracy": _value(group, "balanced_accuracy"),
            "macro_auc": _value(group, "macro_auc"), "seconds": seconds, "what": what,
            "n_test": group["n_test"] if group else None, "runs": runs,
            "budget": bench.budget, "command": bench.command,
            "hardware": _hardware(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def _rel(path: str) -> str:
    """A path as the table shows it: relative to the repository when inside or beside it."""
    rel = os.path.relpath(path, ROOT)
    return path if rel.startswith(os.path.join("..", "..")) else rel


def _hardware() -> str:
    import jax

    devices = jax.devices()
    kind = devices[0].device_kind if devices[0].platform != "cpu" else "CPU"
    return f"{len(devices)} x {kind} ({jax.default_backend()}), {os.cpu_count()} cores"


def _gpu(config, *sets, modality=None):
    parts = ["python scripts/train.py --config", f"configs/baselines/{config}"]
    parts += [f"--modality {modality}"] if modality else []
    parts += [f"--set {s}" for s in sets]
    return " ".join(parts)


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
        report = f"{_value(runs['isic2018']):.3f} (ISIC 2018 test, {runs['isic2018']['n_test']})"
    else:
        report = (f"not run: no ISIC 2018 Task 3 test set in {_rel(isic)} (then: python "
                  f"scripts/evaluate.py --checkpoint {run['workdir']} --data "
                  "configs/isic2018_test.yaml)")
    extra = ["ImageNet weights: NONE given, random initialisation (the report fine-tuned "
             "ImageNet weights; pass --set model.pretrained=xception.h5)"
             if not cfg.model.pretrained else f"weights {cfg.model.pretrained}",
             f"head-only epochs: {cfg.train.freeze_encoder_epochs}, then from Keras block 13"]
    return [_row("xception", "1. Xception transfer learning, HAM10000", "80% accuracy (ISIC "
                 "2018 Task 3 test, 1,511 images)", cfg, runs, bench, report, extra,
                 _gpu("xception_ham10000.yaml"))]


def fitzpatrick(bench):
    """Random search on the small CNN, the report's other encoders with its best values,
    and image + Fitzpatrick type; on a synthetic set when the images are missing."""
    from multimodal.data.synthetic import fitzpatrick17k_counts, write_fitzpatrick17k
    from multimodal.search import run_search

    real_csv = os.path.join(bench.data_root, "fitzpatrick17k", "fitzpatrick17k.csv")
    real_images = os.path.join(bench.data_root, "fitzpatrick17k", "images")
    real = (bench.budget != "tiny" and os.path.isdir(real_images)
            and len(os.listdir(real_images)) > 1000)
    if real:
        sets, data_note = [], f"real images ({_rel(real_images)})"
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
                     f"scripts/download_fitzpatrick17k.py --csv {_rel(real_csv)} --out "
                     f"{_rel(real_images)})")
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
    cell = (f"acc {_value(run):.3f}, wF1 {_value(run, 'weighted_f1'):.3f} (the same split: "
            "no groups in Fitzpatrick17k)")
    listing = ", ".join(f"{v}: acc {_value(r):.3f} / wF1 {_value(r, 'weighted_f1'):.3f}"
                        for v, r in variants.items())
    extra = [data_note, f"random search {result['finished']} trials (best {best['params']})",
             f"reported variant: {chosen} (best validation weighted F1); all: {listing}",
             "70/15/15 stratified on label + Fitzpatrick range"]
    rows = [_row("fitzpatrick", "2. Fitzpatrick17k, 114 classes: small CNN / VGG / ResNet-50 "
                 "v2 / InceptionV3", "0.32 accuracy, 0.33 weighted F1", cfg, variants, bench,
                 cell, extra, _gpu("fitzpatrick17k.yaml") + " (after downloading the images)",
                 metric="accuracy", group_run=run)]
    rows[0]["grouped_weighted_f1"] = _value(run, "weighted_f1")
    # image + Fitzpatrick type, the search's best values
    cfg_meta = bench.config("fitzpatrick17k.yaml", [*common, *best_sets], "image+meta")
    meta = bench.train_eval(os.path.join(bench.out, "fitzpatrick", "image_meta"), cfg_meta)
    rows.append(_row("fitzpatrick_meta", "2. Fitzpatrick17k, small CNN + Fitzpatrick type "
                     "(image+meta)", "- (report: image only)", cfg_meta, {"group": meta}, bench,
                     f"acc {_value(meta):.3f}, wF1 {_value(meta, 'weighted_f1'):.3f} (same split)",
                     [data_note, "the search's best optimiser and rate"],
                     _gpu("fitzpatrick17k.yaml", modality="image+meta")))
    return rows


def _resnet(bench, depth, claim):
    key, config = f"resnet{depth}", f"resnet{depth}_ham10000.yaml"
    runs = bench.protocols(key, config)
    cfg = bench.config(config, [*bench.ham(), *bench.cpu(key)])
    extra = ["oversampling, augmentation of all classes but nv, Adam + plateau, 10% test"]
    if "image" in runs:
        gap = _value(runs["image"]) - _value(runs["group"])
        extra.insert(0, f"leakage gap (image-level minus grouped accuracy): {gap:+.3f}")
    return [_row(key, f"3. ResNet-{depth} from scratch, HAM10000", claim, cfg, runs, bench,
                 extra=extra, gpu_command=_gpu(config) + " (and --set data.split_by=image)")]


def resnet18(bench):
    return _resnet(bench, 18, "88% accuracy (random 10% image-level split)")


def resnet50(bench):
    return _resnet(bench, 50, "85% accuracy (random 10% image-level split)")


def chestxray(bench):
    root = os.path.join(bench.data_root, "covid_chestxray")
    config = "chestxray_opacity.yaml"
    if not os.path.isdir(root):
        return [_missing("chestxray", "4. Chest X-ray opacity, Xception",
                         "77.8% binary accuracy (SIIM data)", f"no data at {_rel(root)}", bench)]
    rows = []
    both = (("image", "chestxray"), ("image+meta", "chestxray_meta"))
    for modality, key in both[1:] if bench.budget == "tiny" else both:  # --tiny: one of them
        cfg = bench.config(config, bench.cpu("chestxray"), modality)
        run = bench.train_eval(os.path.join(bench.out, key, "group"), cfg)
        extra = ["covid-chestxray-dataset (opacity vs no finding), split by patient",
                 ("NOT REPRODUCED: merging an external chest X-ray set and pretraining on the "
                  "merged set (no second set here)"),
                 "equalisation, flip/zoom/shear/brightness, two stages",
                 "Xception from random init (no ImageNet file given)"]
        rows.append(_row(key, f"4. Chest X-ray opacity, Xception ({modality})",
                         "77.8% binary accuracy (SIIM data, image)" if modality == "image"
                         else "- (report: image only)", cfg, {"group": run}, bench,
                         "n/a (the report's SIIM data are not here)", extra,
                         _gpu(config, modality=modality)))
    return rows


def adasyn(bench):
    config = "smallcnn_adasyn_ham10000.yaml"
    runs = bench.protocols("adasyn", config, tiny_both=True)  # --tiny: the cheapest model
    cfg = bench.config(config, [*bench.ham(), *bench.cpu("adasyn")])
    gap = _value(runs["image"]) - _value(runs["group"])
    return [_row("adasyn", "5. Small CNN, 32 px, ADASYN, HAM10000", "72% accuracy", cfg, runs,
                 bench, extra=[f"leakage gap (image-level minus grouped accuracy): {gap:+.3f}",
                               "ADASYN on the training split", "whole picture squashed"],
                 gpu_command=_gpu(config))]


def vgg16_frozen(bench):
    config = "vgg16_frozen_ham10000.yaml"
    runs = bench.protocols("vgg16_frozen", config)
    cfg = bench.config(config, [*bench.ham(), *bench.cpu("vgg16_frozen")])
    return [_row("vgg16_frozen", "5. VGG-16, frozen base, 32 px, HAM10000", "63.6% accuracy",
                 cfg, runs, bench, extra=[("frozen base RANDOMLY INITIALISED (no ImageNet VGG "
                                           "weights here): a random-feature probe")],
                 gpu_command=_gpu(config))]


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
    note = (f"image-only member alone: acc {_value(member):.3f}, balanced acc "
            f"{_value(member, 'balanced_accuracy'):.3f}")
    return [
        _row("fusion", "6a. Image + metadata fusion (design), HAM10000", "- (design)", cfg,
             {"group": fusion}, bench, "-", ["concat fusion, modality dropout 0.1", note],
             _gpu(config)),
        _row("stacking", "6b. XGBoost stacking on the image model (design), HAM10000",
             "- (design)", image_cfg, {"group": stack}, bench, "-",
             [f"{folds} grouped folds of out-of-fold probabilities + metadata", note],
             f"python scripts/stack.py --config configs/baselines/{config} --modality image "
             "--folds 5"),
    ]


def _missing(key, system, claim, why, bench) -> dict:
    return {"key": key, "system": system, "claim": claim, "report_protocol": "n/a",
            "grouped": None, "metric": "accuracy", "balanced_accuracy": None, "macro_auc": None,
            "seconds": 0.0, "what": f"not run: {why}", "runs": {}, "n_test": None,
            "budget": bench.budget, "command": bench.command, "hardware": "",
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


# -- the table --------------------------------------------------------------------------------
ORDER = ("xception", "fitzpatrick", "fitzpatrick_meta", "resnet18", "resnet50", "chestxray",
         "chestxray_meta", "adasyn", "vgg16_frozen", "fusion", "stacking")


def _num(value, metric="accuracy") -> str:
    if value is None:
        return "-"
    return f"{value:.3f}"


def markdown(rows: dict, tiny: bool) -> str:
    commands = sorted({r["command"] for r in rows.values()})
    lines = ["# Report baselines rebuilt with this toolkit" + (" (--tiny: pipeline check, "
             "numbers meaningless)" if tiny else ""), "",
             "Commands: " + "; ".join(f"`{c}`" for c in commands), "",
             "Each row: the report's claim; our number on the report's protocol (its split or "
             "test set, where we have it); our number on the grouped split (by lesion / "
             "patient; Fitzpatrick17k has no groups); balanced accuracy and macro AUC on the "
             "grouped test split; wall time (training + evaluation, data preparation "
             "included); what was run. Accuracy unless the cell says otherwise. Per-run "
             "details (workdirs, intervals, epochs): baselines" + ("_tiny" if tiny else "")
             + ".json.", "",
             "| system | report claim | ours, report protocol | ours, grouped | balanced acc. "
             "| macro AUC | wall time | hardware | what was run |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | --- |"]
    for key in sorted(rows, key=lambda k: ORDER.index(k) if k in ORDER else 99):
        r = rows[key]
        grouped = _num(r["grouped"])
        if r.get("grouped_weighted_f1") is not None:
            grouped = f"acc {grouped}, wF1 {r['grouped_weighted_f1']:.3f}"
        elif key == "fitzpatrick_meta" and r["runs"]:
            grouped = (f"acc {grouped}, wF1 "
                       f"{r['runs']['group']['metrics']['weighted_f1']['value']:.3f}")
        minutes = f"{r['seconds'] / 60:.1f} min" if r["seconds"] else "-"
        lines.append(f"| {r['system']} | {r['claim']} | {r['report_protocol']} | {grouped} | "
                     f"{_num(r['balanced_accuracy'])} | {_num(r['macro_auc'])} | {minutes} | "
                     f"{r['hardware']} | {r['what']} (test: {r['n_test']} images; "
                     f"{r['date']}) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=os.path.join(ROOT, "..", "shared", "data"))
    parser.add_argument("--budget", choices=("auto", "cpu", "gpu"), default="auto",
                        help="gpu: the configs as they are; cpu: the reductions in CPU; auto: "
                             "gpu when JAX sees an accelerator, else cpu")
    parser.add_argument("--tiny", action="store_true",
                        help="smoke variants on the sample / tiny synthetic data (seconds)")
    parser.add_argument("--only", nargs="+", choices=SYSTEMS, help="run only these systems")
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "baselines"),
                        help="folder for the runs (OUT/<budget>/...)")
    parser.add_argument("--results", default=RESULTS, help="folder for baselines.md/.json")
    parser.add_argument("--fresh", action="store_true",
                        help="delete this budget's runs first instead of reusing them")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    os.environ["MULTIMODAL_DATA"] = os.path.abspath(args.data_root)
    if args.tiny and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
        # compile time is most of a smoke run: unoptimised code compiles in about half the
        # time (read when JAX starts its backend, so in a fresh process only)
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_backend_optimization_level=0").strip()
    import jax

    accelerator = jax.default_backend() != "cpu"
    if args.budget == "auto":
        args.budget = "gpu" if accelerator else "cpu"
    elif args.budget == "gpu" and not accelerator and not args.tiny:
        raise ConfigError("--budget gpu: JAX sees no accelerator here; the full recipes would "
                          "take days on a CPU", "use --budget cpu (or run on a GPU machine)")
    bench = Bench(args, sys.argv[1:] if argv is None else list(argv))
    if args.fresh and os.path.isdir(bench.out):
        shutil.rmtree(bench.out)
    name = "baselines_tiny" if args.tiny else "baselines"
    json_path = os.path.join(args.results, f"{name}.json")
    rows = {}
    if os.path.exists(json_path):
        with open(json_path) as f:
            rows = json.load(f).get("rows", {})
    handlers = {s: globals()[s] for s in SYSTEMS}
    failed = []
    for system in args.only or SYSTEMS:
        print(f"== {system} ({bench.budget})", flush=True)
        try:
            made = handlers[system](bench)
        except UserError as exc:  # a data or config problem: the others still run
            failed.append(system)
            print(f"error: {system}: {exc.one_line()}", file=sys.stderr, flush=True)
            made = [_missing(system, system, "-", f"failed: {exc.one_line()}", bench)]
        for row in made:
            rows[row["key"]] = row
            _write(args.results, name, rows, args.tiny)  # after every system: a stop keeps them
            print(f"   {row['key']}: grouped {_num(row['grouped'])}, report protocol "
                  f"{row['report_protocol']}, {row['seconds'] / 60:.1f} min", flush=True)
    path = _write(args.results, name, rows, args.tiny)
    print(f"-> {path}" + (f" ({len(failed)} failed: {', '.join(failed)})" if failed else ""))
    return 1 if failed else 0


def _write(folder, name, rows, tiny) -> str:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{name}.json"), "w") as f:
        json.dump({"rows": rows, "machine": machine()}, f, indent=1, default=float)
    path = os.path.join(folder, f"{name}.md")
    with open(path, "w") as f:
        f.write(markdown(rows, tiny) + "\n")
    return path


if __name__ == "__main__":
    sys.exit(cli(main)())
