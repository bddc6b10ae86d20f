"""Where a run stands: what a checkpoint stores besides the weights, so --resume continues
exactly (the step, the Grain iterator, the epoch's running sums, early-stopping state)."""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass
class Progress:
    step: int = 0
    epoch: int = 0
    iterator: str | None = None  # the training iterator's Grain state, as JSON
    best: float = -math.inf  # best validation score so far (train.early_stop_metric)
    bad_epochs: int = 0  # epochs since it improved
    history: list = dataclasses.field(default_factory=list)  # one record per epoch
    stopped: str | None = None  # why training ended early, if it did
    running: list = dataclasses.field(default_factory=lambda: [0.0, 0.0, 0.0])  # loss, acc, n

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Progress:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
