"""Fitted, JSON-serialisable encoder for patient metadata.

- numeric: standardised with training mean/std; missing -> 0 plus an indicator.
- categorical: one-hot over training categories plus an explicit `unknown`
  bucket, which takes blanks, the literal "unknown" and categories unseen in
  training.
- ordinal (e.g. Fitzpatrick I-VI): scaled to [0, 1] by the training range;
  missing -> 0 plus an indicator.
- binned (a numeric column, chosen with `data.metadata_encoding`, e.g. {age: binned}):
  one-hot over bins cut at training quantiles (up to BINS, ties merged), plus a missing
  bucket; lets a linear layer give each age band its own weight.

Fit on training rows only; save next to the model and load the same file at
evaluation and prediction time.
"""

from __future__ import annotations

import json
from typing import Mapping

import numpy as np
import pandas as pd
from multimodal.errors import ConfigError, DataError

UNKNOWN = "unknown"
KINDS = ("numeric", "categorical", "ordinal", "binned")
BINS = 8  # quantile bins of a binned column
_MISSING_TEXT = {"", "unknown", "nan", "none"}
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def is_missing(value) -> bool:
    """None, NaN and the texts "", "unknown", "nan", "none" (any case) count as missing."""
    return value is None or (isinstance(value, float) and np.isnan(value)) or str(
        value
    ).strip().lower() in _MISSING_TEXT


def _numbers(col) -> np.ndarray:
    """A column as float64 with every cell that is not a finite number (text, "inf", an
    int beyond float range, a list) NaN: missing, alike when fitting and encoding."""
    try:
        values = pd.to_numeric(col, errors="coerce").to_numpy(float)
    except (OverflowError, TypeError, ValueError):  # e.g. 10**400: pandas gives up on it
        values = np.array([_number(v) for v in col], float)
    return np.where(np.isfinite(values), values, np.nan)


def _number(value) -> float:
    try:
        return float(value)
    except (OverflowError, TypeError, ValueError):
        return float("nan")


def _check_stats(name: str, stats: dict) -> None:
    """Values near float's limits overflow the mean, spread or range: refuse them here
    rather than write a model input of inf."""
    numbers = [v for v in stats.values() if isinstance(v, float)] + list(stats.get("edges", []))
    if not all(np.isfinite(numbers)):
        raise DataError(f"metadata column {name!r}: values too large to standardise",
                        hint="check the column for typing or unit errors")


def _check_scaled(name: str, values: np.ndarray, scaled: np.ndarray) -> None:
    """A value whose encoding overflows float32 (e.g. an age of 1e300) is refused, not
    passed to the model as inf."""
    bad = np.isfinite(values) & ~(np.abs(scaled) <= _FLOAT32_MAX)
    if bad.any():
        raise DataError(f"metadata column {name!r}: {values[bad][0]:g} is too large to encode",
                        hint="check the value for a typing or unit error; leave the cell blank "
                             "when it is unknown")


