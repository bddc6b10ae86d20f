"""A batch of cases for prediction on the command line (scripts/predict.py): image files,
folders and CSV files collected into items with their metadata, each row's metadata checked
against the model's fields, and the results rendered as a table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
import os

from multimodal.data.images.dicom import DICOM_EXTENSIONS, PIL_EXTENSIONS
from multimodal.errors import DataError, UserError

IMAGE_EXTENSIONS = PIL_EXTENSIONS + DICOM_EXTENSIONS  # what the one opener reads
PATH_COLUMNS = ("image_path", "path", "image", "file", "filename")


def collect(inputs) -> list[dict]:
    """[{"path", "given" (metadata from a CSV row), "where" (for messages)}] in order."""
    items = []
    for entry in inputs:
        if os.path.isdir(entry):
            names = sorted(n for n in os.listdir(entry) if n.lower().endswith(IMAGE_EXTENSIONS))
            if not names:
                raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in the folder",
                                file=entry)
            items += [{"path": os.path.join(entry, n), "given": {}, "where": None} for n in names]
        elif entry.lower().endswith(".csv"):
            items += _csv_items(entry)
        elif os.path.exists(entry):
            items.append({"path": entry, "given": {}, "where": None})
        else:
            raise DataError("no such file or folder", file=entry)
    return items


def _csv_items(path: str) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read the CSV ({type(exc).__name__}: {exc})", file=path) from None
    if not rows:
        raise DataError("the CSV has no rows", file=path)
    column = next((c for c in PATH_COLUMNS if c in rows[0]), None)
    if column is None:
        raise DataError(f"no image column; name one of {list(PATH_COLUMNS)}", file=path, line=1)
    base = os.path.dirname(os.path.abspath(path))
    items = []
    for line, row in enumerate(rows, start=2):
        image = (row.get(column) or "").strip()
        if not image:
            raise DataError(f"blank {column}", file=path, line=line)
        given = {k: v for k, v in row.items() if k and k != column and v not in (None, "")}
        items.append({"path": image if os.path.isabs(image) else os.path.join(base, image),
                      "given": given, "where": (path, line),
                      "columns": [k for k in rows[0] if k and k != column]})
    return items


def check_columns(predictor, items) -> None:
    """Refuse a CSV column that looks like a model field but is not one (`Age`, `gender`):
    its values would be ignored and the prediction made without them, silently."""
    from multimodal.serving.fields import resembles

    fields = list(predictor.vocabulary)
    for path, columns in {item["where"][0]: item["columns"] for item in items
                          if item["where"]}.items():
        odd = [(c, resembles(c, fields)) for c in columns if c not in predictor.vocabulary]
        odd = [f"{c!r} (for {f!r}?)" for c, f in odd if f]
        if odd:
            raise DataError(f"column(s) {', '.join(odd)} are not fields of this model, whose "
                            f"metadata fields are {fields}", file=path, line=1,
                            hint="rename the column(s) to the field names (or to something "
                            "else when they hold other data)")


def check_row(predictor, item: dict, flags: dict) -> dict:
    """The checked metadata of one input: CSV cells over flags over a DICOM image's header
    (age, sex, view, where the model accepts the value); CSV columns that are no field of
    the model (labels, ids) are ignored."""
    from multimodal.serving.images import header_metadata

    given = {**header_metadata(item["path"], predictor.vocabulary), **flags}
    if item["where"]:
        given.update({k: v for k, v in item["given"].items() if k in predictor.vocabulary})
    try:
        return predictor.check_metadata(given)
    except UserError as exc:
        if item["where"]:
            raise DataError(exc.problem, file=item["where"][0], line=item["where"][1]) from None
        raise


def saliency_name(path: str, used: set) -> str:
    stem = os.path.splitext(os.path.basename(path))[0] or "image"
    name, k = f"{stem}.saliency.png", 1
    while name in used:
        k += 1
        name = f"{stem}-{k}.saliency.png"
    used.add(name)
    return name


def render(results: list[dict], classes, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(results, indent=1) + "\n"
    fields = list(results[0]["metadata"]) if results else []
    if fmt == "csv":
        buf = io.StringIO()
        header = (["image", "top_class", "top_probability"] + [f"prob_{c}" for c in classes]
                  + [f"meta_{f}" for f in fields])
        explained = any("explanation" in r for r in results)
        groups = sorted({g for r in results for g in r.get("explanation", {})
                         .get("contributions", {})}, key=lambda g: (g != "image", g))
        header += [f"contribution_{g}" for g in groups] if explained else []
        header += ["saliency_png"] if any("saliency_png" in r for r in results) else []
        w = csv.writer(buf)
        w.writerow(header)
        for r in results:
            contrib = r.get("explanation", {}).get("contributions", {})
            row = ([r["image"], r["top_class"], f"{r['top_probability']:.6f}"]
                   + [f"{r['probabilities'][c]:.6f}" for c in classes]
                   + ["" if r["metadata"][f] is None else r["metadata"][f] for f in fields])
            row += (["" if contrib.get(g) is None else f"{contrib[g]:.6f}" for g in groups]
                    if explained else [])
            row += [r.get("saliency_png", "")] if "saliency_png" in header else []
            w.writerow(row)
        return buf.getvalue()
    width = max([5] + [len(os.path.basename(r["image"])) for r in results])
    lines = [f"{'image':<{width}}  {'top class':<9}  {'p':>5}  " + "  ".join(
        f"{c:>6}" for c in classes)]
    for r in results:
        lines.append(f"{os.path.basename(r['image']):<{width}}  {r['top_class']:<9}  "
                     f"{r['top_probability']:5.3f}  " + "  ".join(
                         f"{r['probabilities'][c]:6.3f}" for c in classes))
        ex = r.get("explanation")
        if ex and ex.get("contributions"):
            parts = ", ".join(f"{k} {'not given' if v is None else f'{v:+.3f}'}"
                              for k, v in ex["contributions"].items())
            lines.append(f"{'':<{width}}  contributions ({ex['method']}): {parts}")
        if r.get("saliency_png"):
            lines.append(f"{'':<{width}}  saliency: {r['saliency_png']}")
    return "\n".join(lines) + "\n"
