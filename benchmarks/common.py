"""Shared helpers for benchmarks: timing with medians, result files that name their command."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


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


def write_result(name: str, markdown: str, data: dict) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    command = "python " + " ".join(sys.argv)
    data = {**data, "command": command, "machine": machine(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
        json.dump(data, f, indent=1)
    path = os.path.join(RESULTS, f"{name}.md")
    with open(path, "w") as f:
        f.write(f"{markdown}\n\nCommand: `{command}`  \nMachine: {machine()}, {data['date']}\n")
    return path