class MetadataEncoder:
    def __init__(self, columns: Mapping[str, str]):
        for name, kind in columns.items():
            if kind not in KINDS:
                raise ValueError(f"metadata column {name!r}: kind {kind!r} not in {KINDS}")
        self.columns = dict(columns)
        self.stats: dict[str, dict] | None = None

    # -- fitting -----------------------------------------------------------------
    def fit(self, frame: pd.DataFrame) -> MetadataEncoder:
        with np.errstate(over="ignore", invalid="ignore"):  # _check_stats refuses overflows
            return self._fit(frame)

    def _fit(self, frame: pd.DataFrame) -> MetadataEncoder:
        stats = {}
        for name, kind in self.columns.items():
            if name not in frame.columns:
                raise DataError(f"metadata column {name!r} not in the table")
            col = frame[name]
            if kind == "categorical":
                seen = sorted({str(v).strip() for v in col if not is_missing(v)})
                stats[name] = {"categories": seen}
            else:
                values = _numbers(col)
                ok = values[np.isfinite(values)]  # "inf" in a CSV counts as missing
                if kind == "binned":
                    inner = np.quantile(ok, np.linspace(0, 1, BINS + 1)[1:-1]) if ok.size else []
                    stats[name] = {"edges": sorted({float(e) for e in inner})}
                elif kind == "numeric":
                    mean = float(ok.mean()) if ok.size else 0.0
                    std = float(ok.std()) if ok.size > 1 else 1.0
                    stats[name] = {"mean": mean, "std": std if std > 0 else 1.0}
                else:
                    lo = float(ok.min()) if ok.size else 0.0
                    hi = float(ok.max()) if ok.size else 1.0
                    stats[name] = {"min": lo, "max": hi if hi > lo else lo + 1.0}
            _check_stats(name, stats[name])
        self.stats = stats
        return self

    def _check_fitted(self):
        if self.stats is None:
            raise RuntimeError("MetadataEncoder is not fitted; call fit() on training rows")

    # -- encoding ----------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        self._check_fitted()
        names = []
        for name, kind in self.columns.items():
            if kind == "categorical":
                names += [f"{name}={c}" for c in self.stats[name]["categories"]]
                names.append(f"{name}={UNKNOWN}")
            elif kind == "binned":  # bin k: edges[k-1] <= value < edges[k] (stats hold them)
                # plain names: XGBoost stacking refuses feature names with [, ] or <
                names += [f"{name}_bin{k}" for k in range(len(self.stats[name]["edges"]) + 1)]
                names.append(f"{name}_missing")
            else:
                names += [name, f"{name}_missing"]
        return names

    @property
    def dim(self) -> int:
        return len(self.feature_names)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode rows to a float32 matrix [n, dim]; absent columns count as missing."""
        self._check_fitted()
        n = len(frame)
        blocks = []
        for name, kind in self.columns.items():
            st = self.stats[name]
            col = frame[name] if name in frame.columns else pd.Series([None] * n)
            if kind == "categorical":
                cats = st["categories"]
                lookup = {c: i for i, c in enumerate(cats)}
                block = np.zeros((n, len(cats) + 1), np.float32)
                idx = [
                    len(cats) if is_missing(v) else lookup.get(str(v).strip(), len(cats))
                    for v in col
                ]
                block[np.arange(n), idx] = 1.0
            elif kind == "binned":
                values = _numbers(col)
                edges = st["edges"]
                finite = np.isfinite(values)
                idx = np.where(finite, np.searchsorted(edges, np.where(finite, values, 0.0),
                                                       side="right"), len(edges) + 1)
                block = np.zeros((n, len(edges) + 2), np.float32)
                block[np.arange(n), idx] = 1.0
            else:
                values = _numbers(col)
                missing = np.isnan(values)
                if kind == "numeric":
                    scaled = (values - st["mean"]) / st["std"]
                else:
                    scaled = (values - st["min"]) / (st["max"] - st["min"])
                _check_scaled(name, values, scaled)
                block = np.stack([np.where(missing, 0.0, scaled), missing], 1).astype(np.float32)
            blocks.append(block)
        return np.concatenate(blocks, 1) if blocks else np.zeros((n, 0), np.float32)

    @staticmethod
    def kinds(declared: Mapping[str, str], encoding: Mapping[str, str] | None) -> dict:
        """The source's column kinds with `data.metadata_encoding` applied (numeric and
        ordinal columns may be binned)."""
        kinds = dict(declared)
        for name, kind in (encoding or {}).items():
            if name not in kinds:
                raise ConfigError(f"data.metadata_encoding: {name!r} is not a metadata column "
                                  f"of this run; its columns: {sorted(kinds)}")
            if kinds[name] not in ("numeric", "ordinal"):
                raise ConfigError(f"data.metadata_encoding: {name!r} is {kinds[name]}; only "
                                  "numeric or ordinal columns can be binned")
            kinds[name] = kind
        return kinds

    # -- persistence -------------------------------------------------------------
    def to_dict(self) -> dict:
        self._check_fitted()
        return {"format": "multimodal.MetadataEncoder/1", "columns": self.columns,
                "stats": self.stats}

    @classmethod
    def from_dict(cls, data: dict) -> MetadataEncoder:
        if data.get("format") != "multimodal.MetadataEncoder/1":
            raise DataError(f"not a metadata encoder file (format={data.get('format')!r})")
        enc = cls(data["columns"])
        enc.stats = data["stats"]
        return enc

    def save(self, path) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=1)

    @classmethod
    def load(cls, path) -> MetadataEncoder:
        with open(path) as f:
            return cls.from_dict(json.load(f))
