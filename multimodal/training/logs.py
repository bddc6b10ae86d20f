"""Optional TensorBoard event files (tensorboardX, no TensorFlow), next to metrics.jsonl."""

from __future__ import annotations

import os
from multimodal.errors import ConfigError


class Board:
    """Writes each epoch's record as scalars; does nothing when `workdir` is None."""

    def __init__(self, workdir: str | None):
        self.writer = None
        if workdir is None:
            return
        try:
            from tensorboardX import SummaryWriter
        except ImportError as exc:
            raise ConfigError("train.tensorboard needs tensorboardX: pip install "
                              "'multimodal[tensorboard]'") from exc
        self.writer = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, record: dict) -> None:
        if self.writer is None:
            return
        for key, value in record.items():
            if key not in ("epoch", "step") and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, record["step"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
