"""Every course report's system rebuilt with this toolkit, measured beside what the report
claimed: benchmarks/results/baselines.md (+ .json).

    python -m benchmarks.quality.run_baselines --data-root ../shared/data --budget cpu   # 2 cores: ~2.2 h
    python -m benchmarks.quality.run_baselines --data-root ../shared/data --budget gpu   # full recipes
    python -m benchmarks.quality.run_baselines --budget cpu --only resnet18 resnet50     # some systems
    python -m benchmarks.quality.run_baselines --tiny                                    # seconds: tests
    python -m benchmarks.quality.run_baselines --rewrite     # baselines.md again, + transfer results

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
applies the reductions listed in `CPU` in benchmarks/quality/baseline_bench.py (each row says what ran and the GPU command);
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

from benchmarks.common import RESULTS, ROOT, machine
from benchmarks.quality import baseline_systems
from benchmarks.quality.baseline_bench import SYSTEMS, Bench, markdown, missing_row, number_cell

from multimodal.errors import ConfigError, UserError, cli


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
    parser.add_argument("--rewrite", action="store_true",
                        help="only write baselines.md anew from baselines.json and the "
                             "transfer results (no training)")
    args = parser.parse_args(argv)
    if args.rewrite:
        with open(os.path.join(args.results, "baselines.json")) as f:
            kept = json.load(f)
        print(f"-> {_write(args.results, 'baselines', kept['rows'], False, kept.get('machine'))}")
        return 0
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
    handlers = {s: getattr(baseline_systems, s) for s in SYSTEMS}
    failed = []
    for system in args.only or SYSTEMS:
        print(f"== {system} ({bench.budget})", flush=True)
        try:
            made = handlers[system](bench)
        except UserError as exc:  # a data or config problem: the others still run
            failed.append(system)
            print(f"error: {system}: {exc.one_line()}", file=sys.stderr, flush=True)
            made = [missing_row(system, system, "-", f"failed: {exc.one_line()}", bench)]
        for row in made:
            rows[row["key"]] = row
            _write(args.results, name, rows, args.tiny)  # after every system: a stop keeps them
            print(f"   {row['key']}: grouped {number_cell(row['grouped'])}, report protocol "
                  f"{row['report_protocol']}, {row['seconds'] / 60:.1f} min", flush=True)
    path = _write(args.results, name, rows, args.tiny)
    print(f"-> {path}" + (f" ({len(failed)} failed: {', '.join(failed)})" if failed else ""))
    return 1 if failed else 0


def _write(folder, name, rows, tiny, measured_on: dict | None = None) -> str:
    """baselines.md/.json from the rows; `measured_on`: the machine the rows were measured on
    when it is not this one (--rewrite)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{name}.json"), "w") as f:
        json.dump({"rows": rows, "machine": measured_on or machine()}, f, indent=1,
                  default=float)
    path = os.path.join(folder, f"{name}.md")
    with open(path, "w") as f:
        f.write(markdown(rows, tiny, folder) + "\n")
    return path


if __name__ == "__main__":
    sys.exit(cli(main)())
