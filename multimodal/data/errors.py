"""Errors raised by the data layer: each names the file, the row (as the file's line
number, header = line 1) and the problem."""

from __future__ import annotations


class DataError(ValueError):
    """A dataset file or row is unusable."""

    def __init__(self, problem: str, file: str | None = None, line: int | None = None):
        where = []
        if file is not None:
            where.append(str(file))
        if line is not None:
            where.append(f"line {line}")
        self.problem, self.file, self.line = problem, file, line
        super().__init__(f"{': '.join([', '.join(where), problem]) if where else problem}")


class LeakageError(RuntimeError):
    """Train and evaluation splits share a group or an identical image."""
