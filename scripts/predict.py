"""Class probabilities for images, from a run, an ensemble or an exported model.

    python scripts/predict.py --checkpoint runs/demo image.jpg --age 54 --sex female --localization back
    python scripts/predict.py --checkpoint runs/stack photos/ --format csv --out predictions.csv
    python scripts/predict.py --model model/ cases.csv --explain --saliency overlays/ --format json

Inputs: image files, folders (their images, sorted; not recursive) and CSV files with a
column `image_path` (or `path`, `image`, `file`; relative to the CSV's folder) and
metadata columns named like the model's fields (blank = missing; `nan` is refused). A
column that looks like a misspelt field (`Age`, `gender`, `localisation`) is refused with
the model's fields; other columns (dx, lesion_id, notes) are ignored.
Limits: --max-file-mb, --max-pixels, --max-aspect (long side / short side) refuse an image
file before it is decoded; raise them for a genuine large or elongated image.
Metadata: --age, --sex, --localization or --meta FIELD=VALUE apply to every image; a
CSV's non-blank cells take precedence. A field not given is masked as in training, never
invented; an unknown value is refused with the accepted ones.
--explain: per prediction, how much the image and each metadata field moved it (SHAP
values of a stacked ensemble's XGBoost, else the change in the top-class probability when
each field is masked). --saliency DIR: an integrated-gradient overlay PNG per image.
A research tool, not a diagnosis.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys

from multimodal.errors import ConfigError, DataError, UserError, cli

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
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


def flags_metadata(args) -> dict:
    given = {k: getattr(args, k) for k in ("age", "sex", "localization")
             if getattr(args, k) is not None}
    for item in args.meta:
        if "=" not in item:
            raise ConfigError(f"--meta {item!r}: expected FIELD=VALUE, e.g. --meta age=54")
        key, value = item.split("=", 1)
        given[key.strip()] = value
    return given


def check_row(predictor, item: dict, flags: dict) -> dict:
    """The checked metadata of one input: CSV cells over flags; CSV columns that are no
    field of the model (labels, ids) are ignored."""
    given = dict(flags)
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


@cli
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="images, folders of images, CSV files")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a run or ensemble directory")
    source.add_argument("--model", help="an exported model (scripts/export.py --out)")
    parser.add_argument("--age", help="patient age in years (all images)")
    parser.add_argument("--sex", help="patient sex (all images)")
    parser.add_argument("--localization", help="body site (all images)")
    parser.add_argument("--meta", action="append", default=[], metavar="FIELD=VALUE",
                        help="any metadata field of the model (repeatable)")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    parser.add_argument("--out", help="write the output to this file (default: stdout)")
    parser.add_argument("--explain", action="store_true",
                        help="image / metadata contributions per prediction")
    parser.add_argument("--saliency", metavar="DIR", help="write a saliency overlay PNG per image")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--skip-bad", action="store_true",
                        help="warn about unreadable images and go on (default: stop)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--max-file-mb", type=float, default=256.0,
                        help="largest image file read, in MiB (default 256)")
    parser.add_argument("--max-pixels", type=int, default=40_000_000,
                        help="largest image in pixels (decompression bombs; default 40M)")
    parser.add_argument("--max-aspect", type=float, default=10.0,
                        help="largest ratio of long to short side (default 10)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size}: must be at least 1")
    if not (args.max_file_mb > 0 and args.max_pixels > 0 and args.max_aspect >= 1):
        raise ConfigError(f"--max-file-mb {args.max_file_mb:g}, --max-pixels {args.max_pixels}, "
                          f"--max-aspect {args.max_aspect:g}: sizes must be positive and the "
                          "aspect ratio at least 1")
    path = args.checkpoint or args.model
    if args.model and not os.path.isdir(args.model):
        raise ConfigError(f"--model {args.model}: no such folder",
                          "export one with: python scripts/export.py --checkpoint RUN --out DIR")
    items = collect(args.inputs)
    flags = flags_metadata(args)

    from PIL import Image
    from tqdm import tqdm

    from multimodal.serving.images import ImageInputError, read_image_file
    from multimodal.serving.overlay import overlay_png
    from multimodal.serving.predictor import Predictor

    predictor = Predictor.open(path)
    check_columns(predictor, items)
    rows = [check_row(predictor, item, flags) for item in items]  # all checked before work
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, args.max_pixels)  # ours decides
    limits = (int(args.max_file_mb * 2**20), args.max_pixels, args.max_aspect)
    if args.saliency:
        os.makedirs(args.saliency, exist_ok=True)
    results, used = [], set()
    bar = tqdm(total=len(items), unit="img", desc="predict", file=sys.stderr,
               disable=args.no_progress or len(items) <= args.batch_size)
    for start in range(0, len(items), args.batch_size):
        chunk, pictures, kept = items[start:start + args.batch_size], [], []
        for k, item in enumerate(chunk):
            try:
                picture = read_image_file(item["path"], *limits) if predictor.uses_image else None
                if picture is not None:
                    predictor.check_picture(picture, item["path"])
                pictures.append(picture)
                kept.append(start + k)
            except ImageInputError as exc:
                if not args.skip_bad:
                    raise
                print(f"warning: skipped {exc.one_line()}", file=sys.stderr)
        predictions = predictor.predict(pictures, [rows[i] for i in kept], explain=args.explain,
                                        saliency=bool(args.saliency) and predictor.uses_image)
        for i, pred in zip(kept, predictions):
            result = {"image": items[i]["path"], **pred.to_dict()}
            if pred.saliency is not None:
                target = os.path.join(args.saliency, saliency_name(items[i]["path"], used))
                with open(target, "wb") as f:
                    f.write(overlay_png(*pred.saliency))
                result["saliency_png"] = target
            results.append(result)
        bar.update(len(chunk))
    bar.close()
    text = render(results, predictor.classes, args.format)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"{len(results)} predictions -> {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
