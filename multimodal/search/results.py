"""What a search leaves: trials.csv, search.png and best_config.yaml.

`trials.csv`: one row per trial (number, state, value, one column per parameter, epochs,
seconds, run directory). `search.png`: the validation metric against each parameter
(complete trials in colour, pruned ones grey; log axes for log-scale parameters).
`best_config.yaml`: the config file the search started from, with its `--set` overrides
and the best trial's values written in, so `scripts/train.py --config best_config.yaml`
trains it (its `smoke` section loses the searched keys, so `--smoke` keeps them too).
"""

from __future__ import annotations

import io
import os

import yaml

from multimodal.config import config_from_dict, parse_override
from multimodal.outputs import write_atomic


def _set(tree: dict, dotted: str, value) -> None:
    node = tree
    keys = dotted.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def _trial_rows(study, params) -> list[dict]:
    rows = []
    for t in study.trials:
        row = {"number": t.number, "state": t.state.name,
               "value": t.value if t.value is not None else float("nan")}
        for p in params:
            row[p.key] = p.decode(t.params[p.key]) if p.key in t.params else None
            if p.encoded and row[p.key] is not None:
                row[p.key] = t.params[p.key]  # lists as their YAML text in the table
        row["epochs"] = t.user_attrs.get("epochs")
        row["seconds"] = (t.duration.total_seconds() if t.duration is not None else None)
        row["resumes"] = t.user_attrs.get("resumes")
        row["workdir"] = t.user_attrs.get("workdir")
        rows.append(row)
    return rows


def plot(rows: list[dict], params, metric: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(params)
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.4), squeeze=False)
    for ax, p in zip(axes[0], params):
        if p.kind == "categorical":
            labels = [str(c) for c in p.choices]
            ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
            ax.set_xlim(-0.5, len(labels) - 0.5)
        for state, colour in (("PRUNED", "0.7"), ("COMPLETE", "C0")):
            pts = [(r[p.key], r["value"]) for r in rows if r["state"] == state
                   and r[p.key] is not None and r["value"] == r["value"]]
            if not pts:
                continue
            xs, ys = zip(*pts)
            if p.kind == "categorical":
                xs = [labels.index(str(x)) for x in xs]
            ax.scatter(xs, ys, c=colour, label=state.lower(), s=24)
        if p.log_scale:
            ax.set_xscale("log")
        ax.set_xlabel(p.key)
        ax.set_ylabel(f"val {metric}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"search: best validation {metric} of each trial")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, buf.getvalue())  # workers of a shared study write at the same time


def best_config_tree(config_path: str, overrides, smoke: bool, modality: str | None,
                     values: dict) -> dict:
    """The starting config file's tree (paths unexpanded) with the overrides and `values`."""
    with open(config_path) as f:
        tree = yaml.safe_load(f) or {}
    smoke_section = dict(tree.pop("smoke", {}) or {})
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        _set(tree, key, value)
    if modality:
        tree["modality"] = modality
    for key, value in values.items():
        _set(tree, key, value)
        smoke_section.pop(key, None)
    if smoke_section:
        tree["smoke"] = smoke_section
    return tree


def write_results(study, params, out: str, metric: str, config_path: str, overrides, smoke,
                  modality) -> dict:
    import pandas as pd

    rows = _trial_rows(study, params)
    write_atomic(os.path.join(out, "trials.csv"), pd.DataFrame(rows).to_csv(index=False))
    counts = {s: sum(r["state"] == s for r in rows) for s in ("COMPLETE", "PRUNED", "FAIL")}
    result = {"out": out, "metric": metric, "finished": counts["COMPLETE"] + counts["PRUNED"],
              "complete": counts["COMPLETE"], "pruned": counts["PRUNED"],
              "failed": counts["FAIL"], "best": None}
    if rows:
        plot(rows, params, metric, os.path.join(out, "search.png"))
    if counts["COMPLETE"]:
        best = study.best_trial
        values = {p.key: p.decode(best.params[p.key]) for p in params}
        tree = best_config_tree(config_path, overrides, smoke, modality, values)
        config_from_dict({k: v for k, v in tree.items() if k != "smoke"})  # it must load
        path = os.path.join(out, "best_config.yaml")
        write_atomic(path, f"# Best of {counts['COMPLETE']} complete trials (search in {out}): "
                     f"trial {best.number}, validation {metric} {best.value:.4f}"
                     + (", searched with --smoke" if smoke else "") + ".\n"
                     f"# From {config_path}; train it: python scripts/train.py --config {path}\n"
                     + yaml.safe_dump(tree, sort_keys=False))
        result["best"] = {"trial": best.number, "value": best.value, "params": values,
                          "workdir": best.user_attrs.get("workdir"), "config": path}
    return result
