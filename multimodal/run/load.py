"""A saved run loaded: its model with the best (or latest) weights, its own splits as
inputs, another dataset or some of its rows as inputs, and the feature cache it was
trained on. A run directory (layout.py) holds all that is needed to rebuild them."""

from __future__ import annotations

import dataclasses
import json
import os

import pandas as pd

from multimodal.config import Config, load_config
from multimodal.data.images import geometry
from multimodal.data.pipeline import loaders
from multimodal.data.records import prepare, store
from multimodal.data.split.build import load_table
from multimodal.data.pipeline.inputs import Inputs, build_inputs
from multimodal.data.pipeline.metadata import MetadataEncoder
from multimodal.errors import DataError, RunError
from multimodal.models import build_for_task
from multimodal.run.checkpoint import load_model_weights
from multimodal.run.features import FeatureCache
from multimodal.run.files import load_run_config
from multimodal.run.layout import CLASSES, ENCODER, NORMALIZER, RUN_FILES, path


@dataclasses.dataclass
class LoadedRun:
    workdir: str
    cfg: Config
    classes: list[str]
    meta_encoder: MetadataEncoder
    normalizer: loaders.Normalizer
    model: object
    step: int


def load_run(workdir: str, which: str = "best") -> LoadedRun:
    """Rebuild a run's model from its directory and load its best (or latest) weights."""
    cfg = load_run_config(workdir)
    missing = [f for f in RUN_FILES if not os.path.exists(os.path.join(workdir, f))]
    if missing:
        raise RunError(f"{workdir} is incomplete: {missing} missing",
                       f"resume it with: python scripts/train.py --workdir {workdir} --resume")
    try:
        with open(path(workdir, CLASSES)) as f:
            classes = json.load(f)
        meta_encoder = MetadataEncoder.load(path(workdir, ENCODER))
        with open(path(workdir, NORMALIZER)) as f:
            normalizer = loaders.Normalizer.from_dict(json.load(f))
    except (ValueError, KeyError, TypeError) as exc:
        raise RunError(f"{workdir} holds a damaged run file ({type(exc).__name__}: {exc})",
                       "train the run again") from None
    model = build_for_task(cfg, len(classes), meta_encoder.dim)
    progress = load_model_weights(workdir, model, which, cfg.train.early_stop_metric)
    model.eval()
    return LoadedRun(workdir, cfg, classes, meta_encoder, normalizer, model, progress["step"])


def run_inputs(run: LoadedRun) -> Inputs:
    """The run's own splits (its split file), with its fitted metadata encoder and normaliser."""
    return build_inputs(run.cfg, run.workdir, meta_encoder=run.meta_encoder,
                        normalizer=run.normalizer)


def external_inputs(run: LoadedRun, data_config: str, cache_dir: str | None = None,
                    overrides=()) -> Inputs:
    """Another dataset, all rows as one `test` split, labels mapped by class name.

    Its pictures become model inputs exactly as the run's did: the run's image size and
    `data.geometry` (whatever the dataset's config says), prepared in `cache_dir` or, by
    default, the shared store. A median aspect ratio far from the run's training data's
    warns (geometry.check_aspect). Metadata columns the model knows but the dataset lacks
    are encoded as missing; an example with no metadata at all gets metadata_mask 0.
    """
    cfg = load_config(data_config, overrides)
    table = load_table(cfg.data)
    unknown = sorted(set(table.frame["label"]) - set(run.classes))
    if unknown:
        raise DataError(f"labels {unknown} of {data_config} are not classes of the model "
                         f"{run.classes}")
    table.classes = tuple(run.classes)
    split = table.frame[["image_id", "group_id", "label"]].assign(split="test")
    shape = run.cfg.data.geometry
    trained = (store.read_reference(run.workdir) or {}).get("aspect_ratio") or {}
    geometry.check_aspect(trained.get("train", trained.get("all")),
                          geometry.median_aspect(table.frame["image_path"]), shape,
                          f"{data_config} (evaluating {run.workdir})")
    return _test_inputs(run, table, split, cache_dir, cfg.data.on_missing)


def rows_inputs(run: LoadedRun, rows: pd.DataFrame, cache_dir: str | None = None) -> Inputs:
    """Rows of the run's own dataset (image_id, group_id, label) as one `test` split, made
    into model inputs with the run's encoder and normaliser (a cross-validation fold's model
    on the base test rows)."""
    table = load_table(run.cfg.data)
    table.classes = tuple(run.classes)
    table = table.subset(rows["image_id"])
    split = table.frame[["image_id", "group_id", "label"]].assign(split="test")
    return _test_inputs(run, table, split, cache_dir, run.cfg.data.on_missing)


def _test_inputs(run: LoadedRun, table, split, cache_dir, on_missing) -> Inputs:
    size, shape = run.cfg.data.image_size, run.cfg.data.geometry
    if cache_dir:
        prepare.prepare(table, split, cache_dir, size, overwrite=True,
                        on_missing=on_missing, geometry=shape)
    else:
        cache_dir, _ = store.prepare_shared(table, split, size, geometry=shape,
                                              on_missing=on_missing)
    manifest = prepare.read_manifest(cache_dir)
    source = prepare.open_split(cache_dir, "test")
    return Inputs(manifest, {"test": source}, {"test": prepare.split_frame(source, manifest)},
                  run.meta_encoder, run.normalizer, table.frame, prepared_dir=cache_dir)


def run_cache(run_or_cfg) -> FeatureCache | None:
    """The feature cache a run was trained on, when it still exists (else None)."""
    cfg = run_or_cfg.cfg if isinstance(run_or_cfg, LoadedRun) else run_or_cfg
    path = cfg.model.features
    if path and cfg.uses_image and os.path.exists(os.path.join(path, "key.json")):
        return FeatureCache.open(path)
    return None
