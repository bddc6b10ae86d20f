"""How long the trainer's checkpoint save takes on CPU devices, with Orbax's default
replica-parallel writing and with it off (what multimodal.run.checkpoint does on CPU).

    python -m benchmarks.speed.checkpoint_save --devices 4 --repeats 3

Each timing is a fresh process (the device count is fixed when JAX starts, and the Orbax handler
is registered per process): a ResNet-18 classifier and its AdamW state, replicated over a mesh of
--devices CPU devices as the trainer places them, saved by `RunCheckpoints` --saves times. The two
modes alternate; the table gives the median of --repeats processes for the first save (compiles
included) and for the later ones.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from benchmarks.common import ROOT, publish

CHILD = r"""
import json, sys, tempfile, time
import jax, optax
from flax import nnx
from multimodal.run import checkpoint
from multimodal.run.mesh import make_mesh, replicated
from multimodal.models import build_model
from multimodal.config import load_config

mode, saves = sys.argv[1], int(sys.argv[2])
if mode == "orbax default":
    checkpoint._no_replica_parallel_on_cpu = lambda: None
cfg = load_config(None, ["model.encoder=resnet18"])
model = build_model(cfg.model, "image", 7, 0)
opt = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)
sharding = replicated(make_mesh())
state = jax.device_put(nnx.state((model, opt)), sharding)
nnx.update((model, opt), state)
ckpt = checkpoint.RunCheckpoints(tempfile.mkdtemp(), "val_accuracy")
times = []
for step in range(saves):
    t0 = time.perf_counter()
    ckpt.save(step, model, opt, {"epoch": step}, {"val_accuracy": 0.5})
    ckpt.wait()
    times.append(time.perf_counter() - t0)
ckpt.close()
print(json.dumps({"times": times, "devices": len(jax.devices())}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--saves", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={args.devices}",
           "JAX_PLATFORMS": "cpu"}
    modes = ("orbax default", "replica-parallel off")
    runs = {m: [] for m in modes}
    for _ in range(args.repeats):
        for mode in modes:
            out = subprocess.run([sys.executable, "-c", CHILD, mode, str(args.saves)], cwd=ROOT,
                                 env=env, capture_output=True, text=True, check=True)
            runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(mode, [round(t, 2) for t in runs[mode][-1]["times"]], flush=True)
    first = {m: statistics.median(r["times"][0] for r in runs[m]) for m in modes}
    later = {m: statistics.median(t for r in runs[m] for t in r["times"][1:]) for m in modes}
    lines = [f"# Checkpoint save on {args.devices} CPU devices: ResNet-18 classifier + AdamW state",
             "", f"Median of {args.repeats} processes per mode (alternating), {args.saves} saves "
             "each; seconds per save, `RunCheckpoints.save` + wait.", "",
             "| Orbax array handler | first save (s) | later saves (s) |",
             "| --- | ---: | ---: |",
             *[f"| {m} | {first[m]:.2f} | {later[m]:.2f} |" for m in modes], "",
             f"First save: {first[modes[0]] / first[modes[1]]:.1f}x faster with replica-parallel "
             f"off; later saves: {later[modes[0]] / later[modes[1]]:.1f}x."]
    publish(f"checkpoint_save_cpu{args.devices}", lines, {"runs": runs, "devices": args.devices})


if __name__ == "__main__":
    main()
