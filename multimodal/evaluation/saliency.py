"""Integrated gradients (Sundararajan et al. 2017) overlays for the most confident errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from multimodal.data.pipeline.inputs import example_loader  # noqa: E402


def integrated_gradients(model, image, metadata, mask, target: int, steps: int = 24):
    """Attribution of the `target` logit to each pixel, from the all-zero normalised image
    (the training mean colour) as baseline.

    Returns |attribution| summed over channels, [H, W]. Metadata is held fixed.
    """
    alphas = jnp.linspace(0.0, 1.0, steps + 1)[1:]
    path = alphas[:, None, None, None] * image[None]
    meta = jnp.repeat(metadata[None], steps, 0)
    msk = jnp.repeat(jnp.asarray(mask)[None], steps, 0)

    def target_logit(images):
        return model(images, meta, msk)[:, target].sum()

    grads = jax.grad(target_logit)(path)
    attribution = image * grads.mean(0)
    return np.asarray(jnp.abs(attribution).sum(-1))


def confident_errors(run, inputs, split, preds, probs, labels, k: int) -> list[dict]:
    """The `k` wrong predictions of highest confidence, as examples of `split` (image,
    metadata, mask, label) with the predicted class and its probability."""
    wrong = np.flatnonzero(probs.argmax(1) != labels)
    order = wrong[np.argsort(-probs[wrong].max(1))][:k]
    loader = example_loader(run.cfg, inputs, split, train=False)
    position = {i: n for n, i in enumerate(inputs.frames[split]["image_id"])}
    examples = []
    for row in order:
        ex = loader((0, position[preds["image_id"].iloc[row]]))
        examples.append({**ex, "predicted": int(probs[row].argmax()),
                         "confidence": float(probs[row].max())})
    return examples


def error_gallery(model, examples, classes, normalizer, path: str, steps: int = 24) -> None:
    """One row per example: image, attribution heat map overlay, caption true/predicted."""
    if not examples:
        return
    fig, axes = plt.subplots(len(examples), 2, figsize=(5, 2.6 * len(examples)), squeeze=False)
    for row, ex in zip(axes, examples):
        heat = integrated_gradients(model, jnp.asarray(ex["image"]), jnp.asarray(ex["metadata"]),
                                    ex["metadata_mask"], ex["predicted"], steps)
        shown = np.clip(ex["image"] * np.float32(normalizer.std) + np.float32(normalizer.mean),
                        0, 255).astype(np.uint8)
        row[0].imshow(shown)
        row[0].set_title(f"{ex['image_id']}\ntrue {classes[ex['label']]}", fontsize=8)
        row[1].imshow(shown)
        row[1].imshow(heat / (heat.max() + 1e-8), cmap="inferno", alpha=0.55)
        row[1].set_title(f"predicted {classes[ex['predicted']]} "
                         f"(p={ex['confidence']:.2f})", fontsize=8)
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
