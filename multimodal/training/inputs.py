"""Everything the train loop reads: prepared splits, fitted encoder and normaliser, loaders."""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from multimodal.config import Config, expand
from multimodal.data import pipeline, prepare
from multimodal.data.augment import OPS, parse_ops
from multimodal.data.build import load_table, resolve_split
from multimodal.data.metadata import MetadataEncoder
from multimodal.data.splits import content_hashes
from multimodal.data.resample import oversampled_source


@dataclasses.dataclass
class Inputs:
    manifest: dict
    sources: dict  # split name -> random-access source
    frames: dict  # split name -> DataFrame of ids, labels, raw metadata
    encoder: MetadataEncoder
    normalizer: pipeline.Normalizer
    table_frame: object  # the full standard table (for subgroup analysis)
    image_hashes: dict | None = None  # image_id -> sha256 of the source image file

    @property
    def classes(self) -> list[str]:
        return self.manifest["classes"]

    def labels(self, split: str) -> np.ndarray:
        lookup = {c: i for i, c in enumerate(self.classes)}
        return self.frames[split]["label"].map(lookup).to_numpy(np.int32)


def preprocessing_ops(cfg: Config):
    """The deterministic ops of the augmentation list (also applied at evaluation)."""
    return [(n, o) for n, o in parse_ops(cfg.data.augment) if not OPS[n].random]


def build_inputs(cfg: Config, workdir: str, encoder=None, normalizer=None) -> Inputs:
    """Load, split (leak-checked), prepare and fit the encoder/normaliser on train rows.

    A run directory that already holds split.csv reuses it, so --resume and
    evaluation see the very same split.
    """
    parse_ops(cfg.data.augment)  # fail on a bad op name before any work
    table = load_table(cfg.data)
    split_path = os.path.join(workdir, "split.csv")
    data_cfg = cfg.data
    if os.path.exists(split_path) and not data_cfg.split_file:
        data_cfg = dataclasses.replace(data_cfg, split_file=split_path)
    hashes = content_hashes(table.frame["image_path"])  # for the leak check and the cache key
    split = resolve_split(table, data_cfg, save_to=split_path, hashes=hashes)
    column = "split" if "split" in split.columns else "fold"
    prepared_dir = expand(cfg.data.prepared_dir) if cfg.data.prepared_dir else os.path.join(
        workdir, "prepared")
    if jax.process_index() == 0:
        manifest = prepare.prepare(table, split, prepared_dir, cfg.data.image_size, column=column,
                                   hashes=hashes)
        print(f"prepared data: {manifest['status']} ({prepared_dir})", flush=True)
    manifest = prepare.read_manifest(prepared_dir)
    sources = {name: prepare.open_split(prepared_dir, name) for name in manifest["splits"]}
    frames = {name: prepare.split_frame(src, manifest) for name, src in sources.items()}
    if encoder is None:
        encoder = MetadataEncoder(manifest["metadata"]).fit(frames["train"])
    if cfg.data.resample and "train" in sources:  # after fitting: synthetic rows have no metadata
        sources["train"] = oversampled_source(sources["train"], manifest["metadata"],
                                              cfg.data.image_size, cfg.data.resample,
                                              cfg.train.seed)
        frames["train"] = prepare.split_frame(sources["train"], manifest)
    if normalizer is None:
        normalizer = pipeline.fit_normalizer(sources["train"], preprocessing_ops(cfg),
                                             cfg.data.image_size, cfg.data.normalize)
    return Inputs(manifest, sources, frames, encoder, normalizer, table.frame,
                  dict(zip(table.frame["image_id"], hashes)))


def example_loader(cfg: Config, inputs: Inputs, split: str, train: bool,
                   features=None) -> pipeline.ExampleLoader:
    """Loader of one split; with `features` ([N, views, ...] in split order, from a
    feature cache) examples carry cached encoder features instead of images."""
    ops = cfg.data.augment if train else preprocessing_ops(cfg)
    return pipeline.ExampleLoader(
        inputs.sources[split], inputs.classes, inputs.encoder, inputs.manifest["metadata"], ops,
        cfg.data.image_size, inputs.normalizer, train=train, seed=cfg.train.seed,
        augment_classes=cfg.data.augment_classes, features=features,
        images=cfg.modality != "meta",
        image_dtype=jnp.bfloat16 if cfg.model.dtype == "bfloat16" else np.float32)
