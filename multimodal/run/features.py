"""Feature caches: a (pretrained) encoder run once over a dataset, its outputs kept on disk.

A cache is a directory `<root>/features/<encoder>-<key digest>/` holding
- `key.json`: everything the features depend on (encoder and options, a digest of its
  weights, image size, geometry, preprocessing ops, normaliser, a digest of the images, the block,
  the views) and what they are (shape, count);
- `features.npy`: [N, views, ...] float16, views = 1, or the four flips with `tta`;
  pooled embeddings, or the activations after block k (`block`, partial fine-tuning);
- `images.csv`: image_id and the sha256 of its source file, in row order.

The directory is named by the key's digest: a changed key recomputes into a new
directory, the same key finds the old one. A cache is written to a temporary directory
and renamed when complete, so a crash never leaves half a cache. Rows are looked up by
image id, so one cache serves any split of its dataset (stacking folds included).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import nnx
from tqdm import tqdm

from multimodal.config import Config
from multimodal.data.pipeline import loaders
from multimodal.models import build_model
from multimodal.run import mesh as mesh_lib
from multimodal.models.blocks import parse_block, position
from multimodal.data.pipeline.inputs import Inputs, build_inputs, example_loader, preprocessing_ops
from multimodal.errors import ConfigError, DataError


def weights_digest(module, block: int | None = None) -> str:
    """sha256 over a module's parameters and statistics (names, shapes and bytes); with
    `block`, over the encoder layers before that block only (what a block cache ran)."""
    end = None if block is None else parse_block(f"blocks.{block}", module.layer_order)
    h = hashlib.sha256()
    for path, value in sorted(nnx.iter_graph(module), key=lambda kv: str(kv[0])):
        if isinstance(value, (nnx.Param, nnx.BatchStat)):
            if end is not None and position(path, module.layer_order) >= end:
                continue
            array = np.asarray(value[...], np.float32)
            h.update(f"{path}{array.shape}".encode())
            h.update(array.tobytes())
    return h.hexdigest()


def dataset_digest(image_hashes: dict) -> str:
    h = hashlib.sha256()
    for image_id in sorted(image_hashes):
        h.update(f"{image_id}:{image_hashes[image_id]}\n".encode())
    return h.hexdigest()


def cache_key(cfg: Config, inputs: Inputs, encoder, block: int | None, tta: bool) -> dict:
    if block is not None and not hasattr(encoder, "head"):
        raise ConfigError(f"encoder {cfg.model.encoder!r} cannot resume from a block: it has no "
                         "features(x, upto) / head(x, start) pair (EfficientNet-Lite has)")
    return {"encoder": cfg.model.encoder, "encoder_options": cfg.model.encoder_options,
            "pretrained": cfg.model.pretrained, "weights_sha256": weights_digest(encoder, block),
            "image_size": cfg.data.image_size, "geometry": cfg.data.geometry,
            "preprocessing": [{n: o} for n, o in preprocessing_ops(cfg)],
            "normalizer": inputs.normalizer.to_dict(),
            "dataset_sha256": dataset_digest(inputs.image_hashes), "block": block,
            "views": 4 if tta else 1}


@nnx.jit(static_argnums=(2, 3))
def _encode(encoder, images, block, tta):
    views = [images, images[:, :, ::-1], images[:, ::-1], images[:, ::-1, ::-1]] if tta \
        else [images]
    outs = [encoder(v) if block is None else encoder.features(v, upto=block) for v in views]
    return jnp.stack(outs, 1).astype(jnp.float16)


def extract_features(cfg: Config, root: str, block: int | None = None, tta: bool = False,
                     batch_size: int | None = None, show_progress: bool = True) -> tuple[str, str]:
    """Cache the encoder's features for every image of `cfg`'s dataset under `root`.

    Returns (cache directory, "reused" | "extracted").
    """
    inputs = build_inputs(cfg, root)  # split.csv under root; prepared data from the store
    model = build_model(cfg.model, "image", len(inputs.classes), 0, cfg.train.seed)
    encoder = model.encoder
    encoder.eval()
    key = cache_key(cfg, inputs, encoder, block, tta)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = os.path.join(root, "features", f"{cfg.model.encoder}-{digest}")
    if os.path.exists(os.path.join(path, "key.json")):
        return path, "reused"

    if hasattr(encoder, "folded"):  # an inference-only form (the key holds the plain weights)
        encoder = encoder.folded()
    mesh = mesh_lib.make_mesh()
    nnx.update(encoder, jax.device_put(nnx.state(encoder), mesh_lib.replicated(mesh)))
    batch = batch_size or cfg.data.batch_size
    batch = max(mesh.devices.size, batch - batch % mesh.devices.size)
    chunks, ids = [], []
    bar = tqdm(total=sum(len(s) for s in inputs.sources.values()), unit="img",
               desc="extracting features", disable=not show_progress, dynamic_ncols=True)
    for split in inputs.sources:
        for b in loaders.eval_dataset(example_loader(cfg, inputs, split, train=False), batch):
            out = _encode(encoder, mesh_lib.shard_batch(b, mesh)["image"], block, tta)
            keep = np.asarray(b["mask"]) > 0
            chunks.append(np.asarray(out)[keep])
            ids += [i for i, k in zip(b["image_id"], keep) if k]
            bar.update(int(keep.sum()))
    bar.close()
    features = np.concatenate(chunks)
    tmp = f"{path}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    np.save(os.path.join(tmp, "features.npy"), features)
    pd.DataFrame({"image_id": ids, "sha256": [inputs.image_hashes[i] for i in ids]}).to_csv(
        os.path.join(tmp, "images.csv"), index=False)
    with open(os.path.join(tmp, "key.json"), "w") as f:
        json.dump({**key, "digest": digest, "shape": list(features.shape)}, f, indent=1)
    os.replace(tmp, path)
    return path, "extracted"


@dataclasses.dataclass
class FeatureCache:
    path: str
    key: dict
    features: np.ndarray  # memory-mapped [N, views, ...]
    row: dict  # image_id -> row
    sha256: list

    @classmethod
    def open(cls, path: str) -> FeatureCache:
        if not os.path.exists(os.path.join(path, "key.json")):
            raise DataError(f"{path} is not a feature cache (no key.json); make one with "
                                    "scripts/extract_features.py")
        with open(os.path.join(path, "key.json")) as f:
            key = json.load(f)
        images = pd.read_csv(os.path.join(path, "images.csv"), dtype=str)
        features = np.load(os.path.join(path, "features.npy"), mmap_mode="r", allow_pickle=False)
        return cls(path, key, features, {i: n for n, i in enumerate(images["image_id"])},
                   list(images["sha256"]))

    @property
    def features_from(self) -> str | int:
        return "pooled" if self.key["block"] is None else int(self.key["block"])

    @property
    def normalizer(self) -> loaders.Normalizer:
        return loaders.Normalizer.from_dict(self.key["normalizer"])

    def configure(self, cfg: Config) -> Config:
        """`cfg` with the image side and geometry the cache was made with; the encoder trains
        only above the cached block (not at all for pooled features)."""
        model = dataclasses.replace(cfg.model, encoder=self.key["encoder"],
                                    encoder_options=self.key["encoder_options"],
                                    pretrained=self.key["pretrained"])
        data = dataclasses.replace(cfg.data, image_size=self.key["image_size"],
                                   geometry=self.key.get("geometry", "crop"),
                                   augment=self.key["preprocessing"])
        start = "none" if self.key["block"] is None else f"blocks.{self.key['block']}"
        train = dataclasses.replace(cfg.train, unfreeze_from=start, freeze_encoder_epochs=0)
        return dataclasses.replace(cfg, model=model, data=data, train=train)

    def check_encoder(self, encoder) -> None:
        if weights_digest(encoder, self.key["block"]) != self.key["weights_sha256"]:
            raise DataError(f"the encoder's weights differ from those {self.path} was extracted "
                             "with (other pretrained weights or seed)")

    def for_split(self, inputs: Inputs, split: str, train: bool) -> np.ndarray:
        """Cached rows of a split in its order: every view in training; for evaluation the
        mean of the views (pooled) or the unflipped view (block activations)."""
        ids = list(inputs.frames[split]["image_id"])
        missing = [i for i in ids if i not in self.row]
        if missing:
            raise DataError(f"{len(missing)} images of split {split!r} (e.g. {missing[0]}) are "
                             f"not in the feature cache {self.path}")
        rows = [self.row[i] for i in ids]
        changed = [i for i, r in zip(ids, rows)
                   if inputs.image_hashes and inputs.image_hashes.get(i, self.sha256[r]) !=
                   self.sha256[r]]
        if changed:
            raise DataError(f"{len(changed)} images (e.g. {changed[0]}) changed since "
                             f"{self.path} was extracted; extract again")
        out = np.asarray(self.features[rows])
        if train:
            return out
        return out.mean(1, keepdims=True) if self.key["block"] is None else out[:, :1]
