"""Benchmarks: timed and scored measurements of the toolkit, grouped by what they measure.

    speed/     training step, kernels, input pipeline, feature extraction, checkpoints
    quality/   accuracy, robustness to shifts, baselines, ensembles, segmentation
    serving/   the HTTP API under load and fuzzed from its schema

Each script is a module run from the repository root, e.g.
`python -m benchmarks.speed.train_throughput --smoke`; shared helpers are in
benchmarks/common.py. What they wrote is in benchmarks/results/, indexed by
benchmarks/README.md (`python -m benchmarks.index` regenerates it).
"""
