"""The machinery of benchmarks/quality/run_baselines.py: the CPU budget, how a system's runs are
trained (reused, resumed) and evaluated, and how a row and the results table are written."""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings

from benchmarks.common import ROOT, timed

SYSTEMS = ("xception", "fitzpatrick", "resnet18", "resnet50", "chestxray", "adasyn",
           "vgg16_frozen", "design")
CFG = os.path.join(ROOT, "configs", "baselines")
SAMPLE_ROOT = "data.options.root=${MULTIMODAL_SAMPLE}"

# What `--budget cpu` changes, per system (2 CPU cores; each row states it). Training step alone
# (jitted, synthetic batch, idle cores), images/s: ResNet-18 32 px 123 (64 px 24), ResNet-50
# 32 px 52 (64 px 20), Xception 48 px 53 (64 px 34), VGG-16 frozen 32 px 55, small CNN 32 px
# 800; the input pipeline shares the 2 cores. Wall minutes measured on 2 idle cores (2026-11-30,
# baselines.json): adasyn 8, vgg16_frozen 14, resnet18 10, resnet50 8, design 11, xception 10,
# fitzpatrick 49 (10 search trials + 4 encoders + image+meta), chestxray 23: about 2.2 hours.
CPU = {
    "xception": ["data.image_size=48", "train.epochs=3", "train.freeze_encoder_epochs=1"],
    "fitzpatrick": ["data.image_size=64", "train.epochs=6"],
    "fitzpatrick_encoders": ["train.epochs=2"],  # VGG at 48 px, ResNet 64, Inception 80
    "resnet18": ["data.image_size=32", "train.epochs=3"],
    "resnet50": ["data.image_size=32", "train.epochs=1"],
    "chestxray": ["data.image_size=64", "train.epochs=10", "train.freeze_encoder_epochs=2"],
    "adasyn": ["train.epochs=3"],
    "vgg16_frozen": ["train.epochs=2"],
    "design": ["data.image_size=64", "train.epochs=3"],
}
FITZ_ENCODERS = {"gpu": [("vgg16", 224), ("vgg19", 224), ("resnet50v2", 224),
                         ("inception_v3", 299)],
                 "cpu": [("vgg16", 48), ("vgg19", 48), ("resnet50v2", 64), ("inception_v3", 80)],
                 "tiny": []}



