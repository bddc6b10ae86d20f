"""Grain input pipelines over prepared (ArrayRecord) splits.

Training reads a *plan*: the example order of every epoch, fixed up front
from the seed (shuffled, or class-balanced sampling with weights n_c^-alpha).
Each element of the plan carries its global position, which seeds that
example's augmentation, so batches do not depend on worker or host counts,
and a Grain iterator state restored from a checkpoint replays exactly the
batches an uninterrupted run would have seen.

Batches are dicts: `image` [B,H,W,3], `metadata` [B,D], `metadata_mask` [B]
(0 where the example carries no metadata at all), `label` [B], `image_id` [B]
(strings, host only), and `mask` [B] (0 for padding in evaluation batches). Segmentation
loaders (`masks=True`) add `seg_mask` [B,H,W,1] (float 0/1): the lesion mask, moved by the
same geometric augmentation and crop as its image (augment.apply_ops_with_mask).
"""

from __future__ import annotations

import copy
import dataclasses
import io
import math

import grain
import numpy as np
import pandas as pd
from PIL import Image

from multimodal.data.images.augment import apply_ops, apply_ops_with_mask, parse_ops
from multimodal.data.images.geometry import crop, fit  # noqa: F401 (crop: used by benchmarks)
from multimodal.data.pipeline.metadata import MetadataEncoder, is_missing
from multimodal.data.records.prepare import MASK, decode_mask, record_metadata
from multimodal.errors import ConfigError

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


@dataclasses.dataclass
class Normalizer:
    """Per-channel (x - mean) / std on the 0-255 scale."""
    mean: tuple = (127.5, 127.5, 127.5)
    std: tuple = (127.5, 127.5, 127.5)
    kind: str = "minus1_1"

    @classmethod
    def named(cls, kind: str) -> Normalizer:
        if kind == "imagenet":
            return cls(IMAGENET_MEAN, IMAGENET_STD, "imagenet")
        if kind == "minus1_1":
            return cls()
        raise ValueError(f"normalisation {kind!r} needs statistics; use fit_normalizer")

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return (image.astype(np.float32) - np.float32(self.mean)) / np.float32(self.std)

    def to_dict(self) -> dict:
        return {"mean": list(map(float, self.mean)), "std": list(map(float, self.std)),
                "kind": self.kind}

    @classmethod
    def from_dict(cls, data: dict) -> Normalizer:
        return cls(tuple(data["mean"]), tuple(data["std"]), data["kind"])


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def fit_normalizer(source, ops, image_size: int, kind: str, limit: int = 2000,
                   geometry: str = "crop") -> Normalizer:
    """`dataset` statistics from (up to `limit` evenly spaced) training images, as the model
    sees them at evaluation (`geometry`: padding included for `pad`)."""
    if kind != "dataset":
        return Normalizer.named(kind)
    ops = parse_ops(ops)
    idx = np.linspace(0, len(source) - 1, min(limit, len(source))).astype(int)
    total, total_sq, count = np.zeros(3), np.zeros(3), 0
    for i in idx:
        image = apply_ops(decode(source[int(i)]["image"]), ops, None, train=False)
        pixels = fit(image, image_size, geometry).reshape(-1, 3).astype(np.float64)
        total += pixels.sum(0)
        total_sq += (pixels ** 2).sum(0)
        count += len(pixels)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 1e-6))
    return Normalizer(tuple(map(float, mean)), tuple(map(float, std)), "dataset")


