"""Shared helpers for benchmarks: timing with medians, result files that name their command.

Every benchmark is a module of this package, run from the repository root:
`python -m benchmarks.<group>.<name> ...` (groups: speed, quality, serving)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
TIMING = "bench_timing.json"  # in a run folder: how long the session that built it took


def run_script(*args: str) -> None:
    """Run a repo script (e.g. "scripts/train.py", ...) with this Python, from the repo root."""
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True)


def timed(workdir: str, done: str, fn) -> float:
    """Seconds `fn` took to build workdir, measured once: a finished workdir (holding `done`)
    keeps the time of the session that built it."""
    timing = os.path.join(workdir, TIMING)
    if os.path.exists(os.path.join(workdir, done)) and os.path.exists(timing):
        with open(timing) as f:
            return json.load(f)["train_seconds"]
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    with open(timing, "w") as f:
        json.dump({"train_seconds": seconds}, f)
    return seconds


def feature_bench_parser(doc: str) -> argparse.ArgumentParser:
    """The options every benchmark over a frozen-feature cache takes."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/ham10000_lite0.yaml")
    parser.add_argument("--features", required=True, help="feature cache directory")
    parser.add_argument("--root", required=True, help="the cache root (split.csv)")
    parser.add_argument("--set", action="append", default=[])
    return parser


def train_and_evaluate(config: str, modality: str, workdir: str, sets: list[str],
                       reuse_eval: bool = False) -> float:
    """scripts/train.py then scripts/evaluate.py on the test split; returns the training wall
    minutes (data preparation included). A finished run in workdir is reused, with the minutes
    of the session that trained it, when it was trained with the same settings; otherwise the
    benchmark stops rather than tabulate a run made with other settings. `reuse_eval`: a
    finished run's evaluation (workdir/eval/metrics.json) is read, not made again."""
    from multimodal.config import config_differences, load_config
    from multimodal.run.files import load_run_config

    finished = os.path.exists(os.path.join(workdir, "summary.json"))
    if finished:
        asked = load_config(config, sets, modality=modality)
        if asked.model.features and asked.uses_image:  # stored as the feature cache set it
            from multimodal.run.features import FeatureCache
            asked = FeatureCache.open(asked.model.features).configure(asked)
        changed = config_differences(load_run_config(workdir), asked)
        if changed:
            sys.exit(f"error: {workdir} was trained with other settings ({changed[0]}); "
                     "use another --out or delete it")
    if finished and not os.path.exists(os.path.join(workdir, TIMING)):
        minutes = float("nan")  # trained before timings were kept
    else:
        minutes = timed(workdir, "summary.json", lambda: run_script(
            "scripts/train.py", "--config", config, "--modality", modality, "--workdir", workdir,
            "--no-progress", *[x for s in sets for x in ("--set", s)])) / 60
    if not (reuse_eval and finished and
            os.path.exists(os.path.join(workdir, "eval", "metrics.json"))):
        run_script("scripts/evaluate.py", "--checkpoint", workdir, "--saliency", "0")
    return minutes


def median_time(fn, repeats: int = 3, warmup: int = 1) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def machine() -> dict:
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}


def command_line() -> str:
    """How this process was started, quoted so that pasted into a shell from the repository root
    it runs as it ran: `python -m benchmarks.<group>.<name> ...` for a benchmark module."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name.startswith("benchmarks."):
        return "python -m " + shlex.join([spec.name, *sys.argv[1:]])
    return "python " + shlex.join(sys.argv)


def write_result(name: str, markdown: str, data: dict, folder: str = RESULTS) -> str:
    os.makedirs(folder, exist_ok=True)
    command = command_line()
    data = {**data, "command": command, "machine": machine(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    with open(os.path.join(folder, f"{name}.json"), "w") as f:
        json.dump(data, f, indent=1)
    path = os.path.join(folder, f"{name}.md")
    with open(path, "w") as f:
        f.write(f"{markdown}\n\nCommand: `{command}`  \nMachine: {machine()}, {data['date']}\n")
    return path


def cell(value: float, ci) -> str:
    """A metric with its 95% interval, as the result tables print it."""
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{value:.3f}"


def points(paired: dict) -> str:
    """A paired difference (scripts/compare.py: difference, ci95) in points with its interval."""
    low, high = paired["ci95"]
    return f"{100 * paired['difference']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def evaluation_row(label: str, metrics_json: str, minutes: float) -> tuple[str, dict]:
    """One table row (balanced accuracy, macro AUC, accuracy, melanoma recall, minutes) from
    an evaluate.py metrics.json, and the data behind it."""
    with open(metrics_json) as f:
        result = json.load(f)
    m = result["metrics"]
    mel = next((r for r in result["per_class"] if r["class"] == "mel"), None)
    bacc = m["balanced_accuracy"]
    row = (f"| {label} | {cell(bacc['value'], bacc['ci95'])} | "
           f"{cell(m['macro_auc']['value'], m['macro_auc']['ci95'])} | "
           f"{cell(m['accuracy']['value'], m['accuracy']['ci95'])} | "
           + (f"{cell(mel['recall'], mel['recall_ci95'])} | " if mel else "n/a | ")
           + f"{minutes:.1f} |")
    return row, {"metrics": m, "mel": mel, "n_images": result["n_images"],
                 "n_groups": result["n_groups"]}


def publish(name: str, lines: list[str], data: dict, folder: str = RESULTS) -> str:
    """Write a benchmark's table (markdown + JSON with its command) and print it."""
    path = write_result(name, "\n".join(lines), data, folder)
    print("\n".join(lines))
    print(f"-> {path}")
    return path
