"""Starting a run from another run's weights (`model.init_from: RUN`), the transfer of the
chest X-ray report (pretrain on one collection, fine-tune on the target) and of a clinic
fine-tuning a HAM10000 model on its own few hundred images.

What is loaded, part by part of the new model (its best checkpoint, as evaluation loads it):
- the image encoder: always, when the architecture and options are the same (another image
  size is fine: convolutions do not depend on it); otherwise refused in one line;
- the classification head: only when the classes are the same, in the same order; else it
  starts anew, and the run says so;
- the metadata part (MLP, FiLM / logit fusion): only when the metadata features are the
  same; else it starts anew, and the run says which;
- a segmentation model: whole, from a run of the same segmenter; a classifier's encoder
  does not start a U-Net (their layouts differ: `model.pretrained` loads ImageNet weights).
The new run fits its own normaliser unless `model.init_normalizer: source`. It records where
it started in `init_from.json` (the source run, its step, a digest of the loaded encoder),
and evaluation reports show it.
"""

from __future__ import annotations

import json
import os

import numpy as np
from flax import nnx

from multimodal import tasks
from multimodal.errors import ConfigError, RunError
from multimodal.run.layout import CLASSES, ENCODER, INIT_FROM, NORMALIZER, is_run, path

META_PARTS = ("meta", "film", "meta_head", "meta_weight")


def check_source(cfg) -> None:
    """Before any data is read: the source is a finished-or-not run of the same output kind
    and, for a classifier, the same encoder."""
    from multimodal.run.checkpoint import RunCheckpoints
    from multimodal.run.files import load_run_config

    source = cfg.model.init_from
    if not source:
        return
    if not is_run(source):
        raise RunError(f"model.init_from: {source} is not a run directory (no config.yaml)",
                       "pass a folder written by scripts/train.py")
    if RunCheckpoints.latest_step_in(source) is None:
        raise RunError(f"model.init_from: {source} has no checkpoint to start from")
    src = load_run_config(source)
    kind, src_kind = tasks.get(cfg.task).output, tasks.get(src.task).output
    if kind != src_kind:
        raise ConfigError(f"model.init_from: {source} is a {src.task} run; this is a {cfg.task} "
                          "run" + (": a classifier's encoder does not start a U-Net (their "
                                   "layouts differ); model.pretrained loads ImageNet weights"
                                   if kind == "masks" else ""))
    mine, theirs = _architecture(cfg), _architecture(src)
    if mine != theirs:
        raise ConfigError(f"model.init_from: {source} has {theirs}, this run {mine}: its weights "
                          "do not fit", "use a source run of the same architecture")


def _architecture(cfg) -> str:
    m = cfg.model
    if tasks.get(cfg.task).output == "masks":
        return f"segmenter {m.segmenter or m.encoder} {m.encoder_options or {}}"
    return f"encoder {m.encoder} {m.encoder_options or {}}"


def source_normalizer(cfg):
    """The source run's pixel normaliser when `model.init_normalizer: source`, else None."""
    if not cfg.model.init_from or cfg.model.init_normalizer != "source":
        return None
    from multimodal.data.pipeline.loaders import Normalizer

    with open(path(cfg.model.init_from, NORMALIZER)) as f:
        return Normalizer.from_dict(json.load(f))


def _shapes(tree) -> list:
    return [np.shape(x) for x in _leaves(tree)]


def _leaves(tree):
    if isinstance(tree, dict):
        for key in sorted(tree, key=str):
            yield from _leaves(tree[key])
    else:
        yield tree


def init_from_run(model, cfg, classes, meta_encoder) -> dict:
    """Load the source run's best weights into `model` part by part (module docstring);
    return the record written to init_from.json."""
    from multimodal.data.pipeline.metadata import MetadataEncoder
    from multimodal.models import build_for_task
    from multimodal.run.checkpoint import load_model_weights
    from multimodal.run.features import weights_digest
    from multimodal.run.files import load_run_config

    source = cfg.model.init_from
    src_cfg = load_run_config(source)
    with open(path(source, CLASSES)) as f:
        src_classes = json.load(f)
    src_meta = MetadataEncoder.load(path(source, ENCODER))
    src_model = build_for_task(src_cfg, len(src_classes), src_meta.dim)
    progress = load_model_weights(source, src_model, "best", src_cfg.train.early_stop_metric)
    mine, theirs = nnx.state(model).to_pure_dict(), nnx.state(src_model).to_pure_dict()
    loaded, fresh = [], {}
    same_meta = src_meta.feature_names == meta_encoder.feature_names
    for part in mine:
        if part not in theirs:
            fresh[part] = "the source has no such part"
            continue
        if _shapes(mine[part]) != _shapes(theirs[part]):
            reason = "its shapes differ"
        elif part == "head" and list(src_classes) != list(classes):
            reason = f"the classes differ (source {list(src_classes)})"
        elif part in META_PARTS and not same_meta:
            reason = "the metadata features differ"
        else:
            mine[part], reason = theirs[part], None
            loaded.append(part)
        if reason:
            fresh[part] = reason
    if tasks.get(cfg.task).output == "masks" and fresh:
        raise ConfigError(f"model.init_from: {source}'s segmentation model does not fit: "
                          f"{fresh}")
    if "encoder" in mine and "encoder" not in loaded:
        raise ConfigError(f"model.init_from: {source}'s encoder does not fit ("
                          f"{fresh.get('encoder')})")
    state = nnx.state(model)
    nnx.replace_by_pure_dict(state, mine)
    nnx.update(model, state)
    encoder = getattr(model, "encoder", None)
    record = {"run": os.path.abspath(source), "step": progress["step"],
              "loaded": loaded, "reinitialised": fresh,
              "encoder_digest": weights_digest(encoder)[:16] if encoder is not None else None,
              "normalizer": cfg.model.init_normalizer}
    for part, reason in fresh.items():
        print(f"init_from: {part} starts anew ({reason})", flush=True)
    print(f"init_from: loaded {', '.join(loaded)} from {source} (step {progress['step']})",
          flush=True)
    return record


def write_record(workdir: str, record: dict) -> None:
    with open(path(workdir, INIT_FROM), "w") as f:
        json.dump(record, f, indent=1)


def read_record(workdir: str) -> dict | None:
    try:
        with open(path(workdir, INIT_FROM)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def describe(record: dict | None) -> str | None:
    """One line for reports: where the run started."""
    if not record:
        return None
    fresh = ", ".join(f"{k} ({v})" for k, v in record["reinitialised"].items())
    return (f"started from `{record['run']}` (step {record['step']}): loaded "
            f"{', '.join(record['loaded'])}" + (f"; anew: {fresh}" if fresh else "")
            + f"; normaliser: {'the source run' if record['normalizer'] == 'source' else 'its own'}")
