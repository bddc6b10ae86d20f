"""The metadata a model accepts (its vocabulary) and the checking of user-given values.

The vocabulary comes from the fitted `MetadataEncoder`(s): each field's kind, the accepted
categories (those seen in training) or the accepted number range. A user value is either
accepted (and canonicalised: categories matched case-insensitively), missing (blank,
`unknown`: encoded as missing exactly as in training, never invented), or refused with a
`MetadataInputError` that lists what is accepted. Unseen categories are refused rather
than silently sent to the encoder's `unknown` bucket.
"""

from __future__ import annotations

import math

from multimodal.data.metadata import MetadataEncoder, is_missing
from multimodal.data.table import AGE_RANGE
from multimodal.errors import DataError


class MetadataInputError(DataError):
    """A metadata field or value the model does not accept (HTTP 422)."""
    status = 422


def vocabulary(*encoders: MetadataEncoder) -> dict:
    """{field: {"kind", "categories" | "range"}} over one or more encoders, in column order.

    With several (ensemble members), a category is accepted if any encoder saw it.
    """
    out: dict[str, dict] = {}
    for enc in encoders:
        if enc is None:
            continue
        for name, kind in enc.columns.items():
            stats = enc.stats[name]
            entry = out.setdefault(name, {"kind": kind})
            if kind == "categorical":
                seen = entry.setdefault("categories", [])
                entry["categories"] = seen + [c for c in stats["categories"] if c not in seen]
            elif kind == "ordinal":
                lo, hi = entry.get("range") or (stats["min"], stats["max"])
                entry["range"] = [min(lo, stats["min"]), max(hi, stats["max"])]
            elif "range" not in entry:  # numeric, binned: any number (age: a plausible one)
                entry["range"] = list(AGE_RANGE) if name == "age" else None
    return out


def _accepted(name: str, spec: dict) -> str:
    if spec["kind"] == "categorical":
        return f"one of {spec['categories']}"
    if spec.get("range"):
        lo, hi = spec["range"]
        return f"a number from {lo:g} to {hi:g}"
    return "a number"


def parse_value(name: str, value, spec: dict):
    """One field's value -> canonical value, or None when missing; refuses bad values."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or is_missing(value):
        return None
    hint = f"accepted: {_accepted(name, spec)}, or leave it blank (missing)"
    if spec["kind"] == "categorical":
        text = str(value).strip()
        for category in spec["categories"]:
            if category.lower() == text.lower():
                return category
        raise MetadataInputError(f"{name}: {text!r} is not a value this model knows; {hint}")
    try:
        number = float(str(value).strip())
    except ValueError:
        raise MetadataInputError(f"{name}: {str(value)!r} is not a number; {hint}") from None
    if not math.isfinite(number):
        raise MetadataInputError(f"{name}: {value!r} is not a finite number; {hint}")
    if spec.get("range") and not spec["range"][0] <= number <= spec["range"][1]:
        raise MetadataInputError(f"{name}: {number:g} is out of range; {hint}")
    return number


def parse_metadata(given: dict, vocab: dict, strict: bool = True) -> dict:
    """{field: value or None} for every field of `vocab` from user-given `given`.

    Fields absent from `given` are missing. With `strict`, a field the model does not
    know is refused, naming the fields it knows.
    """
    unknown = sorted(k for k in given if k not in vocab)
    if unknown and strict:
        known = list(vocab) or "none (the model uses no metadata)"
        raise MetadataInputError(f"unknown metadata field(s) {unknown}; this model's fields: "
                                 f"{known}")
    return {name: parse_value(name, given.get(name), spec) for name, spec in vocab.items()}
