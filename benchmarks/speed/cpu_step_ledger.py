"""The ledger of benchmarks.speed.cpu_step_attempts: every run's rows in one file,
benchmarks/results/cpu_step_ledger.json ({"about": [lines], "runs": [run, ...]}, each run with
its command, date, machine, arguments, measured rows and notes), and its tables in
cpu_step_ledger.md, regenerated from the JSON at every append. A row per measured JAX step;
the torch peers are kept in the JSON and shown beside the rows of their run and batch.
"""

from __future__ import annotations

import json
import os

LEDGER = "cpu_step_ledger"  # in the results folder: LEDGER.json and LEDGER.md


def run_record(name: str, args: dict, rows: list[dict], command: str, date: str, machine: dict,
               notes: str = "", what: dict | None = None) -> dict:
    """One run as the ledger keeps it; each attempt row keeps what it tried (`what`: attempt ->
    its description then), so a later change of the descriptions leaves the runs as they were."""
    rows = [r if r["attempt"] == "torch" or "what" in r
            else {**r, "what": (what or {})[r["attempt"]]} for r in rows]
    return {"name": name, "date": date, "command": command, "machine": machine, "args": args,
            "rows": rows, "notes": notes}


def read_ledger(folder: str, ledger: str = LEDGER) -> dict:
    path = os.path.join(folder, f"{ledger}.json")
    if not os.path.exists(path):
        return {"about": [], "runs": []}
    with open(path) as f:
        return json.load(f)


def append_runs(folder: str, runs: list[dict], ledger: str = LEDGER,
                about: list[str] | None = None) -> str:
    """Add runs to the ledger (oldest first; a run already there, same name and date, is kept
    once), rewrite its JSON and Markdown; returns the Markdown's path."""
    data = read_ledger(folder, ledger)
    if about is not None:
        data["about"] = about
    have = {(r["name"], r["date"]) for r in data["runs"]}
    data["runs"] = sorted([*data["runs"], *(r for r in runs if (r["name"], r["date"]) not in have)],
                          key=lambda r: r["date"])
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{ledger}.json"), "w") as f:
        json.dump(data, f, indent=1)
    path = os.path.join(folder, f"{ledger}.md")
    with open(path, "w") as f:
        f.write(ledger_markdown(data) + "\n")
    return path


def _machine(m: dict) -> str:
    return ", ".join(x for x in [f"{m['cpu_count']} cores" if m.get("cpu_count") else "",
                                 f"Python {m['python']}" if m.get("python") else ""] if x)


def ledger_markdown(data: dict) -> str:
    runs = data["runs"]
    lines = ["# CPU training step: the ledger of attempts, every run", "",
             "Every run of `python -m benchmarks.speed.cpu_step_attempts`, oldest first; a new "
             "run appends its rows here (`--name` labels it). Each row is the trainer's jitted "
             "step timed in its own process (XLA flags are read at start-up): images/s, the "
             "median of the run's repeats of its steps after warm-up, float32 unless the "
             "attempt says otherwise. torch = the same architecture's step, fp32 eager, "
             "measured in the same run at the same batch; vs default = this row over the same "
             "run's default attempt at that model and batch. Compare rows within a run: runs "
             "on other days saw other loads (see the notes).", "", *data.get("about", []),
             "## Runs", "", "| run | date | px | steps x repeats | models | attempts | "
             "command | machine |", "| --- | --- | ---: | --- | --- | --- | --- | --- |"]
    for run in runs:
        a = run["args"]
        lines.append(f"| <a id=\"{run['name']}\"></a>{run['name']} | {run['date'][:16]} | "
                     f"{a['size']} | {a['steps']} x {a['repeats']} | {' '.join(a['models'])} | "
                     f"{' '.join(a['attempts'])} | `{run['command']}` | "
                     f"{_machine(run['machine'])} |")
    lines += ["", "## Attempts", "", "| run | px | model | batch | attempt | what it tries | "
              "JAX step img/s | torch img/s | JAX / torch | vs default | compile s |",
              "| --- | ---: | --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    parts = []
    for run in runs:
        size, link = run["args"]["size"], f"[{run['name']}](#{run['name']})"
        default = {(r["model"], r["batch"]): r.get("step") for r in run["rows"]
                   if r["attempt"] == "default"}
        for r in run["rows"]:
            if r["attempt"] == "torch":
                continue
            head = f"| {link} | {size} | {r['model']} | {r['batch']} | {r['attempt']} | {r['what']} |"
            if "error" in r:
                lines.append(f"{head} failed: {r['error']} | | | | |")
                continue
            peer, base = r.get("torch_peer"), default.get((r["model"], r["batch"]))
            lines.append(f"{head} {r['step']:.2f} | {peer:.2f} | {r['step'] / peer:.2f} | "
                         f"{r['step'] / base:.2f} | {r['compile_s']:.0f} |" if peer and base
                         else f"{head} {r['step']:.2f} | | | | |")
            if r["attempt"] == "default" and "forward" in r:
                f, fb, s = (r["batch"] / r[k] for k in ("forward", "forward_backward", "step"))
                parts.append(f"| {link} | {size} | {r['model']} | {r['batch']} | {f:.2f} "
                             f"({f / s:.0%}) | {fb - f:.2f} ({(fb - f) / s:.0%}) | {s - fb:.2f} "
                             f"({(s - fb) / s:.0%}) | {s:.2f} |")
    lines += ["", "## Where the time goes", "", "Default attempt at each run's main batch, "
              "seconds per batch: backward = forward + backward - forward, update = step - "
              "(forward + backward), which also holds BatchNorm's running statistics and the "
              "state write.", "", "| run | px | model | batch | forward | backward | "
              "update and the rest | step |", "| --- | ---: | --- | ---: | ---: | ---: | ---: | "
              "---: |", *parts]
    notes = [run for run in runs if run.get("notes")]
    if notes:
        lines += ["", "## Notes, added after a run"]
        for run in notes:
            lines += ["", f"### Notes on {run['name']}", "", run["notes"]]
    return "\n".join(lines)
