"""Everything a model reads: the table, its leak-checked split, the prepared splits, the
metadata encoder and image normaliser fitted on training rows, and example loaders.

Used by the trainer, by saved runs (multimodal/run/) and by scripts/prepare_data.py.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
import numpy as np

from multimodal import tasks
from multimodal.config import Config
from multimodal.data.images import geometry
from multimodal.data.pipeline import loaders
from multimodal.data.records import prepare, store
from multimodal.data.images.augment import OPS, parse_ops
from multimodal.data.split.build import load_table, resolve_split
from multimodal.data.pipeline.metadata import MetadataEncoder
from multimodal.data.split.grouped import SPLIT_FILE, content_hashes
from multimodal.data.pipeline.resample import oversampled_source


PHASH_CACHE = "perceptual_hashes"  # in the prepared store: the split's perceptual hashes


@dataclasses.dataclass
class Inputs:
    manifest: dict
    sources: dict  # split name -> random-access source
    frames: dict  # split name -> DataFrame of ids, labels, raw metadata
    meta_encoder: MetadataEncoder
    normalizer: loaders.Normalizer
    table_frame: object  # the full standard table (for subgroup analysis)
    image_hashes: dict | None = None  # image_id -> sha256 of the source image file
    prepared_dir: str | None = None  # the prepared folder the sources read

    @property
    def classes(self) -> list[str]:
        return self.manifest["classes"]

    def labels(self, split: str) -> np.ndarray:
        lookup = {c: i for i, c in enumerate(self.classes)}
        return self.frames[split]["label"].map(lookup).to_numpy(np.int32)


def preprocessing_ops(cfg: Config):
    """The deterministic ops of the augmentation list (also applied at evaluation)."""
    return [(n, o) for n, o in parse_ops(cfg.data.augment) if not OPS[n].random]


def split_table(cfg: Config, split_path: str, save: bool = True):
    """The checked table and its leak-checked split, saved to `split_path` (reused when it
    exists, so --resume and evaluation see the very same split; `save=False` only reads it);
    also the split's column and the images' sha256 (shared by the leak check and the
    prepared-data key)."""
    parse_ops(cfg.data.augment)  # fail on a bad op name or geometry before any work
    geometry.check(cfg.data.geometry)
    table = load_table(cfg.data, masks=tasks.get(cfg.task).masks)
    data_cfg = cfg.data
    if os.path.exists(split_path) and not data_cfg.split_file:
        data_cfg = dataclasses.replace(data_cfg, split_file=split_path)
    hashes = content_hashes(table.frame["image_path"])
    split = resolve_split(table, data_cfg, save_to=split_path if save else None, hashes=hashes,
                          phash_cache=os.path.join(store.store_root(), PHASH_CACHE))
    column = "split" if "split" in split.columns else "fold"
    return table, split, column, hashes


def build_inputs(cfg: Config, workdir: str, meta_encoder=None, normalizer=None) -> Inputs:
    """Load, split (leak-checked), prepare and fit the metadata encoder and the image
    normaliser on train rows (or take the run's own, when given)."""
    split_path = os.path.join(workdir, SPLIT_FILE)
    first = jax.process_index() == 0  # host 0 makes and writes the split; others read it
    if first:
        table, split, column, hashes = split_table(cfg, split_path)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("multimodal: split written")
    if not first:
        table, split, column, hashes = split_table(cfg, split_path, save=False)
    prepared_dir = prepared_data(cfg, workdir, table, split, column, hashes)
    manifest = prepare.read_manifest(prepared_dir)
    sources = {name: prepare.open_split(prepared_dir, name) for name in manifest["splits"]}
    frames = {name: prepare.split_frame(src, manifest) for name, src in sources.items()}
    if meta_encoder is None:
        meta_encoder = MetadataEncoder(MetadataEncoder.kinds(
            manifest["metadata"], cfg.data.metadata_encoding)).fit(frames["train"])
    if cfg.data.resample and "train" in sources:  # after fitting: synthetic rows have no metadata
        sources["train"] = oversampled_source(sources["train"], manifest["metadata"],
                                              cfg.data.image_size, cfg.data.resample,
                                              cfg.train.seed, cfg.data.geometry)
        frames["train"] = prepare.split_frame(sources["train"], manifest)
    if normalizer is None:
        normalizer = loaders.fit_normalizer(sources["train"], preprocessing_ops(cfg),
                                            cfg.data.image_size, cfg.data.normalize,
                                            geometry=cfg.data.geometry)
    return Inputs(manifest, sources, frames, meta_encoder, normalizer, table.frame,
                  dict(zip(table.frame["image_id"], hashes)), prepared_dir)


def prepared_data(cfg: Config, workdir: str, table, split, column: str, hashes) -> str:
    """The prepared folder of a run's inputs, prepared when missing; recorded in the run
    directory (`store.REFERENCE`) with the data's median aspect ratios.

    `data.prepared_dir` names one fixed folder (refused when prepared from other inputs);
    otherwise the shared store holds one folder per distinct input (store.prepare_shared),
    so runs on the same data share it (the folder the run recorded is tried first).
    """
    first = jax.process_index() == 0
    settings = {"image_size": cfg.data.image_size, "column": column, "hashes": hashes,
                "geometry": cfg.data.geometry, "on_missing": cfg.data.on_missing}
    reference = store.read_reference(workdir)
    if cfg.data.prepared_dir:
        path = cfg.data.prepared_dir
        manifest = prepare.prepare(table, split, path, **settings) if first else None
    else:
        path, manifest = store.prepare_shared(
            table, split, known=[reference["path"]] if reference else [], build=first,
            **settings)
    if first:
        print(f"prepared data: {manifest['status']} ({path})", flush=True)
        same = bool(reference) and reference.get("inputs_sha256") == manifest["inputs_sha256"]
        aspect = reference.get("aspect_ratio") if same else None
        if aspect is None or reference.get("path") != os.path.abspath(path):
            store.write_reference(workdir, path, manifest, aspect_ratio=aspect or
                                    median_aspect_ratios(table, split, column))
    if jax.process_count() > 1:  # the other hosts read what the first one prepared
        multihost_utils.sync_global_devices("multimodal: prepared data")
    return path


def median_aspect_ratios(table, split, column: str) -> dict:
    """Median width/height of the source pictures: of all rows and of each split part."""
    frame = table.frame[["image_id", "image_path"]].merge(split[["image_id", column]],
                                                          on="image_id")
    frame = frame.assign(ratio=geometry.aspect_ratios(frame["image_path"]))
    out = {"all": float(frame["ratio"].median())}
    out.update({str(k): float(v) for k, v in frame.groupby(column)["ratio"].median().items()})
    return out


def example_loader(cfg: Config, inputs: Inputs, split: str, train: bool,
                   features=None) -> loaders.ExampleLoader:
    """Loader of one split; with `features` ([N, views, ...] in split order, from a
    feature cache) examples carry cached encoder features instead of images."""
    ops = cfg.data.augment if train else preprocessing_ops(cfg)
    return loaders.ExampleLoader(
        inputs.sources[split], inputs.classes, inputs.meta_encoder, inputs.manifest["metadata"],
        ops,
        cfg.data.image_size, inputs.normalizer, train=train, seed=cfg.train.seed,
        augment_classes=cfg.data.augment_classes, features=features,
        images=cfg.uses_image, geometry=cfg.data.geometry,
        masks=tasks.get(cfg.task).masks and bool(inputs.manifest.get("masks")),
        image_dtype=jnp.bfloat16 if cfg.model.dtype == "bfloat16" else np.float32)
