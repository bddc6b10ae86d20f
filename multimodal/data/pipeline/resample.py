"""SMOTE / ADASYN / random oversampling of small flattened images (imbalanced-learn).

One course report trained its 32x32 small-CNN baseline on ADASYN-oversampled
flattened images. Here the synthetic training set becomes an in-memory source
with the same record layout as a prepared split, so the normal pipeline reads
it. Synthetic images interpolate between neighbours of one class; they have no
patient, so their metadata is missing (encoded as such, metadata_mask 0).
Oversample the training split only: never validation or test.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from multimodal.data.images.geometry import fit
from multimodal.data.pipeline.loaders import decode
from multimodal.errors import ConfigError

METHODS = ("random", "smote", "adasyn")


def _encode_png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def oversample_arrays(images: np.ndarray, labels: np.ndarray, method: str = "smote",
                      seed: int = 0, k_neighbors: int = 5):
    """[N,H,W,3] uint8 + labels -> resampled arrays and a flag for synthetic rows."""
    from imblearn.over_sampling import ADASYN, SMOTE, RandomOverSampler

    if method not in METHODS:
        raise ConfigError(f"data.resample: method must be one of {METHODS}, not {method!r}")
    smallest = np.bincount(labels)[np.bincount(labels) > 0].min()
    k = max(1, min(k_neighbors, smallest - 1))
    sampler = {"random": lambda: RandomOverSampler(random_state=seed),
               "smote": lambda: SMOTE(random_state=seed, k_neighbors=k),
               "adasyn": lambda: ADASYN(random_state=seed, n_neighbors=k)}[method]()
    flat = images.reshape(len(images), -1).astype(np.float32)
    x, y = sampler.fit_resample(flat, labels)
    out = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, *images.shape[1:])
    synthetic = np.arange(len(out)) >= len(images)  # imbalanced-learn appends new rows
    return out, y.astype(np.int32), synthetic


class InMemorySource:
    """A random-access list of records, like a prepared split."""

    def __init__(self, records: list[dict]):
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        return self.records[index]


def oversampled_source(source, metadata_kinds: dict, image_size: int, method: str,
                       seed: int = 0, geometry: str = "crop") -> InMemorySource:
    """Decode a training split as `image_size` squares (by `geometry`, as at evaluation),
    oversample, re-encode as PNG."""
    originals = [source[i] for i in range(len(source))]
    images = np.stack([fit(decode(r["image"]), image_size, geometry) for r in originals])
    labels = np.array([r["label"] for r in originals], np.int32)
    new_images, new_labels, synthetic = oversample_arrays(images, labels, method, seed)
    blank = {f"meta_{name}": (b"" if kind == "categorical" else np.float32(np.nan))
             for name, kind in metadata_kinds.items()}
    records = []
    for i, (image, label, fake) in enumerate(zip(new_images, new_labels, synthetic)):
        if not fake:
            base = dict(originals[i])
        else:
            base = {**blank, "image_id": f"synthetic_{method}_{i}".encode(),
                    "group_id": f"synthetic_{i}".encode()}
        base.update({"image": _encode_png(image), "label": int(label)})
        records.append(base)
    return InMemorySource(records)
