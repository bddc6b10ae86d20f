"""Logits of a model over a dataset on the device mesh (validation in training, and the
predictions of saved runs in multimodal/runs.py)."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from tqdm import tqdm

from multimodal.training import mesh as mesh_lib


@nnx.jit(static_argnums=(2, 3))
def _logits(model, batch, flips, features_from):
    image = batch["image"]

    def logits(x):
        return model(x, batch["metadata"], batch["metadata_mask"], features_from=features_from)

    if flips:  # test-time augmentation: average logits over the four flips
        views = [image, image[:, :, ::-1], image[:, ::-1], image[:, ::-1, ::-1]]
        return jnp.mean(jnp.stack([logits(v) for v in views]), 0)
    return logits(image)


def predict_logits(model, dataset, mesh, tta: bool = False, progress: str | None = None,
                   features_from=None) -> tuple[np.ndarray, list | None]:
    """Logits of every real (unpadded) example in dataset order, and their image ids.

    With several hosts the logits and padding masks are gathered from all of them;
    ids are only returned on a single host (each host holds its own slice's ids).
    `progress`: the label of a progress bar over batches (shown on terminals only).
    """
    logits, masks, ids = [], [], []
    total = len(dataset) if hasattr(dataset, "__len__") else None
    bar = tqdm(dataset, total=total, desc=progress, unit="batch", leave=False,
               disable=progress is None or not sys.stderr.isatty())
    for batch in bar:
        sharded = mesh_lib.shard_batch(batch, mesh)
        out, mask = _logits(model, sharded, tta, features_from), sharded["mask"]
        if jax.process_count() > 1:
            out, mask = (multihost_utils.process_allgather(x, tiled=True) for x in (out, mask))
        logits.append(np.asarray(out))
        masks.append(np.asarray(mask) > 0)
        ids += list(batch["image_id"])
    keep = np.concatenate(masks)
    ids = [i for i, k in zip(ids, keep) if k] if jax.process_count() == 1 else None
    return np.concatenate(logits)[keep], ids
