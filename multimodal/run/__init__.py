"""The run layer: a run directory as one writer and one reader (layout.py names its files),
between the models and training. Training writes through it; evaluation, ensembles and
serving read only it, never the trainer.

- layout.py      every file of a run directory, named once
- files.py       the run's own files: config, classes, encoder, normaliser, history, summary
- checkpoint.py  Orbax checkpoints (latest / best), loading weights
- mesh.py        the device mesh and batch sharding
- predict.py     logits and masks of a model over a dataset, and of a saved run's splits
- features.py    the frozen-encoder feature cache
- load.py        a saved run loaded: its model, inputs and other datasets as its inputs
"""

import importlib

# name -> the module defining it; imported on first use, so reading a run's config or its
# layout does not import JAX (scripts check their arguments before that)
_LAZY = {"load_run_config": "files", "LoadedRun": "load", "external_inputs": "load",
         "load_run": "load", "rows_inputs": "load", "run_cache": "load", "run_inputs": "load",
         "predict_split": "predict", "predict_split_masks": "predict"}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'multimodal.run' has no attribute {name!r}")
    return getattr(importlib.import_module(f"multimodal.run.{_LAZY[name]}"), name)
