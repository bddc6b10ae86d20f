"""Predictions on the device mesh: logits and masks of a model over a dataset (training
validates with them) and a saved run's predictions of one split as a table."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from tqdm import tqdm

import pandas as pd

from multimodal import tasks
from multimodal.data.pipeline import loaders
from multimodal.data.pipeline.inputs import Inputs, example_loader
from multimodal.errors import RunError
from multimodal.metrics import softmax
from multimodal.run import mesh as mesh_lib


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


def on_mesh(model, num_devices: int | None = None):
    """The device mesh, with `model`'s state replicated over it (what predicting needs)."""
    mesh = mesh_lib.make_mesh(num_devices)
    nnx.update(model, jax.device_put(nnx.state(model), mesh_lib.replicated(mesh)))
    return mesh


@nnx.jit(static_argnums=(2, 3))
def _predict(model, batch, flips: bool, loss):
    image = batch["image"]
    if flips:  # test-time augmentation: mean probability over the four flips, flipped back
        probs = [jnp.flip(jax.nn.sigmoid(model(jnp.flip(image, axes))), axes) if axes else
                 jax.nn.sigmoid(model(image)) for axes in ((), (2,), (1,), (1, 2))]
        prob = jnp.clip(jnp.mean(jnp.stack(probs), 0), 1e-6, 1 - 1e-6)
        logits = jnp.log(prob) - jnp.log1p(-prob)
    else:
        logits = model(image)
    if "seg_mask" not in batch:  # images without masks (lesion crops of another dataset)
        return logits[..., 0] > 0, jnp.zeros(logits.shape[:3], bool), jnp.zeros(len(image))
    per_example = loss(logits, batch["seg_mask"]) if loss is not None else jnp.zeros(len(image))
    return logits[..., 0] > 0, batch["seg_mask"][..., 0] > 0.5, per_example


def predict_masks(model, dataset, mesh, tta: bool = False, loss=None,
                  progress: str | None = None) -> dict:
    """Predicted and true masks of every real (unpadded) example in dataset order.

    Returns {"pred": bool [N, H, W], "target": bool [N, H, W] (all False for a dataset
    without masks), "loss": [N] (zeros without `loss` or masks; `loss(logits, target)` -> [B], a
    hashable static argument such as training.segmenter.SegLossSpec), "image_id": list (single
    host only)}; `tta`: the mean probability of the four flips. `progress`: the label of a
    progress bar (terminals only).
    """
    preds, targets, losses, masks, ids = [], [], [], [], []
    total = len(dataset) if hasattr(dataset, "__len__") else None
    bar = tqdm(dataset, total=total, desc=progress, unit="batch", leave=False,
               disable=progress is None or not sys.stderr.isatty())
    for batch in bar:
        sharded = mesh_lib.shard_batch(batch, mesh)
        out = (*_predict(model, sharded, tta, loss), sharded["mask"])
        if jax.process_count() > 1:
            out = tuple(multihost_utils.process_allgather(x, tiled=True) for x in out)
        pred, target, batch_loss, mask = (np.asarray(x) for x in out)
        preds.append(pred)
        targets.append(target)
        losses.append(batch_loss)
        masks.append(mask > 0)
        ids += list(batch["image_id"])
    keep = np.concatenate(masks)
    return {"pred": np.concatenate(preds)[keep], "target": np.concatenate(targets)[keep],
            "loss": np.concatenate(losses)[keep],
            "image_id": [i for i, k in zip(ids, keep) if k] if jax.process_count() == 1
            else None}


def predict_split(run, inputs: Inputs, split: str, tta: bool = False,
                  batch_size: int | None = None, features=None) -> pd.DataFrame:
    """One row per image: ids, true label, logits and probabilities per class.

    With `features` (a `FeatureCache` of the run's encoder) the cached features stand in
    for the images: the same model, without running the encoder's cached part again.
    """
    if tasks.get(run.cfg.task).output != "classes":
        raise RunError(f"{run.workdir} is a {run.cfg.task} run: it predicts "
                       f"{tasks.get(run.cfg.task).output}, not classes",
                       "use a classification run here (masks: predict_split_masks)")
    mesh = on_mesh(run.model)
    batch = batch_size or run.cfg.data.batch_size
    batch = max(mesh.devices.size, batch - batch % mesh.devices.size)
    cached = features.for_split(inputs, split, train=False) if features is not None else None
    data = loaders.eval_dataset(example_loader(run.cfg, inputs, split, False, cached), batch)
    if features is not None:
        features.check_encoder(run.model.encoder)
    logits, ids = predict_logits(
        run.model, data, mesh, tta and features is None,
        progress=f"predict {split}" + (" (4 flips)" if tta else ""),
        features_from=features.features_from if features is not None else None)
    frame = inputs.frames[split].set_index("image_id").loc[ids].reset_index()
    probs = softmax(logits)
    out = frame[["image_id", "group_id", "label"]].copy()
    out["predicted"] = [run.classes[i] for i in probs.argmax(1)]
    for c, name in enumerate(run.classes):
        out[f"prob_{name}"] = probs[:, c]
    for c, name in enumerate(run.classes):
        out[f"logit_{name}"] = logits[:, c]
    return out


def predict_split_masks(run, inputs: Inputs, split: str, tta: bool = False,
                        batch_size: int | None = None) -> tuple[pd.DataFrame, dict]:
    """A segmentation run's masks on one split: a frame of the rows (ids, group, label) in
    prediction order, and {"pred", "target"}: bool [N, H, W] at the run's image size and
    geometry (thresholded at 0.5; `tta`: mean probability of the four flips)."""
    if tasks.get(run.cfg.task).output != "masks":
        raise RunError(f"{run.workdir} is a {run.cfg.task} run: it predicts no masks")
    mesh = on_mesh(run.model)
    batch = batch_size or run.cfg.data.batch_size
    batch = max(mesh.devices.size, batch - batch % mesh.devices.size)
    data = loaders.eval_dataset(example_loader(run.cfg, inputs, split, False), batch)
    out = predict_masks(run.model, data, mesh, tta,
                        progress=f"predict {split}" + (" (4 flips)" if tta else ""))
    frame = inputs.frames[split].set_index("image_id").loc[out["image_id"]].reset_index()
    return frame[["image_id", "group_id", "label"]], {"pred": out["pred"],
                                                      "target": out["target"]}
