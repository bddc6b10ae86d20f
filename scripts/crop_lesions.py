"""Cut every image of a HAM10000-format dataset to its lesion, as a segmentation run
predicts it: a copy of the dataset for lesion-cropped classification.

    python scripts/crop_lesions.py --segmenter runs/ham_unet --config configs/ham10000.yaml \
        --out runs/ham_lesion_crops [--margin 0.1]
    python scripts/train.py --config configs/ham10000_lesion_crop.yaml --modality image \
        --set data.split_file=runs/ham_unet/split.csv --workdir runs/ham_crop_image

Writes OUT/images/<image_id>.jpg (a square around the predicted lesion, `--margin` of its
long side added on each side; the whole picture when nothing is predicted), a copy of the
metadata CSV, and OUT/crops.csv (each box, the predicted lesion's area, whether it was
empty). Use the segmentation run's split.csv for the classifier: its training images were
the U-Net's too (their masks are in-sample), its test images were not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

from multimodal.errors import ConfigError, RunError, cli


@cli
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segmenter", required=True, help="a segmentation run directory")
    parser.add_argument("--config", required=True, help="the dataset config to crop (ham10000)")
    parser.add_argument("--out", required=True, help="folder of the cropped copy")
    parser.add_argument("--margin", type=float, default=0.1,
                        help="added on each side, as a share of the lesion box's long side")
    parser.add_argument("--tta", action="store_true", help="masks from the four flips")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of --config (repeatable)")
    args = parser.parse_args(argv)
    if not 0 <= args.margin <= 2:
        raise ConfigError(f"--margin {args.margin}: must be in [0, 2]")
    if not os.path.isdir(args.segmenter):
        raise RunError(f"no run directory {args.segmenter}")
    from multimodal.config import load_config
    from multimodal import tasks
    from multimodal.run.files import load_run_config

    if tasks.get(load_run_config(args.segmenter).task).output != "masks":
        raise RunError(f"{args.segmenter} is not a segmentation run (its config.yaml task)",
                       "train one: python scripts/train.py --config configs/ham10000_unet.yaml")
    cfg = load_config(args.config, args.set)
    if cfg.data.source != "ham10000":
        raise ConfigError(f"--config: crops are written in the HAM10000 layout; "
                          f"{cfg.data.source or 'merged data.sources'} is not supported yet")
    from multimodal.data.split.build import dataset_folders
    from multimodal.outputs import check_output, staged_output

    protected = {args.segmenter: "segmentation run", **dataset_folders(cfg.data)}
    check_output(args.out, "crop_lesions", protected=protected, replace_with=None)
    from multimodal.run import external_inputs, load_run, predict_split_masks

    run = load_run(args.segmenter)
    inputs = external_inputs(run, args.config, overrides=args.set)
    frame, masks = predict_split_masks(run, inputs, "test", tta=args.tta)
    with staged_output(args.out, "crop_lesions", protected=protected,
                       replace_with=None) as out:
        rows = write_crops(run, frame, masks, inputs, cfg, args, out)
    print(f"{len(rows)} lesion crops ({sum(r['empty_prediction'] for r in rows)} whole pictures: "
          f"nothing predicted) -> {args.out}")
    return 0


def write_crops(run, frame, masks, inputs, cfg, args, out: str) -> list[dict]:
    import pandas as pd
    from tqdm import tqdm

    from multimodal.data.images.dicom import image_size
    from multimodal.data.images.lesion_crop import lesion_box, write_crop

    paths = inputs.table_frame.set_index("image_id")["image_path"]
    rows = []
    for i, image_id in enumerate(tqdm(frame["image_id"], desc="cropping", unit="img",
                                      disable=not sys.stderr.isatty())):
        source = paths[image_id]
        size = image_size(source)
        mask = masks["pred"][i]
        box = lesion_box(mask, size, run.cfg.data.geometry, args.margin)
        write_crop(source, os.path.join(out, "images", f"{image_id}.jpg"), box)
        rows.append({"image_id": image_id, "x0": box[0], "y0": box[1], "x1": box[2],
                     "y1": box[3], "lesion_area": float(mask.mean()),
                     "empty_prediction": not mask.any()})
    table_file = os.path.join(cfg.data.options["root"],
                              cfg.data.options.get("metadata_csv", "HAM10000_metadata.csv"))
    shutil.copy(table_file, os.path.join(out, os.path.basename(table_file)))
    pd.DataFrame(rows).to_csv(os.path.join(out, "crops.csv"), index=False)
    with open(os.path.join(out, "crops.json"), "w") as f:
        json.dump({"segmenter": os.path.abspath(args.segmenter), "step": run.step,
                   "config": args.config, "overrides": args.set, "margin": args.margin,
                   "tta": args.tta, "images": len(rows),
                   "empty_predictions": sum(r["empty_prediction"] for r in rows)}, f, indent=1)
    return rows


if __name__ == "__main__":
    sys.exit(main())
