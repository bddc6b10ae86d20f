"""One network behind a prediction: its preprocessing and a logits function.

From a run directory the function is the run's model, jitted over its weights (loaded by
`multimodal.run.load_run`, the best checkpoint as in evaluation). From an exported
model (serving/export.py) it is the deserialized `jax.export` module: no run directory,
config or model code is read (the modules for those are not even imported).
Both are differentiable in the image, so saliency works on either.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading

import numpy as np

from multimodal.data.pipeline.metadata import MetadataEncoder
from multimodal.errors import ConfigError, RunError
from multimodal.metrics import softmax
from multimodal.serving.preprocess import Preprocessing

EXPORT_PREFIX = "multimodal.Exported/"
EXPORT_FORMAT = EXPORT_PREFIX + "1"
MODEL_FILE = "model.jax"
NOT_ADAPTED = ("--adapt-bn adapts a run: an exported model's function and statistics are "
               "fixed when it is exported", "pass the run it was exported from: --checkpoint RUN")


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

        from multimodal.run import load_run

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
        model.batch_size = run.cfg.data.batch_size  # --adapt-bn batches as evaluation's
        return model

    @classmethod
    def from_export(cls, directory: str) -> SingleModel:
        """Every file is read and checked here, so a damaged export fails at load (naming
        the file and the re-export command), not in the first request."""
        manifest = read_export_manifest(directory)
        classes = _load_part(directory, "classes.json", _read_json)
        prep_data = _load_part(directory, "preprocessing.json", _read_json)
        encoder = _load_part(directory, "metadata_encoder.json", MetadataEncoder.load)
        prep = _load_part(directory, "preprocessing.json",
                          lambda _: Preprocessing.from_dict(prep_data, encoder))
        exported = _load_part(directory, MODEL_FILE, _deserialize, _versions(manifest))
        _check_inputs(directory, exported, prep)
        source = {**manifest.get("source", {}), "kind": "exported", "path":
                  os.path.abspath(directory)}
        return cls(classes, prep, lambda _, *inputs: exported.call(*inputs), (), source)

    def batch(self, pictures, metadata_rows) -> dict:
        return self.prep.batch(pictures, metadata_rows)

    def adapt_batchnorm(self, cases, n_given: int, blend: float = 1.0) -> tuple[int, int]:
        """Re-estimate a run's BatchNorm statistics on `cases` ((picture, metadata row)
        pairs, read lazily: the target images, unlabelled; multimodal/evaluation/adapt.py) in
        batches of the run's batch size, as `evaluate.py --adapt-bn` does, blended with its
        own by `blend`; (images seen, BatchNorm layers). Refused before any case is read: an
        exported model (its function is fixed when exported), no BatchNorm, fewer than
        adapt.MIN_IMAGES `n_given`; and before the model changes when fewer could be read."""
        from flax import nnx

        from multimodal.evaluation import adapt

        if not hasattr(self, "graphdef"):
            raise ConfigError(*NOT_ADAPTED)
        model = nnx.merge(self.graphdef, self._params)
        if not adapt.batchnorms(model):
            raise ConfigError(f"{self.source['path']} has no BatchNorm layers: nothing for "
                              "--adapt-bn to re-estimate", "drop --adapt-bn")
        adapt.check_count(n_given, f"{n_given} given")

        def batches():
            pictures, rows = [], []
            for picture, row in cases:
                pictures.append(picture)
                rows.append(row)
                if len(pictures) == self.batch_size:
                    yield self.batch(pictures, rows)
                    pictures, rows = [], []
            if pictures:
                yield self.batch(pictures, rows)

        stats, seen = adapt.target_statistics(model, batches())
        adapt.check_count(seen, f"{seen} could be read")
        adapt.set_statistics(model, stats, blend)
        with self._lock:
            self._params = self.state = nnx.state(model)
        return seen, len(adapt.batchnorms(model))

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


def reexport(directory: str) -> str:
    """The fix for a damaged export (of an ensemble member: of the whole ensemble)."""
    parts = os.path.normpath(directory).split(os.sep)
    if len(parts) > 2 and parts[-2] == "members":
        directory = os.sep.join(parts[:-2])
    return f"export the model again: python scripts/export.py --checkpoint RUN --out {directory}"


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


def _deserialize(path: str):
    """The exported module, its StableHLO (forward and gradient: saliency) parsed by
    lowering both for one example: damaged bytes fail here, not in the first request.
    Nothing is compiled."""
    import jax
    from jax import export

    with open(path, "rb") as f:
        exported = export.deserialize(bytearray(f.read()))
    specs = [jax.ShapeDtypeStruct((1, *a.shape[1:]), a.dtype) for a in exported.in_avals]
    said: list[str] = []
    try:
        with _native_stderr(said):
            jax.jit(exported.call).lower(*specs)
            jax.jit(jax.grad(lambda *a: exported.call(*a).astype("float32").sum())).lower(*specs)
    except Exception as exc:  # noqa: BLE001 - re-raised with MLIR's own diagnostic
        raise ValueError(" ".join([str(exc), *said[:1]])) from None
    return exported


@contextlib.contextmanager
def _native_stderr(lines: list):
    """Capture what native code (MLIR) writes to file descriptor 2 into `lines`: on failure
    the one-line error carries it; on success it is written back, so nothing is lost."""
    sys.stderr.flush()
    saved, tmp = os.dup(2), tempfile.TemporaryFile()
    os.dup2(tmp.fileno(), 2)
    ok = False
    try:
        yield
        ok = True
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
        tmp.close()
        lines += [line.strip() for line in text.splitlines() if line.strip()]
        if ok and text:
            sys.stderr.write(text)


def _versions(manifest: dict) -> str:
    import jax

    made = manifest.get("jax_version")
    return f"; exported with jax {made}, this is jax {jax.__version__}" \
        if made and made != jax.__version__ else ""


def _load_part(directory: str, name: str, read, note: str = ""):
    """`read(path)` of one file of an exported model; a missing or damaged file (which
    fails in its parser's own way: struct.error, KeyError, ...) is a `RunError` naming it."""
    path = os.path.join(directory, name)
    try:
        return read(path)
    except Exception as exc:  # noqa: BLE001 - any parser error of a damaged file
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
        problem = ("is missing" if isinstance(exc, FileNotFoundError) else
                   f"is damaged ({detail}{note})")
        raise RunError(f"{path}: a file of the exported model {problem}",
                       reexport(directory)) from None


def _check_inputs(directory: str, exported, prep: Preprocessing) -> None:
    """model.jax takes the inputs preprocessing.json and the encoder make (not files of
    different exports)."""
    want = [prep.image_shape(), (prep.meta_encoder.dim,), ()]
    got = [tuple(a.shape[1:]) for a in exported.in_avals]
    if got != want:
        raise RunError(f"{os.path.join(directory, MODEL_FILE)} takes inputs of shapes {got}, "
                       f"but preprocessing.json and metadata_encoder.json make {want}: the "
                       "files come from different exports", reexport(directory))


def is_export(path: str) -> bool:
    """A folder export.py wrote (of any format version, refused later with the fix)."""
    manifest = os.path.join(path, "manifest.json")
    if os.path.exists(os.path.join(path, MODEL_FILE)):
        return True
    if not os.path.exists(manifest):
        return False
    try:
        with open(manifest) as f:
            return str(json.load(f).get("format", "")).startswith(EXPORT_PREFIX)
    except (OSError, ValueError, AttributeError):
        return False


def read_export_manifest(directory: str) -> dict:
    path = os.path.join(directory, "manifest.json")
    manifest = _load_part(directory, "manifest.json", _read_json)
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise RunError(f"{path}: export format {found!r}, this version of multimodal reads "
                       f"{EXPORT_FORMAT!r}", reexport(directory) + " (with this version)")
    return manifest
