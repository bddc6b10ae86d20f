"""The metadata a model accepts (its vocabulary) and the checking of user-given values.

The vocabulary comes from the fitted `MetadataEncoder`(s): each field's kind, the accepted
categories (those seen in training) or the accepted number range. A user value is either
accepted (and canonicalised: categories matched case-insensitively), missing (blank,
`unknown`: encoded as missing exactly as in training, never invented), or refused with a
`MetadataInputError` that lists what is accepted. Unseen categories and a typed `nan`
are refused rather than silently sent to the encoder's `unknown` bucket or taken as blank.
`resembles` tells a misspelt field name (a CSV's `Age`, `gender`) from unrelated columns.
"""

from __future__ import annotations

import math

from multimodal.data.pipeline.metadata import MetadataEncoder, is_missing
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


def _is_nan_text(value) -> bool:
    """A typed `nan` (any case, any sign): refused like `inf`, not taken for a blank."""
    try:
        return isinstance(value, str) and math.isnan(float(value.strip()))
    except ValueError:
        return False


def parse_value(name: str, value, spec: dict):
    """One field's value -> canonical value, or None when missing; refuses bad values.

    A float NaN (a pandas blank) is missing; the text `nan` is refused: a user who types it
    meant a value, and training's reading of `nan` cells as blanks is no reason to guess."""
    hint = f"accepted: {_accepted(name, spec)}, or leave it blank (missing)"
    if _is_nan_text(value):
        raise MetadataInputError(f"{name}: {value.strip()!r} (not a number) is no value; {hint}")
    if value is None or (isinstance(value, float) and math.isnan(value)) or is_missing(value):
        return None
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


ALIASES = {"gender": "sex", "site": "localization", "location": "localization",
           "body_site": "localization", "anatom_site_general": "localization",
           "age_approx": "age"}  # other datasets' names for the same fields


def resembles(column: str, fields) -> str | None:
    """The model field `column` looks like a misspelling of: the same name in another case
    or spacing, a known alias, or (names of 4+ letters) within two edits; else None, so a
    dataset's own columns (dx, lesion_id, dx_type, notes) are left alone."""
    key = column.strip().lower().replace(" ", "_").replace("-", "_")
    for field in fields:
        name = field.lower()
        if key == name or ALIASES.get(key) == field:
            return field
        if min(len(key), len(name)) >= 4 and _edits(key, name) <= 2:
            return field
        if _edits(key, name) <= 1 and len(key) >= 3:
            return field
    return None


def _edits(a: str, b: str) -> int:
    """Levenshtein distance."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]
