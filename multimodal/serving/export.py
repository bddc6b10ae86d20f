"""A self-contained inference artifact of a run or an ensemble.

    model/
      manifest.json          format multimodal.Exported/1: kind (model | ensemble), input
                             shapes and dtypes (batch symbolic), output, metadata vocabulary,
                             the source run, jax version
      model.jax              the network, weights included, serialized with jax.export
                             (differentiable to first order: saliency works on it)
      preprocessing.json     image size, geometry, deterministic ops, normaliser constants,
                             record encoding
      metadata_encoder.json  the fitted metadata encoder
      classes.json           class names in output order
      MODEL_CARD.md          the model card (model_card.py): details, intended use, training
                             data, every evaluation the run folder holds, failure modes

An ensemble exports each member that way under `members/<k>/`, beside the manifest's
`ensemble` entry (late fusion weights, or the stacker `stacker.ubj` + its encoder and
columns). `Predictor.open(model/)` runs it without the run directory, its config or the
model code (serving/model.py `SingleModel.from_export`).
"""

from __future__ import annotations

import json
import os

from multimodal.errors import ConfigError, RunError
from multimodal.serving.explain import stacker_columns
from multimodal.serving.fields import vocabulary
from multimodal.serving.model_card import CARD, write_model_card
from multimodal.serving.model import EXPORT_FORMAT, MODEL_FILE, SingleModel


def _write_json(path: str, data) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def export_single(model: SingleModel, out: str) -> dict:
    """Write one network (from a run) to `out`; return its manifest."""
    import jax
    import jax.numpy as jnp
    from flax import nnx
    from jax import export

    if not hasattr(model, "state"):
        raise RunError(f"{model.source.get('path')} is already exported; copy the folder")
    graphdef, state = model.graphdef, model.state

    def logits(image, metadata, mask):
        return nnx.merge(graphdef, state)(image, metadata, mask)

    prep = model.prep
    batch = export.symbolic_shape("batch")[0]
    image_dtype = jnp.bfloat16 if prep.image_dtype == "bfloat16" else jnp.float32
    specs = (jax.ShapeDtypeStruct((batch, *prep.image_shape()), image_dtype),
             jax.ShapeDtypeStruct((batch, prep.meta_encoder.dim), jnp.float32),
             jax.ShapeDtypeStruct((batch,), jnp.float32))
    exported = export.export(jax.jit(logits))(*specs)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, MODEL_FILE), "wb") as f:
        f.write(exported.serialize(vjp_order=1))
    _write_json(os.path.join(out, "classes.json"), model.classes)
    _write_json(os.path.join(out, "preprocessing.json"), prep.to_dict())
    prep.meta_encoder.save(os.path.join(out, "metadata_encoder.json"))
    manifest = {
        "format": EXPORT_FORMAT, "kind": "model", "classes": model.classes,
        "inputs": {"image": {"shape": ["batch", *prep.image_shape()],
                             "dtype": prep.image_dtype,
                             "note": "normalised pixels (preprocessing.json)"},
                   "metadata": {"shape": ["batch", prep.meta_encoder.dim], "dtype": "float32",
                                "features": prep.meta_encoder.feature_names},
                   "metadata_mask": {"shape": ["batch"], "dtype": "float32",
                                     "note": "0 when every metadata field is missing"}},
        "output": {"logits": {"shape": ["batch", len(model.classes)], "dtype": "float32"}},
        "metadata_vocabulary": vocabulary(*model.encoders),
        "platforms": list(exported.platforms), "jax_version": jax.__version__,
        "source": model.source, "files": [MODEL_FILE, "preprocessing.json",
                                          "metadata_encoder.json", "classes.json"],
    }
    _write_json(os.path.join(out, "manifest.json"), manifest)
    return manifest


# everything an export wrote before exports left the output marker (multimodal.outputs)
EXPORT_ENTRIES = (MODEL_FILE, "manifest.json", "classes.json", "preprocessing.json",
                  "metadata_encoder.json", "members", "stacker.ubj",
                  "stacker_metadata_encoder.json")


def export_model(checkpoint: str, out: str, overwrite: bool = False) -> dict:
    """Export a run or an ensemble directory to `out`: a new or empty folder, or (with
    `overwrite`) an earlier export; never the run itself or a folder of other files.
    Written in a temporary sibling and renamed into place when complete."""
    from multimodal.outputs import check_output, staged_output
    from multimodal.serving.ensemble import EnsembleModel
    from multimodal.serving.predictor import Predictor

    protected = {checkpoint: "run being exported"}
    check_output(out, "export", overwrite, protected=protected, legacy=EXPORT_ENTRIES)
    predictor = Predictor.open(checkpoint)
    if predictor.kind.startswith("exported"):
        raise ConfigError(f"{checkpoint} is already an exported model; copy the folder")
    with staged_output(out, "export", overwrite, protected=protected,
                       legacy=EXPORT_ENTRIES) as tmp:
        model = predictor.model
        if isinstance(model, EnsembleModel):
            manifest = _export_ensemble(model, checkpoint, tmp)
        else:
            manifest = export_single(model, tmp)
        write_model_card(checkpoint, os.path.join(tmp, CARD), occasion="export")
    return manifest


def _export_ensemble(model, checkpoint: str, out: str) -> dict:
    import jax

    members = []
    for k, member in enumerate(model.members):
        export_single(member, os.path.join(out, "members", str(k)))
        members.append(f"members/{k}")
    ensemble = {"kind": model.kind, "classes": model.classes}
    if model.kind == "late_fusion":
        ensemble["weights"] = list(map(float, model.weights))
    else:
        model.stacker.save(os.path.join(out, "stacker.ubj"))
        model.encoder.save(os.path.join(out, "stacker_metadata_encoder.json"))
        ensemble.update(stacker="stacker.ubj", metadata_encoder="stacker_metadata_encoder.json",
                        columns=stacker_columns(model.stacker), group_context=model.group_context)
    manifest = {"format": EXPORT_FORMAT, "kind": "ensemble", "classes": model.classes,
                "members": members, "ensemble": ensemble,
                "metadata_vocabulary": vocabulary(*model.encoders),
                "jax_version": jax.__version__,
                "source": {**model.source, "path": os.path.abspath(checkpoint)}}
    _write_json(os.path.join(out, "manifest.json"), manifest)
    return manifest