class ExampleLoader:
    """Turns (global position, record index) into one model-ready example."""

    def __init__(self, source, classes, meta_encoder: MetadataEncoder, metadata_kinds: dict,
                 ops, image_size: int, normalizer: Normalizer, train: bool, seed: int,
                 augment_classes=None, image_dtype=np.float32,
                 features: np.ndarray | None = None, images: bool = True,
                 geometry: str = "crop", masks: bool = False):
        self.source, self.classes, self.meta_encoder = source, list(classes), meta_encoder
        self.geometry = geometry  # how each picture becomes the image_size square
        self.metadata_kinds = dict(metadata_kinds)
        self.ops, self.image_size, self.normalizer = parse_ops(ops), image_size, normalizer
        self.train, self.seed, self.image_dtype = train, seed, image_dtype
        if features is not None and len(features) != len(source):
            raise ValueError(f"{len(features)} cached feature rows for {len(source)} records")
        self.features = features  # [N, views, ...]: replaces the decoded image
        # A metadata-only model never reads pixels: skip decoding, carry a 1x1 placeholder.
        self.images = images
        self.masks = masks  # segmentation: each example carries its lesion mask (`seg_mask`)
        if masks and (features is not None or not images):
            raise ValueError("segmentation examples need images (not cached features)")
        self.augment_labels = (None if augment_classes is None else
                               {self.classes.index(c) for c in augment_classes})

        # Metadata is encoded once per split, not per example: pandas per row is slow.
        rows = [record_metadata(source[i], self.metadata_kinds) for i in range(len(source))]
        self.metadata = meta_encoder.transform(pd.DataFrame(rows, columns=list(self.metadata_kinds)))
        self.observed = np.array([not all(is_missing(v) for v in r.values()) for r in rows],
                                 np.float32)

    def __call__(self, item) -> dict:
        position, index = int(item[0]), int(item[1])
        row = min(index, len(self.source) - 1)  # padding repeats the last record
        record = self.source[row]
        rng = np.random.default_rng([self.seed, position]) if self.train else None
        extra = {}  # segmentation: the example's mask
        if self.features is not None:  # a random cached view in training (flips), else view 0
            views = self.features[row]
            image = views[int(rng.integers(len(views))) if rng is not None else 0]
        elif not self.images:
            image = np.zeros((1, 1, 3), np.float32)
        else:
            augment = self.train and (self.augment_labels is None or
                                      record["label"] in self.augment_labels)
            if self.masks:
                image, mask = self._with_mask(record, rng, augment)
                extra["seg_mask"] = mask
            else:
                image = apply_ops(decode(record["image"]), self.ops, rng, train=augment)
                image = self.normalizer(fit(image, self.image_size, self.geometry, rng))
        return {
            "image": image.astype(self.image_dtype),
            **extra,
            "metadata": self.metadata[row],
            "metadata_mask": self.observed[row],
            "label": np.int32(record["label"]),
            "image_id": record["image_id"].decode(),
            "mask": np.float32(index < len(self.source)),  # eval padding indexes past the end
        }

    def _with_mask(self, record, rng, augment: bool) -> tuple[np.ndarray, np.ndarray]:
        """Normalised image and its [H,W,1] 0/1 mask, augmented and fitted alike (the mask
        by nearest neighbour, with a copy of the image's generator)."""
        image, mask = apply_ops_with_mask(decode(record["image"]), decode_mask(record[MASK]),
                                          self.ops, rng, train=augment)
        replay = copy.deepcopy(rng)  # the same crop square for the mask
        image = self.normalizer(fit(image, self.image_size, self.geometry, rng))
        mask = fit(mask, self.image_size, self.geometry, replay, resample=Image.NEAREST)
        return image, (mask > 127).astype(np.float32)[..., None]


def sampling_weights(labels: np.ndarray, n_classes: int, alpha: float = 0.0,
                     factors: dict[int, float] | None = None) -> np.ndarray:
    """Per-example weights proportional to n_c^-alpha (times optional per-class factors)."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    per_class = np.where(counts > 0, np.maximum(counts, 1) ** -alpha, 0.0)
    for label, factor in (factors or {}).items():
        per_class[label] *= factor
    weights = per_class[labels]
    return weights / weights.sum()


def epoch_order(labels: np.ndarray, n_classes: int, epoch: int, seed: int, alpha: float = 0.0,
                factors=None) -> np.ndarray:
    """Example order of one epoch: a permutation, or weighted sampling when balancing."""
    rng = np.random.default_rng([seed, epoch, 7])
    n = len(labels)
    if alpha == 0 and not factors:
        return rng.permutation(n)
    return rng.choice(n, size=n, replace=True, p=sampling_weights(labels, n_classes, alpha,
                                                                  factors))


def training_plan(labels, n_classes, epochs, global_batch, seed, alpha=0.0, factors=None,
                  process_index=0, process_count=1) -> tuple[np.ndarray, int]:
    """[(global position, record index)] for this host, and steps per epoch.

    Every epoch drops its remainder so all hosts see whole global batches; each
    host keeps its slice of every global batch.
    """
    steps = len(labels) // global_batch
    if steps == 0:
        raise ConfigError(f"{len(labels)} training examples cannot fill one batch of "
                         f"{global_batch}; lower data.batch_size")
    orders = [epoch_order(labels, n_classes, e, seed, alpha, factors)[: steps * global_batch]
              for e in range(epochs)]
    index = np.concatenate(orders).reshape(-1, global_batch)
    position = np.arange(index.size).reshape(index.shape)
    local = global_batch // process_count
    cols = slice(process_index * local, (process_index + 1) * local)
    plan = np.stack([position[:, cols].ravel(), index[:, cols].ravel()], 1)
    return plan, steps


def _finish(dataset: grain.MapDataset, batch_size: int, workers: int, threads: int):
    dataset = dataset.batch(batch_size, drop_remainder=True)
    iterable = dataset.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                                         prefetch_buffer_size=2 * batch_size))
    if workers > 0:
        from absl import flags

        if not flags.FLAGS.is_parsed():  # Grain's workers read absl flags; scripts don't parse them
            flags.FLAGS.mark_as_parsed()
        iterable = iterable.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return iterable


def train_dataset(loader: ExampleLoader, plan: np.ndarray, local_batch: int, workers: int = 0,
                  threads: int = 4):
    """An iterable of training batches over the whole plan (all epochs)."""
    return _finish(grain.MapDataset.source(plan).map(loader), local_batch, workers, threads)


def eval_dataset(loader: ExampleLoader, global_batch: int, process_index: int = 0,
                 process_count: int = 1, workers: int = 0, threads: int = 4):
    """Every example exactly once, last batch padded (mask 0), sharded across hosts."""
    n = len(loader.source)
    padded = max(1, math.ceil(n / global_batch)) * global_batch
    index = np.arange(padded).reshape(-1, global_batch)
    local = global_batch // process_count
    index = index[:, process_index * local:(process_index + 1) * local].ravel()
    plan = np.stack([index, index], 1)
    return _finish(grain.MapDataset.source(plan).map(loader), local, workers, threads)
