"""A shared search's speed-up: one study of N trials run by one worker and by two workers
(scripts/search.py --storage journal://...), wall time and ratio.

    python -m benchmarks.speed.search_workers --trials 6 --set train.epochs=1

Three ways, the same config, space, trial count, sampler and seed, one after another:
- one worker pinned to one core (taskset), XLA single-threaded;
- two workers, each pinned to its own core, XLA single-threaded: the study split between them;
- one worker on every core, XLA's own threading (what a plain `search.py` does).
The ratios: two workers' wall time over one pinned worker's (the gain of sharing a study at
one thread per worker), and over the unpinned worker's (against what a user runs today).
Each worker's trials train the config's runs for real; the median pruner is off so every
trial does the same work.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks.common import ROOT, publish

SPACE = """\
train.learning_rate: {log_uniform: [3.0e-4, 3.0e-3]}
train.optimizer: {categorical: [adam, adamw]}
"""
ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _worker(args, out: str, storage: str, core: int | None) -> subprocess.Popen:
    command = [sys.executable, "scripts/search.py", "--config", args.config, "--space",
               args.space, "--trials", str(args.trials), "--sampler", "random", "--seed", "0",
               "--pruner", "none", "--out", out, "--no-progress", "--storage", storage,
               *[x for s in args.set for x in ("--set", s)]]
    env = dict(os.environ)
    if core is not None:
        command = ["taskset", "-c", str(core), *command]
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + ONE_THREAD).strip()
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    log = open(os.path.join(out + f".worker{core}.log"), "w")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def run(args, label: str, cores: list[int | None], root: str) -> dict:
    out = os.path.join(root, label.replace(" ", "_"))
    os.makedirs(out)
    storage = f"journal://{out}/study.journal"
    t0 = time.perf_counter()
    workers = [_worker(args, out, storage, core) for core in cores]
    codes = [w.wait() for w in workers]
    seconds = time.perf_counter() - t0
    if any(codes):
        raise SystemExit(f"error: {label}: a worker failed (logs in {out}.worker*.log)")
    with open(os.path.join(out, "trials.csv")) as f:
        finished = sum(1 for _ in f) - 1
    print(f"{label}: {seconds:.1f} s, {finished} trials", flush=True)
    return {"seconds": seconds, "trial_rows": finished, "workers": len(cores)}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/ham10000_sample.yaml")
    parser.add_argument("--space", default=None, help="a space file (default: rate, optimizer)")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--name", default="search_workers_cpu")
    args = parser.parse_args()
    if shutil.which("taskset") is None:
        raise SystemExit("error: needs taskset (util-linux) to pin workers to cores")
    root = tempfile.mkdtemp(prefix="search_workers_")
    if args.space is None:
        args.space = os.path.join(root, "space.yaml")
        with open(args.space, "w") as f:
            f.write(SPACE)
    results = {"one worker, one core": run(args, "one worker, one core", [0], root),
               "two workers, one core each": run(args, "two workers, one core each", [0, 1],
                                                 root),
               "one worker, all cores": run(args, "one worker, all cores", [None], root)}
    two = results["two workers, one core each"]["seconds"]
    ratios = {k: two / v["seconds"] for k, v in results.items()
              if k != "two workers, one core each"}
    lines = [f"# Shared search: {args.trials} trials by one worker and by two "
             f"(`{args.config}`, {' '.join(args.set) or 'as configured'})", "",
             "| way | workers | wall seconds | trials in trials.csv |",
             "| --- | ---: | ---: | ---: |",
             *[f"| {k} | {v['workers']} | {v['seconds']:.0f} | {v['trial_rows']} |"
               for k, v in results.items()], "",
             "| ratio: two workers' wall time over | ratio |", "| --- | ---: |",
             *[f"| {k} | {r:.2f} |" for k, r in ratios.items()], "",
             (f"{os.cpu_count()} cores. One thread per worker: `taskset -c K` and XLA "
              f"`{ONE_THREAD}`. Sampler random, seed 0, pruner off; the journal file "
              "storage (scripts/search.py --storage).")]
    publish(args.name, lines, {"results": results, "ratios": ratios, "trials": args.trials})
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
