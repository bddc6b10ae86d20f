"""The multi-host launch path: two processes on one machine join through jax.distributed
(as two hosts would, docs/multihost.md) and train one run together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from scripts_helper import ROOT, free_port


def test_two_processes_train_one_run(tmp_path):
    work = tmp_path / "run"
    port = free_port()
    procs, logs = [], [tmp_path / f"host{i}.log" for i in range(2)]
    for index in range(2):
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "XLA_FLAGS": " ".join([*(f for f in os.environ.get("XLA_FLAGS", "").split()
                                         if "device_count" not in f),
                                      "--xla_force_host_platform_device_count=2"]),
               "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2",
               "JAX_PROCESS_ID": str(index),
               # its own prepared store: no lock or half-written folder shared with other tests
               "MULTIMODAL_PREPARED": str(tmp_path / "prepared")}
        # output to files, not pipes: an undrained pipe blocks one host and hangs both
        with open(logs[index], "w") as log:
            procs.append(subprocess.Popen(
                [sys.executable, os.path.join(ROOT, "scripts", "train.py"), "--config",
                 "configs/ham10000_sample.yaml", "--smoke", "--no-progress", "--workdir",
                 str(work)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    # Wait for both together: when one host dies (a taken port, a crash) the other would wait
    # for it until jax.distributed's own timeout, so stop both and show both logs at once.
    deadline = time.monotonic() + 420
    try:
        while any(proc.poll() is None for proc in procs):
            failed = [proc for proc in procs if proc.poll() not in (None, 0)]
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    outputs = [log.read_text() for log in logs]
    shown = "\n".join(f"--- host {i} (exit {proc.returncode}):\n{out[-2500:]}"
                      for i, (proc, out) in enumerate(zip(procs, outputs)))
    assert all(proc.returncode == 0 for proc in procs), shown
    # one run, written once: 4 devices over 2 hosts, the smoke schedule's 3 steps
    summary = json.loads((work / "summary.json").read_text())
    assert summary["steps"] == 3
    info = json.loads((work / "run.json").read_text())
    assert info["process_count"] == 2 and len(info["devices"]) == 4
    record = json.loads((work / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0.0 <= record["val_balanced_accuracy"] <= 1.0
    assert "done: 3 steps" in outputs[0] and "done: 3 steps" in outputs[1]
    assert "prepared data:" in outputs[0] and "prepared data:" not in outputs[1]
