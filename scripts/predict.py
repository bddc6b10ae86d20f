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
--adapt-bn (a run only, at least 32 images): first re-estimate the run's BatchNorm statistics
on all the given images, unlabelled (a new clinic's camera; multimodal/evaluation/adapt.py),
blended with the training ones by --adapt-bn-blend, then predict them all. The run's files
are not changed. An exported model or an ensemble is not adapted: pass the run itself.
The images' class mix biases the statistics as well as their camera.
A research tool, not a diagnosis.
"""

from __future__ import annotations

import argparse
import os
import sys

from multimodal.errors import ConfigError, cli
from multimodal.serving.images import add_limit_options, check_limit_options
from multimodal.serving.cases import (check_columns, check_row, collect, render,
                                      saliency_name)


def flags_metadata(args) -> dict:
    given = {k: getattr(args, k) for k in ("age", "sex", "localization")
             if getattr(args, k) is not None}
    for item in args.meta:
        if "=" not in item:
            raise ConfigError(f"--meta {item!r}: expected FIELD=VALUE, e.g. --meta age=54")
        key, value = item.split("=", 1)
        given[key.strip()] = value
    return given


def adapt_to_images(predictor, n_items: int, blend: float | None, cases) -> None:
    """predict.py --adapt-bn: the run's BatchNorm statistics re-estimated on the given
    images ((picture, metadata row) pairs, read lazily); an ensemble refused here, the
    rest by the model (SingleModel.adapt_batchnorm) before any image is read."""
    from multimodal.evaluation.adapt import CLASS_MIX_NOTE

    if predictor.kind != "run":
        raise ConfigError(f"--adapt-bn adapts one run; {predictor.path} is a "
                          f"{predictor.kind}", "pass one of its member runs with --checkpoint")
    blend = 1.0 if blend is None else blend  # checked with the other arguments
    seen, layers = predictor.model.adapt_batchnorm(cases, n_items, blend)
    print(f"adapted BatchNorm on {seen} target images ({layers} layers, blend {blend:g}); "
          f"{CLASS_MIX_NOTE}", file=sys.stderr)


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
    parser.add_argument("--adapt-bn", action="store_true",
                        help="re-estimate a run's BatchNorm statistics on these images first")
    parser.add_argument("--adapt-bn-blend", type=float, default=None, metavar="0..1",
                        help="with --adapt-bn: the target statistics' weight (default 1)")
    add_limit_options(parser, "--max-file-mb", 256.0, "largest image file read")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.adapt_bn_blend is not None and not args.adapt_bn:
        raise ConfigError("--adapt-bn-blend needs --adapt-bn", "add --adapt-bn")
    if args.adapt_bn_blend is not None:
        from multimodal.evaluation.adapt import check_blend

        check_blend(args.adapt_bn_blend)
    if args.adapt_bn and args.model:  # before the model is loaded
        from multimodal.serving.model import NOT_ADAPTED

        raise ConfigError(*NOT_ADAPTED)
    check_limit_options("--max-file-mb", args.max_file_mb, args.max_pixels, args.max_aspect)
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
    def chunks(warn: bool):
        """(indices kept, pictures) per batch of items; unreadable ones stop or are skipped."""
        for start in range(0, len(items), args.batch_size):
            pictures, kept = [], []
            for k, item in enumerate(items[start:start + args.batch_size]):
                try:
                    picture = (read_image_file(item["path"], *limits) if predictor.uses_image
                               else None)
                    if picture is not None:
                        predictor.check_picture(picture, item["path"])
                    pictures.append(picture)
                    kept.append(start + k)
                except ImageInputError as exc:
                    if not args.skip_bad:
                        raise
                    if warn:
                        print(f"warning: skipped {exc.one_line()}", file=sys.stderr)
            yield kept, pictures

    if args.adapt_bn:
        adapt_to_images(predictor, len(items), args.adapt_bn_blend,
                        ((picture, rows[i]) for kept, pictures in chunks(False)
                         for i, picture in zip(kept, pictures)))
    if args.saliency:
        os.makedirs(args.saliency, exist_ok=True)
    results, used = [], set()
    bar = tqdm(total=len(items), unit="img", desc="predict", file=sys.stderr,
               disable=args.no_progress or len(items) <= args.batch_size)
    for kept, pictures in chunks(True):
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
        bar.update(min(args.batch_size, len(items) - bar.n))
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