class Bench:
    """One invocation: budget, folders, and how runs are trained and evaluated."""

    def __init__(self, args, argv):
        self.args, self.budget = args, "tiny" if args.tiny else args.budget
        self.command = "python -m benchmarks.quality.run_baselines " + " ".join(argv)
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
        from multimodal.config import config_differences
        from multimodal.run.checkpoint import RunCheckpoints
        from multimodal.run.files import load_run_config
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
        return {"eval_seconds": time.perf_counter() - t0, "workdir": shown_path(workdir),
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


# -- rows -------------------------------------------------------------------------------------
def metric_value(run, metric="accuracy"):
    return run["metrics"][metric]["value"] if run else None


def _what(cfg, run, budget, extra=()) -> str:
    size, epochs = cfg.data.image_size, run.get("epochs") if run else None
    weights = cfg.model.pretrained or "random init"
    parts = [f"{cfg.model.encoder}, {size} px, epochs run: {epochs} ({weights})",
             f"budget {budget}", *extra]
    return "; ".join(parts)


def make_row(key, system, claim, cfg, runs, bench, report_cell=None, extra=(), gpu_command=None,
         metric="accuracy", group_run=None):
    group = group_run or runs.get("group")
    image = runs.get("image")
    seconds = sum(r["train_seconds"] + r["eval_seconds"] for r in runs.values() if r)
    report = report_cell if report_cell is not None else (
        f"{metric_value(image, metric):.3f} (image-level split)" if image else
        "not run in --tiny" if bench.budget == "tiny" else "n/a")
    what = _what(cfg, group, bench.budget, extra)
    if bench.budget == "cpu" and gpu_command:
        what += f"; full recipe: `{gpu_command}`"
    return {"key": key, "system": system, "claim": claim, "report_protocol": report,
            "grouped": metric_value(group, metric), "metric": metric,
            "balanced_accuracy": metric_value(group, "balanced_accuracy"),
            "macro_auc": metric_value(group, "macro_auc"), "seconds": seconds, "what": what,
            "n_test": group["n_test"] if group else None, "runs": runs,
            "budget": bench.budget, "command": bench.command,
            "hardware": _hardware(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def shown_path(path: str) -> str:
    """A path as the table shows it: relative to the repository when inside or beside it."""
    rel = os.path.relpath(path, ROOT)
    return path if rel.startswith(os.path.join("..", "..")) else rel


def _hardware() -> str:
    import jax

    devices = jax.devices()
    kind = devices[0].device_kind if devices[0].platform != "cpu" else "CPU"
    return f"{len(devices)} x {kind} ({jax.default_backend()}), {os.cpu_count()} cores"


def train_command(config, *sets, modality=None):
    parts = ["python scripts/train.py --config", f"configs/baselines/{config}"]
    parts += [f"--modality {modality}"] if modality else []
    parts += [f"--set {s}" for s in sets]
    return " ".join(parts)


def missing_row(key, system, claim, why, bench) -> dict:
    return {"key": key, "system": system, "claim": claim, "report_protocol": "n/a",
            "grouped": None, "metric": "accuracy", "balanced_accuracy": None, "macro_auc": None,
            "seconds": 0.0, "what": f"not run: {why}", "runs": {}, "n_test": None,
            "budget": bench.budget, "command": bench.command, "hardware": "",
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


# -- the table --------------------------------------------------------------------------------
ORDER = ("xception", "fitzpatrick", "fitzpatrick_meta", "resnet18", "resnet50", "chestxray",
         "chestxray_meta", "adasyn", "vgg16_frozen", "fusion", "stacking")


def number_cell(value, metric="accuracy") -> str:
    if value is None:
        return "-"
    return f"{value:.3f}"


def summary_table(rows: dict) -> list[str]:
    """The short table the README shows: claim, ours on both protocols, balanced accuracy,
    AUC, wall time and what ran (model, resolution, epochs)."""
    lines = ["| system | report claim | ours, report protocol | ours, grouped | balanced acc. | "
             "macro AUC | wall time | ran |", "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for key in sorted(rows, key=lambda k: ORDER.index(k) if k in ORDER else 99):
        r = rows[key]
        grouped = number_cell(r["grouped"])
        if r.get("grouped_weighted_f1") is not None:
            grouped = f"acc {grouped}, wF1 {r['grouped_weighted_f1']:.3f}"
        minutes = f"{r['seconds'] / 60:.0f} min" if r["seconds"] else "-"
        lines.append(f"| {r['system']} | {r['claim']} | {r['report_protocol']} | {grouped} | "
                     f"{number_cell(r['balanced_accuracy'])} | {number_cell(r['macro_auc'])} | "
                     f"{minutes} | {r['what'].split('; budget')[0]} |")
    return lines


def transfer_lines(folder: str) -> list[str]:
    """The reports' pretrain-then-fine-tune stage, measured apart (benchmarks/quality/
    transfer.py): its headline figures, read from the result files when they exist."""
    lines = []
    path = os.path.join(folder, "transfer_ham10000.json")
    if os.path.exists(path):
        with open(path) as f:
            d = json.load(f)
        s = d["summary"]
        lines.append(f"- HAM10000, a clinic's ~{d.get('size', '?')} images, balanced accuracy "
                     "over target sets "
                     "(mean +- sd): " + ", ".join(f"{k} {v['mean']:.3f} +- {v['sd']:.3f}"
                                                 for k, v in s.items())
                     + " ([transfer_ham10000](transfer_ham10000.md))")
    path = os.path.join(folder, "transfer_chestxray.json")
    if os.path.exists(path):
        with open(path) as f:
            d = json.load(f)
        starts = [(k, v) for k, v in d.items() if isinstance(v, dict) and "workdir" in v]
        lines.append("- covid-chestxray, COVID-19 vs other findings (patient-grouped CV, out of "
                     "fold): " + ", ".join(f"{k} {v['metrics']['balanced_accuracy']['value']:.3f}"
                                           for k, v in starts)
                     + " ([transfer_chestxray](transfer_chestxray.md)); the opacity task has 19 "
                       "'No Finding' images, too few to measure")
    if not lines:
        return []
    return ["", "## Transfer between datasets", "",
            ("The reports' pretrain-then-fine-tune stage (`model.init_from: RUN`; merged "
             "sources: `data.sources`), measured by `python -m benchmarks.quality.transfer` "
             "(each file holds its command):"), "", *lines]


def markdown(rows: dict, tiny: bool, folder: str | None = None) -> str:
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
             ("| system | report claim | ours, report protocol | ours, grouped | balanced acc. "
              "| macro AUC | wall time | hardware | what was run |"),
             "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | --- |"]
    for key in sorted(rows, key=lambda k: ORDER.index(k) if k in ORDER else 99):
        r = rows[key]
        grouped = number_cell(r["grouped"])
        if r.get("grouped_weighted_f1") is not None:
            grouped = f"acc {grouped}, wF1 {r['grouped_weighted_f1']:.3f}"
        elif key == "fitzpatrick_meta" and r["runs"]:
            grouped = (f"acc {grouped}, wF1 "
                       f"{r['runs']['group']['metrics']['weighted_f1']['value']:.3f}")
        minutes = f"{r['seconds'] / 60:.1f} min" if r["seconds"] else "-"
        lines.append(f"| {r['system']} | {r['claim']} | {r['report_protocol']} | {grouped} | "
                     f"{number_cell(r['balanced_accuracy'])} | {number_cell(r['macro_auc'])} | {minutes} | "
                     f"{r['hardware']} | {r['what']} (test: {r['n_test']} images; "
                     f"{r['date']}) |")
    if folder and not tiny:
        lines += transfer_lines(folder)
    return "\n".join(lines)
