"""What every evaluator sees (`Context`) and what each one gives back (`Output`)."""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from multimodal.data.pipeline.inputs import Inputs
    from multimodal.run import LoadedRun


@dataclasses.dataclass(frozen=True)
class Options:
    """The evaluation's settings (scripts/evaluate.py's options)."""
    n_boot: int = 1000
    operating_class: str | None = "mel"
    target_sensitivity: float = 0.9
    n_saliency: int = 6


@dataclasses.dataclass
class Output:
    """One evaluator's part: named results (metrics.json), report lines, notes (the
    report's closing bullet list)."""
    results: dict = dataclasses.field(default_factory=dict)
    section: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)


def arrays(preds: pd.DataFrame, classes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels as class indices, logits, probabilities) of a prediction frame."""
    lookup = {c: i for i, c in enumerate(classes)}
    labels = preds["label"].map(lookup).to_numpy()
    logits = preds[[f"logit_{c}" for c in classes]].to_numpy(np.float64)
    probs = preds[[f"prob_{c}" for c in classes]].to_numpy(np.float64)
    return labels, logits, probs


@dataclasses.dataclass
class Context:
    """The predictions to evaluate and everything around them.

    `preds`: the reported rows (image_id, group_id, label, prob_*, logit_*); `val`: the
    calibration rows' predictions (temperature scaling and the operating point are fitted
    on them) or None; `table_frame`: the dataset table (subgroup columns); `info`: what was
    evaluated (checkpoint, step, split, data, tta, modality, calibration_rows: in words);
    `notes`: the caller's notes for the report; `run`: the loaded run (a single model) and
    `inputs` the reported data's Inputs (saliency reads images from it), None for an
    ensemble. `labels`, `logits`, `probs` (and `val_*`) are the frames as arrays.
    """
    preds: pd.DataFrame
    val: pd.DataFrame | None
    classes: list[str]
    table_frame: pd.DataFrame
    out_dir: str
    info: dict
    options: Options = Options()
    notes: list[str] = dataclasses.field(default_factory=list)
    run: LoadedRun | None = None
    inputs: Inputs | None = None

    def __post_init__(self):
        self.labels, self.logits, self.probs = arrays(self.preds, self.classes)
        if self.val is not None:
            self.val_labels, self.val_logits, self.val_probs = arrays(self.val, self.classes)
        else:
            self.val_labels = self.val_logits = self.val_probs = None

    @property
    def split(self) -> str:
        return self.info["split"]

    @property
    def n_groups(self) -> int:
        return len(np.unique(self.preds["group_id"].to_numpy()))

    @functools.cached_property
    def shared_rows(self) -> set:
        """Image ids among both the calibration rows and the reported rows."""
        if self.val is None:
            return set()
        return set(self.val["image_id"]) & set(self.preds["image_id"])

    @property
    def calibration_rows(self) -> str:
        return self.info.get("calibration_rows", "the validation split")

    @property
    def calibrated_on(self) -> str:
        """'the N calibration rows (which)' for the report."""
        return f"the {len(self.val)} calibration rows ({self.calibration_rows})"

    @property
    def in_sample(self) -> str:
        """The report's remark on where calibrated numbers are reported."""
        if self.shared_rows:
            return " **These are the rows reported on: in-sample, optimistic.**"
        return f" Reported on the `{self.split}` rows, none of them among those."
