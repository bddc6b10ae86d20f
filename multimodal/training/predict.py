"""Predictions from a trained run: reload it and score a split or another dataset."""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import yaml
from flax import nnx
from jax.experimental import multihost_utils

from multimodal.config import Config, _build, load_config
from multimodal.data import pipeline, prepare
from multimodal.data.build import load_table
from multimodal.data.metadata import MetadataEncoder
from multimodal.models import build_model
from multimodal.training import mesh as mesh_lib
from multimodal.training.checkpoint import load_model_weights
from multimodal.training.inputs import Inputs, build_inputs, example_loader
from multimodal.training.metrics import softmax


@dataclasses.dataclass
class LoadedRun:
    workdir: str
    cfg: Config
    classes: list[str]
    encoder: MetadataEncoder
    normalizer: pipeline.Normalizer
    model: object
    step: int


def load_run(workdir: str, which: str = "best") -> LoadedRun:
    """Rebuild a run's model from its directory and load its best (or latest) weights."""
    if not os.path.exists(os.path.join(workdir, "config.yaml")):
        raise FileNotFoundError(f"{workdir} is not a run directory (no config.yaml)")
    with open(os.path.join(workdir, "config.yaml")) as f:
        cfg = _build(Config, yaml.safe_load(f))
    with open(os.path.join(workdir, "classes.json")) as f:
        classes = json.load(f)
    encoder = MetadataEncoder.load(os.path.join(workdir, "metadata_encoder.json"))
    with open(os.path.join(workdir, "normalizer.json")) as f:
        normalizer = pipeline.Normalizer.from_dict(json.load(f))
    model = build_model(cfg.model, cfg.modality, len(classes), encoder.dim, cfg.train.seed)
    progress = load_model_weights(workdir, model, which, cfg.train.early_stop_metric)
    model.eval()
    return LoadedRun(workdir, cfg, classes, encoder, normalizer, model, progress["step"])


def run_inputs(run: LoadedRun) -> Inputs:
    """The run's own splits (its split.csv), with its fitted encoder and normaliser."""
    return build_inputs(run.cfg, run.workdir, encoder=run.encoder, normalizer=run.normalizer)


def external_inputs(run: LoadedRun, data_config: str, cache_dir: str, overrides=()) -> Inputs:
    """Another dataset, all rows as one `test` split, labels mapped by class name.

    Metadata columns the model knows but the dataset lacks are encoded as
    missing; an example with no metadata at all gets metadata_mask 0.
    """
    cfg = load_config(data_config, overrides)
    table = load_table(cfg.data)
    unknown = sorted(set(table.frame["label"]) - set(run.classes))
    if unknown:
        raise ValueError(f"labels {unknown} of {data_config} are not classes of the model "
                         f"{run.classes}")
    table.classes = tuple(run.classes)
    split = table.frame[["image_id", "group_id", "label"]].assign(split="test")
    prepare.prepare(table, split, cache_dir, run.cfg.data.image_size, overwrite=True)
    manifest = prepare.read_manifest(cache_dir)
    source = prepare.open_split(cache_dir, "test")
    return Inputs(manifest, {"test": source}, {"test": prepare.split_frame(source, manifest)},
                  run.encoder, run.normalizer, table.frame)


@nnx.jit(static_argnums=2)
def _logits(model, batch, flips):
    image = batch["image"]
    if flips:  # test-time augmentation: average logits over the four flips
        views = [image, image[:, :, ::-1], image[:, ::-1], image[:, ::-1, ::-1]]
        return jnp.mean(jnp.stack([model(v, batch["metadata"], batch["metadata_mask"])
                                   for v in views]), 0)
    return model(image, batch["metadata"], batch["metadata_mask"])


def predict_logits(model, dataset, mesh, tta: bool = False) -> tuple[np.ndarray, list | None]:
    """Logits of every real (unpadded) example in dataset order, and their image ids.

    With several hosts the logits and padding masks are gathered from all of them;
    ids are only returned on a single host (each host holds its own slice's ids).
    """
    logits, masks, ids = [], [], []
    for batch in dataset:
        sharded = mesh_lib.shard_batch(batch, mesh)
        out, mask = _logits(model, sharded, tta), sharded["mask"]
        if jax.process_count() > 1:
            out, mask = (multihost_utils.process_allgather(x, tiled=True) for x in (out, mask))
        logits.append(np.asarray(out))
        masks.append(np.asarray(mask) > 0)
        ids += list(batch["image_id"])
    keep = np.concatenate(masks)
    ids = [i for i, k in zip(ids, keep) if k] if jax.process_count() == 1 else None
    return np.concatenate(logits)[keep], ids


def predict_split(run: LoadedRun, inputs: Inputs, split: str, tta: bool = False,
                  batch_size: int | None = None, features=None) -> pd.DataFrame:
    """One row per image: ids, true label, logits and probabilities per class.

    With `features` (a `FeatureCache` of the run's encoder) the cached features stand in
    for the images: the same model, without running the encoder's cached part again.
    """
    mesh = mesh_lib.make_mesh()
    nnx.update(run.model, jax.device_put(nnx.state(run.model), mesh_lib.replicated(mesh)))
    batch = batch_size or run.cfg.data.batch_size
    batch = max(mesh.devices.size, batch - batch % mesh.devices.size)
    cached = features.for_split(inputs, split, train=False) if features is not None else None
    data = pipeline.eval_dataset(example_loader(run.cfg, inputs, split, False, cached), batch)
    if features is not None:
        features.check_encoder(run.model.encoder)
        run.model.features_from = features.features_from
    try:
        logits, ids = predict_logits(run.model, data, mesh, tta and features is None)
    finally:
        run.model.features_from = None
    frame = inputs.frames[split].set_index("image_id").loc[ids].reset_index()
    probs = softmax(logits)
    out = frame[["image_id", "group_id", "label"]].copy()
    out["predicted"] = [run.classes[i] for i in probs.argmax(1)]
    for c, name in enumerate(run.classes):
        out[f"prob_{name}"] = probs[:, c]
    for c, name in enumerate(run.classes):
        out[f"logit_{name}"] = logits[:, c]
    return out
