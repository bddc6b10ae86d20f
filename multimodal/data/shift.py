"""Acquisition shift: what another clinic's camera and colour pipeline do to a picture.

Each shift is a named, seeded, per-image change; a shifted copy of a test split
(scripts/shift_testset.py) measures how much of a model's accuracy survives another
camera. Parameters are drawn per image from the ranges below, so one copy holds a spread
of devices, not one fixed filter.

    contrast       contrast stretch about the mean, factor in [0.6, 1.5]
    saturation     saturation scaled by [0.5, 1.6] (0 would be grey)
    white_balance  per-channel gains in [0.8, 1.2] (a colour cast; mean brightness kept)
    gamma          gamma in [0.7, 1.5] on [0, 1] intensities
    squash         the whole picture resized to a square (a 4:3 camera frame squashed, as
                   pipelines that ignore the aspect ratio do)
    jpeg           re-encoded as JPEG at quality 15-40 (block artefacts, colour bleeding)
"""

from __future__ import annotations


import numpy as np
from PIL import Image, ImageEnhance

from multimodal.data.augment import apply_gains, reencode_jpeg, squash_square
from multimodal.errors import ConfigError

RANGES = {"contrast": (0.6, 1.5), "saturation": (0.5, 1.6), "white_balance": (0.8, 1.2),
          "gamma": (0.7, 1.5), "jpeg": (15, 40)}
SHIFTS = ("contrast", "saturation", "white_balance", "gamma", "squash", "jpeg")


def parse_shifts(names) -> list[str]:
    """Shift names, in the fixed order they are applied (pixels, then geometry, then JPEG)."""
    names = [n.strip() for n in (names.split(",") if isinstance(names, str) else names)
             if n.strip()]
    unknown = sorted(set(names) - set(SHIFTS))
    if unknown or not names:
        raise ConfigError(f"unknown shift(s) {unknown or names}; known: {', '.join(SHIFTS)}")
    return [s for s in SHIFTS if s in names]


def _uniform(rng, name):
    low, high = RANGES[name]
    return float(rng.uniform(low, high))


