"""Build the bundled HAM10000 sample from a full copy (maintainers only).

    python scripts/make_sample.py --root ../shared/data/ham10000

Selects whole lesions per class at random (seeded) up to a per-class target,
keeps the two byte-identical image pairs (so the leak check has something real
to find), resizes images to 64 px on the short side and masks alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

import numpy as np
from PIL import Image

from multimodal.data.sample import SAMPLE_DIR
from multimodal.data.sources import ham10000
from multimodal.errors import cli

# Images per class: nv is capped and the rare classes get a floor, so every
# class has enough examples for grouped 5-fold splits.
TARGET = {"nv": 250, "mel": 50, "bkl": 50, "bcc": 40, "akiec": 40, "vasc": 35, "df": 35}
KEEP_LESIONS = ("HAM_0002300", "HAM_0001895")  # byte-identical image pairs
SHORT_SIDE = 64


@cli
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True, help="the full HAM10000 folder")
    parser.add_argument("--out", default=SAMPLE_DIR, help="where the sample goes")
    parser.add_argument("--seed", type=int, default=0, help="which lesions are drawn")
    args = parser.parse_args(argv)
    table = ham10000.load(args.root)
    frame = table.frame
    rng = np.random.default_rng(args.seed)
    chosen = set(KEEP_LESIONS)
    for label, target in TARGET.items():
        rows = frame[frame["label"] == label]
        count = int(rows["group_id"].isin(chosen).sum())
        for lesion in rng.permutation(rows["group_id"].unique()):
            if count >= target:
                break
            if lesion not in chosen:
                chosen.add(lesion)
                count += int((rows["group_id"] == lesion).sum())
    picked = frame[frame["group_id"].isin(chosen)]
    for sub in ("images", "masks"):
        shutil.rmtree(os.path.join(args.out, sub), ignore_errors=True)
        os.makedirs(os.path.join(args.out, sub))
    for image_id, path in zip(picked["image_id"], picked["image_path"]):
        with Image.open(path) as im:
            scale = SHORT_SIDE / min(im.size)
            size = (round(im.size[0] * scale), round(im.size[1] * scale))
            im.convert("RGB").resize(size, Image.LANCZOS).save(
                os.path.join(args.out, "images", image_id + ".jpg"), quality=90)
        mask = os.path.join(args.root, "masks", image_id + ".png")
        if os.path.exists(mask):
            with Image.open(mask) as m:
                m.resize(size, Image.NEAREST).save(os.path.join(args.out, "masks", image_id + ".png"))
    csv = os.path.join(args.root, "HAM10000_metadata.csv")
    with open(csv) as f:
        header, *lines = f.read().splitlines()
    ids = set(picked["image_id"])
    keep = [line for line in lines if line.split(",")[1] in ids]
    with open(os.path.join(args.out, "HAM10000_metadata.csv"), "w") as f:
        f.write("\n".join([header, *keep]) + "\n")
    print(f"{len(picked)} images of {len(chosen)} lesions -> {args.out}")
    print(picked["label"].value_counts().to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
