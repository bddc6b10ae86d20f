"""Acquisition shift: what another clinic's camera and colour pipeline do to a picture.

Each shift is a named, seeded, per-image change; a shifted copy of a test split
(scripts/shift_testset.py) measures how much of a model's accuracy survives another
camera. Without a severity, parameters are drawn per image from the ranges below, so one
copy holds a spread of devices, not one fixed filter:

    contrast       contrast stretch about the mean, factor in [0.6, 1.5]
    saturation     saturation scaled by [0.5, 1.6] (0 would be grey)
    white_balance  per-channel gains in [0.8, 1.2] (a colour cast; mean brightness kept)
    gamma          gamma in [0.7, 1.5] on [0, 1] intensities
    squash         the whole picture resized to a square (a 4:3 camera frame squashed, as
                   pipelines that ignore the aspect ratio do)
    jpeg           re-encoded as JPEG at quality 15-40 (block artefacts, colour bleeding)

A corruption benchmark with severities (`severity=1..5`, scripts/shift_testset.py
--severity, benchmarks/quality/shift_severity.py). Each family has one parameter per level, fixed
here before any model was evaluated on it (`SEVERITY`). Where the family exists in
MedMNIST-C (Di Salvo et al. 2024, its DermaMNIST levels: the dermatology ones) or
ImageNet-C (Hendrycks & Dietterich 2019), its levels are taken from there; the others are
ours. Only a direction is drawn per image (darker or brighter, which colour cast, the
noise itself), so a level means one strength. Sizes are given in a 224-pixel frame (the
frame of both benchmarks) and scaled to the picture's short side, so a level means the
same at any resolution the clinic's camera had.

    family         level 1 .. 5                       what                            source
    blur           disk radius 4, 5, 6, 7, 8 px;      defocus: disk kernel, then a    MedMNIST-C
                   alias sigma 0.1 .. 0.5             small Gaussian (224 frame)      defocus_blur
    vignette       corner gain 1 - 0.2, .35, .5,      darkening with the squared      ours
                   .65, .8                            distance from the centre
    black_corners  circle radius 1.10, 1.05, 1.00,    outside a centred circle        MedMNIST-C
                   0.95, 0.90 x half the short side   black (a dermatoscope's field)  black_corner*
    low_res        short side 0.7, .5, .4, .3, .25    down- then up-sampled (box),    MedMNIST-C
                   of min(short side, 224)            a low-resolution camera         pixelate
    noise          sigma 0.04, .08, .12, .18, .26     Gaussian sensor noise, grain    MedMNIST-C
                   of the [0, 1] range                of the 224 frame                gaussian_noise
    levels         0.5, 1, 2, 4, 8 % clipped at       auto-levels: the percentiles    ours
                   each end (all channels at once)    stretched to 0-255, clipped
    contrast       factor 0.8, .7, .6, .5, .4         contrast towards the mean grey  MedMNIST-C
                                                                                      contrast_down
    saturation     factor 1.2, 1.35, 1.5, 1.75, 2     or its inverse (drawn): 0.5-2x  ours**
                                                      at level 5
    white_balance  cast 0.1, .2, .3, .45, .6          gains 1 + cast * a unit cast    ours
                                                      direction drawn (mean kept)
    gamma          gamma 1.3, 1.4, 1.6, 1.8, 2.0      or its inverse (drawn): darker  MedMNIST-C
                                                      or brighter tone curve          gamma_corr_up***
    squash         long side x 0.92, .85, .75, .65,   the picture squashed along its  ours
                   0.55                               long side (0.75: 4:3 -> square)
    jpeg           quality 30, 20, 15, 10, 7          re-encoded as JPEG              MedMNIST-C
                                                                                      jpeg_compression

  * MedMNIST-C lists [1.10, 1.05, 1.00, 0.90, 0.95]; sorted here so the level is monotone.
 ** ImageNet-C's `saturate` levels (0.3, 0.1, 2, 5, 20) are not ordered by distance from 1.
*** MedMNIST-C's OrganAMNIST levels: its DermaMNIST has no gamma family.
 ImageNet-C's own levels, for reference: gaussian_noise sigma 0.08, .12, .18, .26, .38; jpeg
 quality 25, 18, 15, 10, 7; pixelate 0.6, .5, .4, .3, .25; contrast 0.4, .3, .2, .1, .05
 (MedMNIST-C's DermaMNIST levels are milder for noise and contrast, near them for the rest).
 Order of application: optics (blur, vignette, black corners), sensor (low resolution,
 noise), colour pipeline (levels, contrast, saturation, white balance, gamma), geometry
 (squash), then JPEG.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageEnhance

from multimodal.data.images.augment import apply_gains, reencode_jpeg, squash_square
from multimodal.data.images.dicom import open_image
from multimodal.errors import ConfigError

RANGES = {"contrast": (0.6, 1.5), "saturation": (0.5, 1.6), "white_balance": (0.8, 1.2),
          "gamma": (0.7, 1.5), "jpeg": (15, 40)}
SHIFTS = ("contrast", "saturation", "white_balance", "gamma", "squash", "jpeg")
SEVERITIES = (1, 2, 3, 4, 5)
SEVERITY = {  # family -> its parameter at levels 1..5 (the docstring's table)
    "blur": ((4, 0.1), (5, 0.2), (6, 0.3), (7, 0.4), (8, 0.5)),
    "vignette": (0.2, 0.35, 0.5, 0.65, 0.8),
    "black_corners": (1.10, 1.05, 1.00, 0.95, 0.90),
    "low_res": (0.7, 0.5, 0.4, 0.3, 0.25),
    "noise": (0.04, 0.08, 0.12, 0.18, 0.26),
    "levels": (0.5, 1.0, 2.0, 4.0, 8.0),
    "contrast": (0.8, 0.7, 0.6, 0.5, 0.4),
    "saturation": (1.2, 1.35, 1.5, 1.75, 2.0),
    "white_balance": (0.1, 0.2, 0.3, 0.45, 0.6),
    "gamma": (1.3, 1.4, 1.6, 1.8, 2.0),
    "squash": (0.92, 0.85, 0.75, 0.65, 0.55),
    "jpeg": (30, 20, 15, 10, 7),
}
FAMILIES = tuple(SEVERITY)  # also the order they are applied in
FRAME = 224  # the reference frame the sizes above are given in (ImageNet-C's, MedMNIST-C's)


def parse_severity(value) -> int | None:
    """A severity level 1..5 (an int or its text), or None (the ranges of `RANGES`)."""
    if value is None:
        return None
    text = str(value).strip()
    if not text.isdigit() or int(text) not in SEVERITIES:
        raise ConfigError(f"severity {value!r}: must be an integer 1-5 (1 mildest, 5 "
                          "strongest; multimodal/data/images/shift.py SEVERITY lists each level)",
                          "pass --severity 1, 2, 3, 4 or 5")
    return int(text)


def parse_shifts(names, severity: int | None = None) -> list[str]:
    """Shift names, in the fixed order they are applied (pixels, then geometry, then JPEG).
    `all` is every shift there is: `SHIFTS` without a severity, `FAMILIES` with one."""
    known = FAMILIES if severity is not None else SHIFTS
    if names == "all":
        return list(known)
    names = [n.strip() for n in (names.split(",") if isinstance(names, str) else names)
             if n.strip()]
    unknown = sorted(set(names) - set(known))
    if unknown or not names:
        only_severed = sorted(set(unknown) & set(FAMILIES))
        raise ConfigError(f"unknown shift(s) {unknown or names}"
                          + (" without a severity" if only_severed else "")
                          + f"; known: {', '.join(known)}",
                          f"{', '.join(only_severed)}: add --severity 1-5" if only_severed
                          else None)
    return [s for s in FAMILIES if s in names]


def shift_tag(shifts, severity: int | None = None) -> str:
    """A folder name for the shifts: 'all' or their names joined by '+', then '-s<level>'."""
    shifts = list(shifts)
    every = shifts == list(FAMILIES if severity is not None else SHIFTS)
    return ("all" if every else "+".join(shifts)) + (f"-s{severity}" if severity else "")


def _uniform(rng, name):
    low, high = RANGES[name]
    return float(rng.uniform(low, high))


def shift_image(image: Image.Image, shifts, rng: np.random.Generator,
                severity: int | None = None) -> tuple[Image.Image, dict]:
    """One picture through the named shifts; returns it and the parameters drawn.
    `severity` 1..5: each family at that level (`SEVERITY`); None: `RANGES` drawn per image."""
    severity = parse_severity(severity)
    image, drawn = image.convert("RGB"), {}
    for name in parse_shifts(shifts, severity):
        if severity is None:
            image, drawn[name] = _ranged(image, name, rng)
        else:
            pixels, drawn[name] = _SEVERED[name](np.asarray(image), SEVERITY[name][severity - 1],
                                                 rng)
            image = Image.fromarray(pixels)
    return image, drawn


def _ranged(image: Image.Image, name: str, rng) -> tuple[Image.Image, object]:
    """One shift without a severity, its parameter drawn from `RANGES` (the original shifts;
    their draws and pixels are unchanged, so earlier copies stay comparable)."""
    if name == "contrast":
        drawn = _uniform(rng, name)
        return ImageEnhance.Contrast(image).enhance(drawn), drawn
    if name == "saturation":
        drawn = _uniform(rng, name)
        return ImageEnhance.Color(image).enhance(drawn), drawn
    if name == "white_balance":
        gains = rng.uniform(*RANGES[name], size=3)
        gains = gains / gains.mean()  # a cast, not a brightness change
        return (Image.fromarray(apply_gains(np.asarray(image), gains)),
                [round(float(g), 4) for g in gains])
    if name == "gamma":
        drawn = _uniform(rng, name)
        pixels = (np.asarray(image, np.float32) / 255.0) ** drawn
        return Image.fromarray((pixels * 255.0).round().astype(np.uint8)), drawn
    if name == "squash":
        return Image.fromarray(squash_square(np.asarray(image))), list(image.size)
    drawn = int(round(_uniform(rng, name)))  # jpeg
    return Image.fromarray(reencode_jpeg(np.asarray(image), drawn)), drawn


# -- the families at a severity: f(uint8 HxWx3, level's parameter, rng) -> (pixels, drawn) --
def _to_uint8(x) -> np.ndarray:
    return np.clip(np.asarray(x, np.float64), 0, 255).round().astype(np.uint8)


def _scale(x: np.ndarray) -> float:
    """Pixels of this picture per pixel of the 224 frame the levels are given in."""
    return min(x.shape[:2]) / FRAME


def _blur(x, level, rng):
    """Defocus: a disk kernel, then a small Gaussian (ImageNet-C's aliased disk)."""
    from scipy.ndimage import gaussian_filter
    from scipy.signal import fftconvolve

    radius, alias = level[0] * _scale(x), level[1] * _scale(x)
    r = int(math.ceil(radius))
    grid = np.arange(-r, r + 1)
    disk = ((grid[:, None] ** 2 + grid[None, :] ** 2) <= radius ** 2).astype(np.float64)
    disk /= disk.sum()
    padded = np.pad(x.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="reflect")
    out = np.stack([fftconvolve(padded[..., c], disk, mode="valid") for c in range(3)], -1)
    out = gaussian_filter(out, sigma=(alias, alias, 0), mode="reflect")
    return _to_uint8(out), {"radius_px": round(radius, 3), "alias_px": round(alias, 3)}


def _vignette(x, strength, rng):
    """Corners darker by `strength`, falling off with the squared distance from the centre."""
    h, w = x.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((yy + 0.5 - h / 2) ** 2 + (xx + 0.5 - w / 2) ** 2) / ((h / 2) ** 2 + (w / 2) ** 2)
    return _to_uint8(x * (1 - strength * r2)[..., None]), strength


def _black_corners(x, multiplier, rng):
    """Black outside a centred circle of `multiplier` x half the short side (MedMNIST-C)."""
    h, w = x.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    radius = multiplier * min(h, w) / 2
    outside = (yy + 0.5 - h / 2) ** 2 + (xx + 0.5 - w / 2) ** 2 > radius ** 2
    out = x.copy()
    out[outside] = 0
    return out, multiplier


def _low_res(x, fraction, rng):
    """Down- then up-sampled with box filters (ImageNet-C's pixelate) to a short side of
    `fraction` x min(short side, 224)."""
    h, w = x.shape[:2]
    short = min(h, w)
    factor = max(1, round(fraction * min(short, FRAME))) / short
    small = (max(1, round(w * factor)), max(1, round(h * factor)))
    image = Image.fromarray(x).resize(small, Image.BOX).resize((w, h), Image.BOX)
    return np.asarray(image), list(small)


def _noise(x, sigma, rng):
    """Gaussian noise of `sigma` (of the [0, 1] range) with the grain of the 224 frame, so the
    model's resize does not average it away on a large picture."""
    h, w = x.shape[:2]
    grain = max(1.0, _scale(x))
    coarse = rng.standard_normal((math.ceil(h / grain), math.ceil(w / grain), 3))
    rows = (np.arange(h) * coarse.shape[0]) // h
    cols = (np.arange(w) * coarse.shape[1]) // w
    return _to_uint8(x + 255.0 * sigma * coarse[rows][:, cols]), sigma


def _levels(x, percent, rng):
    """Auto-levels (auto-contrast): the picture's `percent` and 100 - `percent` percentiles,
    over all channels together (the colour balance kept), stretched to 0 and 255, what lies
    beyond them clipped."""
    low, high = np.percentile(x, [percent, 100 - percent])
    return _to_uint8((x - low) / max(high - low, 1.0) * 255.0), percent


def _contrast(x, factor, rng):
    return np.asarray(ImageEnhance.Contrast(Image.fromarray(x)).enhance(factor)), factor


def _direction(rng) -> int:
    """+1 or -1, drawn: a level is a distance from the original, either way."""
    return 1 if rng.random() < 0.5 else -1


def _saturation(x, factor, rng):
    factor = factor ** _direction(rng)
    return np.asarray(ImageEnhance.Color(Image.fromarray(x)).enhance(factor)), round(factor, 4)


def _white_balance(x, cast, rng):
    """Gains 1 + cast * (a direction drawn in the plane of casts: gains summing to 3, so the
    mean brightness is kept)."""
    angle = rng.uniform(0, 2 * np.pi)
    direction = np.cos(angle) * np.array([1.0, -1.0, 0.0]) + \
        np.sin(angle) * np.array([1.0, 1.0, -2.0]) / np.sqrt(3)
    gains = 1 + cast * direction
    return apply_gains(x, gains), [round(float(g), 4) for g in gains]


def _gamma(x, power, rng):
    power = power ** _direction(rng)
    return _to_uint8((x / 255.0) ** power * 255.0), round(power, 4)


def _squash(x, factor, rng):
    """The long side times `factor` (bilinear): lesions squashed as a pipeline that ignores
    the aspect ratio squashes them."""
    h, w = x.shape[:2]
    size = (max(1, round(w * factor)), h) if w >= h else (w, max(1, round(h * factor)))
    return np.asarray(Image.fromarray(x).resize(size, Image.BILINEAR)), list(size)


def _jpeg(x, quality, rng):
    return reencode_jpeg(x, quality), quality


_SEVERED = {"blur": _blur, "vignette": _vignette, "black_corners": _black_corners,
            "low_res": _low_res, "noise": _noise, "levels": _levels, "contrast": _contrast,
            "saturation": _saturation, "white_balance": _white_balance, "gamma": _gamma,
            "squash": _squash, "jpeg": _jpeg}
def write_shifted_copy(table, image_ids, out: str, shifts, seed: int = 0,
                       progress: bool = True, final: str | None = None,
                       severity: int | None = None) -> str:
    """The rows `image_ids` of `table`, each picture shifted, as a dataset any config can
    read: `out/images/<id>.png` (lossless: only the `jpeg` shift adds artefacts),
    `out/labels.csv` (label, group, raw metadata) and `out/shifts.csv` (the parameters each
    picture drew; with `severity`, its level too). Returns the path of `out/dataset.yaml`, a
    `csv`-source config (`final`: the folder the copy will be renamed to, which its paths
    name; default `out`)."""
    import json
    import os

    import pandas as pd
    import yaml
    from tqdm import tqdm

    severity = parse_severity(severity)
    shifts = parse_shifts(shifts, severity)
    rows = table.frame.set_index("image_id").loc[list(image_ids)].reset_index()
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    drawn = []
    # one generator per image (seed, row): a picture's shift does not depend on the others
    for i, row in enumerate(tqdm(rows.itertuples(), total=len(rows), unit="img",
                                 desc="shifting", disable=not progress)):
        rng = np.random.default_rng([seed, i])
        with open_image(row.image_path) as image:
            shifted, params = shift_image(image, shifts, rng, severity)
        shifted.save(os.path.join(out, "images", f"{row.image_id}.png"))
        drawn.append({"image_id": row.image_id, **({"severity": severity} if severity else {}),
                      **{k: json.dumps(v) for k, v in params.items()}})
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
        f.write("# A shifted copy written by scripts/shift_testset.py "
                "(multimodal/data/images/shift.py):\n"
                f"# {len(rows)} rows of {table.name}, shifts {','.join(shifts)}, seed {seed}"
                + (f", severity {severity}" if severity else "") + "\n")
        yaml.safe_dump(config, f, sort_keys=False)
    os.replace(path + ".tmp", path)
    return os.path.join(final or out, "dataset.yaml")
