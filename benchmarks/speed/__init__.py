"""Speed: images/s of the training step and its parts (JAX against the same architecture in
PyTorch), kernels, the input pipeline, feature extraction, step overhead, checkpoint saves.
CPU step attempts are one ledger: benchmarks/results/cpu_step_ledger.md."""
