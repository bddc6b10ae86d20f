"""Adapt a run to another clinic without labels: its BatchNorm statistics re-estimated on
the target images (scripts/evaluate.py --adapt-bn).

A camera, lamp or colour pipeline shifts the activations' means and variances that every
BatchNorm layer normalises with; re-estimating them on the target pictures (Schneider et al.
2020, "Improving robustness against common corruptions by covariate shift adaptation";
AdaBN, Li et al. 2016) undoes part of that shift without a single label. Only the BatchNorm
`mean` and `var` change; every learned weight stays as trained.

How: each BatchNorm layer is switched to batch statistics with momentum 0, the target
images go through the model in evaluation order (dropout off), and each layer's batch
means and variances are pooled over all images (weighted by the batch's image count;
variance by the law of total variance, so the spread between batches counts). `blend`
(0..1) is the weight of the target statistics against the training ones (1: the target's
alone; 0: the model unchanged). Deterministic: the same images give the same statistics.

The statistics are the target set's, class mix included: a target set with many more
melanomas than the training data moves them, and so the predictions, by its class mix as
well as by its camera (`CLASS_MIX_NOTE`). Below `MIN_IMAGES` images the estimate is too
noisy and is refused. Runs only: an exported model or an ensemble is not adapted.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from multimodal.data.pipeline import loaders
from multimodal.data.pipeline.inputs import example_loader
from multimodal.errors import ConfigError

MIN_IMAGES = 32
CLASS_MIX_NOTE = ("BatchNorm statistics re-estimated on the evaluated (target) images without "
                  "their labels: the target set's class mix biases them as well as its camera "
                  "(a set richer in one class moves the statistics towards it), so these "
                  "numbers hold for a clinic with this class mix.")


def batchnorms(model) -> list[tuple[tuple, nnx.BatchNorm]]:
    """The model's BatchNorm layers with their paths, in graph order."""
    return [(path, m) for path, m in nnx.iter_graph(model) if isinstance(m, nnx.BatchNorm)]


def _stats(layers) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each layer's (mean, var) as float64 host copies (the sums below need the precision)."""
    return [(np.asarray(bn.mean[...], np.float64), np.asarray(bn.var[...], np.float64))
            for _, bn in layers]


@nnx.jit
def _batch_statistics(model, image, metadata, metadata_mask):
    """One forward pass with batch statistics; each BatchNorm keeps its batch's mean and
    variance (momentum 0)."""
    model(image, metadata, metadata_mask)


def target_statistics(model, batches) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """Each BatchNorm layer's mean and variance over the images of `batches` (dicts of
    `image`, `metadata`, `metadata_mask`, only real rows), pooled over batches, and the
    number of images. The model is left as it was."""
    layers = batchnorms(model)
    saved = [(bn.use_running_average, bn.momentum) for _, bn in layers]
    before = _stats(layers)
    sums = [[0.0, 0.0] for _ in layers]  # per layer: n * mean, n * (var + mean^2)
    n = 0
    try:
        for _, bn in layers:
            bn.use_running_average, bn.momentum = False, 0.0
        for batch in batches:
            size = len(batch["image"])
            _batch_statistics(model, batch["image"], batch["metadata"], batch["metadata_mask"])
            for s, (mean, var) in zip(sums, _stats(layers)):
                s[0] = s[0] + size * mean
                s[1] = s[1] + size * (var + mean ** 2)
            n += size
    finally:
        for (_, bn), (average, momentum), (mean, var) in zip(layers, saved, before):
            bn.use_running_average, bn.momentum = average, momentum
            _assign(bn, mean, var)
    pooled = []
    for first, second in sums:
        mean = first / max(n, 1)
        pooled.append((mean, np.maximum(second / max(n, 1) - mean ** 2, 0.0)))
    return pooled, n


