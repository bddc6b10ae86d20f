"""One network behind a prediction: its preprocessing and a logits function.

From a run directory the function is the run's model, jitted over its weights (loaded by
`multimodal.runs.load_run`, the best checkpoint as in evaluation). From an exported
model (serving/export.py) it is the deserialized `jax.export` module: no run directory,
config or model code is read (the modules for those are not even imported).
Both are differentiable in the image, so saliency works on either.
"""

from __future__ import annotations

import json
import os
import threading

import numpy as np

from multimodal.data.metadata import MetadataEncoder
from multimodal.errors import RunError
from multimodal.metrics import softmax
from multimodal.serving.preprocess import Preprocessing

EXPORT_FORMAT = "multimodal.Exported/1"
MODEL_FILE = "model.jax"


class SingleModel:
    """`logits(image, metadata, metadata_mask)` of one network with its preprocessing."""

    def __init__(self, classes, prep: Preprocessing, fn, params, source: dict):
        """`fn(params, image, metadata, metadata_mask) -> logits`, traceable by jax."""
        self.classes, self.prep, self.source = list(classes), prep, source
        self._fn, self._params = fn, params
        self._logits = _jit(fn)
        self._saliency: dict = {}  # steps -> jitted integrated gradients
        self._lock = threading.Lock()  # one device call at a time; requests come on threads

    @property
    def uses_image(self) -> bool:
        return self.prep.uses_image

    @property
    def uses_meta(self) -> bool:
        return self.prep.uses_meta and self.prep.meta_encoder.dim > 0

    @property
    def encoders(self) -> list:
        return [self.prep.meta_encoder] if self.uses_meta else []

    @classmethod
    def from_run(cls, workdir: str, which: str = "best") -> SingleModel:
        from flax import nnx

        from multimodal.runs import load_run

        run = load_run(workdir, which)
        graphdef, state = nnx.split(run.model)

        def logits(state, image, metadata, mask):
            return nnx.merge(graphdef, state)(image, metadata, mask)

        prep = Preprocessing.from_config(run.cfg, run.normalizer, run.meta_encoder)
        source = {"kind": "run", "path": os.path.abspath(workdir), "step": run.step,
                  "modality": run.cfg.modality, "encoder": run.cfg.model.encoder,
                  "fusion": run.cfg.model.fusion, "name": run.cfg.name}
        model = cls(run.classes, prep, logits, state, source)
        model.state, model.graphdef = state, graphdef  # for export
        return model

    @classmethod
    def from_export(cls, directory: str) -> SingleModel:
        from jax import export

        manifest = read_export_manifest(directory)
        try:
            with open(os.path.join(directory, "classes.json")) as f:
                classes = json.load(f)
            with open(os.path.join(directory, "preprocessing.json")) as f:
                prep_data = json.load(f)
            encoder = MetadataEncoder.load(os.path.join(directory, "metadata_encoder.json"))
            prep = Preprocessing.from_dict(prep_data, encoder)
            with open(os.path.join(directory, MODEL_FILE), "rb") as f:
                exported = export.deserialize(bytearray(f.read()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RunError(f"{directory} is not a complete exported model "
                           f"({type(exc).__name__}: {exc})",
                           "export it again: python scripts/export.py --checkpoint RUN --out DIR") \
                from None
        source = {**manifest.get("source", {}), "kind": "exported", "path":
                  os.path.abspath(directory)}
        return cls(classes, prep, lambda _, *inputs: exported.call(*inputs), (), source)

    def batch(self, pictures, metadata_rows) -> dict:
        return self.prep.batch(pictures, metadata_rows)

    def logits(self, batch: dict) -> np.ndarray:
        import jax.numpy as jnp

        with self._lock:
            out = self._logits(self._params, jnp.asarray(batch["image"]),
                               jnp.asarray(batch["metadata"]), jnp.asarray(batch["metadata_mask"]))
            return np.asarray(out, np.float32)

    def probabilities(self, pictures, metadata_rows) -> np.ndarray:
        return softmax(self.logits(self.batch(pictures, metadata_rows)).astype(np.float64))

    def attributions(self, picture, metadata: dict, target: int, steps: int = 16):
        """(the model's input picture as uint8 [H,W,3], integrated-gradient map [H,W]) for
        the `target` class; None for a model that reads no image."""
        if not self.uses_image or picture is None:
            return None
        import jax.numpy as jnp

        b = self.batch([picture], [metadata])
        if steps not in self._saliency:
            self._saliency[steps] = integrated_gradients_fn(self._fn, steps, b["image"].dtype)
        onehot = np.eye(len(self.classes), dtype=np.float32)[target]
        with self._lock:
            heat = self._saliency[steps](self._params, jnp.asarray(b["image"][0], jnp.float32),
                                         jnp.asarray(b["metadata"][0]),
                                         jnp.asarray(b["metadata_mask"][0]), onehot)
        return self.prep.shown(b["image"][0]), np.asarray(heat, np.float32)


def _jit(fn):
    import jax

    return jax.jit(fn)


def integrated_gradients_fn(fn, steps: int, image_dtype):
    """Jitted integrated gradients of `fn(params, ...)`: the computation of
    `multimodal.evaluation.saliency.integrated_gradients` (zero baseline, `steps` points,
    |attribution| summed over channels, metadata fixed), with the class as a one-hot
    argument so one compilation serves every class."""
    import jax
    import jax.numpy as jnp

    def ig(params, image, metadata, mask, onehot):
        alphas = jnp.linspace(0.0, 1.0, steps + 1)[1:]
        path = alphas[:, None, None, None] * image[None]
        meta = jnp.repeat(metadata[None], steps, 0)
        msk = jnp.repeat(mask[None], steps, 0)

        def target_logit(images):
            return (fn(params, images.astype(image_dtype), meta, msk) * onehot).sum()

        grads = jax.grad(target_logit)(path)
        return jnp.abs(image * grads.mean(0)).sum(-1)

    return jax.jit(ig)


def is_export(path: str) -> bool:
    manifest = os.path.join(path, "manifest.json")
    if not os.path.exists(manifest):
        return False
    try:
        with open(manifest) as f:
            return json.load(f).get("format") == EXPORT_FORMAT
    except (OSError, ValueError):
        return False


def read_export_manifest(directory: str) -> dict:
    try:
        with open(os.path.join(directory, "manifest.json")) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as exc:
        raise RunError(f"{directory}/manifest.json is missing or damaged ({exc})",
                       "export it again: python scripts/export.py --checkpoint RUN --out DIR") \
            from None
    if manifest.get("format") != EXPORT_FORMAT:
        raise RunError(f"{directory}/manifest.json: not an exported model "
                       f"(format {manifest.get('format')!r})")
    return manifest