def shift_image(image: Image.Image, shifts, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """One picture through the named shifts; returns it and the parameters drawn."""
    image, drawn = image.convert("RGB"), {}
    for name in parse_shifts(shifts):
        if name == "contrast":
            drawn[name] = _uniform(rng, name)
            image = ImageEnhance.Contrast(image).enhance(drawn[name])
        elif name == "saturation":
            drawn[name] = _uniform(rng, name)
            image = ImageEnhance.Color(image).enhance(drawn[name])
        elif name == "white_balance":
            gains = rng.uniform(*RANGES[name], size=3)
            gains = gains / gains.mean()  # a cast, not a brightness change
            drawn[name] = [round(float(g), 4) for g in gains]
            image = Image.fromarray(apply_gains(np.asarray(image), gains))
        elif name == "gamma":
            drawn[name] = _uniform(rng, name)
            pixels = (np.asarray(image, np.float32) / 255.0) ** drawn[name]
            image = Image.fromarray((pixels * 255.0).round().astype(np.uint8))
        elif name == "squash":
            drawn[name] = list(image.size)
            image = Image.fromarray(squash_square(np.asarray(image)))
        elif name == "jpeg":
            drawn[name] = int(round(_uniform(rng, name)))
            image = Image.fromarray(reencode_jpeg(np.asarray(image), drawn[name]))
    return image, drawn


def write_shifted_copy(table, image_ids, out: str, shifts, seed: int = 0,
                       progress: bool = True, final: str | None = None) -> str:
    """The rows `image_ids` of `table`, each picture shifted, as a dataset any config can
    read: `out/images/<id>.png` (lossless: only the `jpeg` shift adds artefacts),
    `out/labels.csv` (label, group, raw metadata) and `out/shifts.csv` (the parameters each
    picture drew). Returns the path of `out/dataset.yaml`, a `csv`-source config (`final`:
    the folder the copy will be renamed to, which its paths name; default `out`)."""
    import json
    import os

    import pandas as pd
    import yaml
    from tqdm import tqdm

    shifts = parse_shifts(shifts)
    rows = table.frame.set_index("image_id").loc[list(image_ids)].reset_index()
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    drawn = []
    # one generator per image (seed, row): a picture's shift does not depend on the others
    for i, row in enumerate(tqdm(rows.itertuples(), total=len(rows), unit="img",
                                 desc="shifting", disable=not progress)):
        rng = np.random.default_rng([seed, i])
        with Image.open(row.image_path) as image:
            shifted, params = shift_image(image, shifts, rng)
        shifted.save(os.path.join(out, "images", f"{row.image_id}.png"))
        drawn.append({"image_id": row.image_id, **{k: json.dumps(v) for k, v in params.items()}})
    meta = list(table.metadata)
    labels = rows[["image_id", "label", "group_id", *meta]].assign(
        image=[f"images/{i}.png" for i in rows["image_id"]])
    labels.to_csv(os.path.join(out, "labels.csv"), index=False)
    pd.DataFrame(drawn).to_csv(os.path.join(out, "shifts.csv"), index=False)
    config = {"name": f"{table.name}_shifted",
              "data": {"source": "csv", "options": {
                  "csv": os.path.abspath(os.path.join(final or out, "labels.csv")),
                  "image_column": "image",
                  "label_column": "label", "group_column": "group_id", "id_column": "image_id",
                  "metadata": {k: str(v) for k, v in table.metadata.items()},
                  "classes": list(table.classes), "name": f"{table.name}_shifted"}}}
    path = os.path.join(out, "dataset.yaml")
    with open(path + ".tmp", "w") as f:  # renamed when complete: a reader never sees half
        f.write("# A shifted copy written by scripts/shift_testset.py (multimodal/data/shift.py):\n"
                f"# {len(rows)} rows of {table.name}, shifts {','.join(shifts)}, seed {seed}\n")
        yaml.safe_dump(config, f, sort_keys=False)
    os.replace(path + ".tmp", path)
    return os.path.join(final or out, "dataset.yaml")


def shifted_copy_of_run(run_dir: str, out: str, shifts, seed: int = 0, split: str = "test",
                        progress: bool = True, reuse: bool = False,
                        final: str | None = None) -> tuple[str, int, bool]:
    """Write the shifted copy of a run's `split` rows (read from its split.csv, so never any
    other rows) into `out`. Returns the path of its dataset.yaml, the number of rows and
    whether an existing copy was reused (`reuse`: only one of exactly these rows, made in
    `out` itself; any other is written again). `final`: where `out` will be renamed to."""
    import os

    import pandas as pd
    import yaml

    from multimodal.config import load_run_config
    from multimodal.data.inputs import split_table

    if seed < 0:
        raise ConfigError(f"shift seed {seed}: must be 0 or more")
    split_path = os.path.join(run_dir, "split.csv")
    if not os.path.exists(split_path):
        raise ConfigError(f"{run_dir} has no split.csv: not a run directory from train.py",
                          "an ensemble: shift the test split of one of its member runs")
    cfg = load_run_config(run_dir)
    if cfg.task != "classification":
        raise ConfigError(f"{run_dir} is a {cfg.task} run: shifted copies carry no masks, so "
                          "only classification runs are evaluated on them")
    table, frame, column, _ = split_table(cfg, split_path, save=False)
    rows = frame[frame[column].astype(str) == split]["image_id"]
    if rows.empty:
        raise ConfigError(f"{split_path} has no {split!r} rows; its values: "
                          f"{sorted(frame[column].astype(str).unique())}")
    path = os.path.join(out, "dataset.yaml")
    labels = os.path.abspath(os.path.join(out, "labels.csv"))
    if reuse and os.path.exists(path) and os.path.exists(labels):
        with open(path) as f:
            written_for = yaml.safe_load(f)["data"]["options"]["csv"]
        ids = pd.read_csv(labels, usecols=["image_id"], dtype=str)["image_id"]
        if written_for == labels and sorted(ids) == sorted(rows.astype(str)):
            return path, len(rows), True
    path = write_shifted_copy(table, rows, out, shifts, seed, progress=progress, final=final)
    return path, len(rows), False
