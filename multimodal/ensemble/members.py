"""Predictions of member runs, from cached features when the run was trained on them."""

from __future__ import annotations

import dataclasses

import pandas as pd

from multimodal.run import external_inputs, load_run, predict_split, run_cache, run_inputs


def prob_columns(classes) -> list[str]:
    return [f"prob_{c}" for c in classes]


def member_predictions(run_dir: str, splits=("val", "test")) -> tuple[dict, object, list]:
    """{split: predictions frame} of a run on its own split, its Inputs, its classes.

    A run trained on a feature cache predicts from the cache (the same model, without
    running the frozen encoder again); other runs predict from images.
    """
    run = load_run(run_dir)
    inputs = run_inputs(run)
    cache = run_cache(run.cfg)
    out = {s: predict_split(run, inputs, s, features=cache) for s in splits if s in inputs.sources}
    return out, inputs, run.classes


@dataclasses.dataclass(frozen=True)
class ExternalData:
    """Another dataset to score: a config whose `data` section names it (all its rows form
    one `test` split), `key=value` overrides, and where its prepared copies go (None: the
    shared prepared-data store)."""
    config: str
    cache_dir: str | None = None
    overrides: tuple = ()


def external_predictions(run_dir: str, data: ExternalData,
                         cache_dir: str | None = None) -> tuple[pd.DataFrame, object, list]:
    """(predictions on every row of another dataset, its Inputs, the run's classes).

    From images: a feature cache covers only the run's own dataset.
    """
    run = load_run(run_dir)
    inputs = external_inputs(run, data.config, cache_dir or data.cache_dir,
                             overrides=data.overrides)
    return predict_split(run, inputs, "test"), inputs, run.classes


def raw_metadata(table_frame: pd.DataFrame, image_ids) -> pd.DataFrame:
    """The raw metadata columns of `image_ids`, from the dataset table."""
    frame = table_frame.set_index("image_id")
    return frame.loc[list(image_ids)].reset_index()