def set_statistics(model, stats, blend: float) -> None:
    """Each BatchNorm's statistics := (1 - blend) * its own + blend * `stats` (in float64,
    so blend 0 leaves them bit for bit)."""
    layers = batchnorms(model)
    for (_, bn), (own_mean, own_var), (mean, var) in zip(layers, _stats(layers), stats):
        _assign(bn, (1 - blend) * own_mean + blend * mean, (1 - blend) * own_var + blend * var)


def _assign(bn: nnx.BatchNorm, mean: np.ndarray, var: np.ndarray) -> None:
    bn.mean[...] = jnp.asarray(mean, bn.mean[...].dtype)
    bn.var[...] = jnp.asarray(var, bn.var[...].dtype)


def check_blend(blend: float) -> float:
    """The blend, refused outside [0, 1] (NaN included) before any work."""
    if not 0.0 <= blend <= 1.0:
        raise ConfigError(f"--adapt-bn-blend {blend:g}: must be in [0, 1] (the weight of the "
                          "target images' statistics; 1: theirs alone, 0: the training ones)",
                          "pass e.g. --adapt-bn-blend 0.5, or leave it at 1")
    return blend


def _real_rows(batches):
    """Batches without the padding rows eval_dataset adds (they would bias the statistics)."""
    for batch in batches:
        keep = np.asarray(batch["mask"]) > 0
        if keep.any():
            yield {k: np.asarray(batch[k])[keep] for k in ("image", "metadata",
                                                            "metadata_mask")}


def adapt_batchnorm(run, inputs, split: str, blend: float = 1.0,
                    min_images: int = MIN_IMAGES, what: str | None = None) -> dict:
    """Re-estimate `run.model`'s BatchNorm statistics on the images of `inputs`' `split`
    (their labels unused), blended with its own by `blend`. Refuses a model without
    BatchNorm and fewer than `min_images` images, before any pass. Returns what
    metrics.json records (`adapted_batchnorm`); `what`: the target's name in messages."""
    check_target(run, inputs, split, blend, min_images, what)
    # one device, unsharded: the statistics of each batch as a whole
    nnx.update(run.model, jax.device_put(nnx.state(run.model), jax.devices()[0]))
    batch = max(1, run.cfg.data.batch_size)
    data = loaders.eval_dataset(example_loader(run.cfg, inputs, split, False), batch)
    stats, seen = target_statistics(run.model, _real_rows(data))
    set_statistics(run.model, stats, blend)
    return {"target_images": int(seen), "blend": float(blend),
            "layers": len(batchnorms(run.model)), "min_images": min_images,
            "statistics_from": f"{what or split}: the evaluated images, unlabelled, in "
            "evaluation order", "note": CLASS_MIX_NOTE}


def check_target(run, inputs, split: str, blend: float = 1.0, min_images: int = MIN_IMAGES,
                 what: str | None = None) -> None:
    """Refuse before any work: a blend outside [0, 1], a model without BatchNorm, fewer
    than `min_images` target images."""
    check_blend(blend)
    if not batchnorms(run.model):
        raise ConfigError(f"{run.workdir} has no BatchNorm layers (encoder "
                          f"{run.cfg.model.encoder}, modality {run.cfg.modality}): nothing "
                          "for --adapt-bn to re-estimate",
                          "drop --adapt-bn, or use a run with BatchNorm (e.g. "
                          "model.encoder=small_cnn_bn, resnet18, efficientnet_lite0)")
    n = len(inputs.sources[split])
    check_count(n, f"{what or split} has {n}", min_images,
                "evaluate on a larger set of the target images, or drop --adapt-bn")


def check_count(n: int, counted: str, min_images: int = MIN_IMAGES,
                hint: str = "give more of the target images, or drop --adapt-bn") -> None:
    """Refuse fewer than `min_images` target images (`counted`: how many there are, in
    words, e.g. "10 given")."""
    if n < min_images:
        raise ConfigError(f"--adapt-bn needs at least {min_images} target images; {counted}: "
                          f"below {min_images} the BatchNorm statistics estimate is too noisy",
                          hint)
