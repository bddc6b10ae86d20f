"""How a picture of any shape becomes the square model input: one choice per config.

`data.geometry` names it, and every place an image becomes a model input applies the
same one (preparation, normaliser fitting, the training and evaluation pipeline,
SMOTE/ADASYN resampling, feature extraction, evaluation on another dataset):

- `crop` (default): resize so the short side is `image_size` (aspect ratio kept), then
  take a square: a random one in training, the central one otherwise. The parts
  outside the square along the long side are never seen at evaluation.
- `squash`: resize the whole picture to `image_size` x `image_size`; nothing is lost,
  shapes are stretched by the aspect ratio.
- `pad`: letterbox: resize so the long side is `image_size` (aspect ratio kept) and
  centre it on a black square; nothing is lost or stretched, part of the input is
  padding.

Prepared records hold the short-side-resized picture for `crop` (room for random crops)
and the final square for `squash` and `pad`; `fit` is idempotent on them. Random
position and scale for `squash` / `pad` come from augmentation ops (`translate`, `zoom`,
`random_resized_crop`).

Lesion masks (segmentation) take the same path with `resample=Image.NEAREST`, so they stay
binary, and the same random `crop` square when given a copy of the image's `rng`.

The geometry is part of the prepared-data inputs hash and of the feature-cache key, so a
change prepares and extracts anew. A dataset whose median aspect ratio differs from the
training data's by more than `ASPECT_TOLERANCE` gets one warning (`check_aspect`):
each geometry then shows the model something else than in training.
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image

from multimodal.errors import ConfigError

GEOMETRIES = ("crop", "squash", "pad")
ASPECT_TOLERANCE = 0.10  # relative difference of median width/height that warns
PAD_VALUE = 0  # letterbox fill (black), on the 0-255 scale before normalisation

_EFFECT = {
    "crop": "the centre crop keeps another part of each picture than in training",
    "squash": "pictures are stretched differently than in training",
    "pad": "the letterbox padding differs from training",
}


def check(geometry: str) -> str:
    if geometry not in GEOMETRIES:
        raise ConfigError(f"data.geometry: {geometry!r} is not one of {list(GEOMETRIES)}",
                          "set --set data.geometry=crop (or squash, pad)")
    return geometry


def _resize(image: Image.Image, size: tuple[int, int], resample=None) -> Image.Image:
    """`resample` None: bilinear up, Lanczos down (pictures); Image.NEAREST for masks."""
    if image.size == size:
        return image
    up = size[0] * size[1] > image.size[0] * image.size[1]
    if resample is None:
        resample = Image.BILINEAR if up else Image.LANCZOS
    return image.resize(size, resample)


def short_side(image: Image.Image, size: int, resample=None) -> Image.Image:
    """Resized so the short side is `size`, aspect ratio kept."""
    w, h = image.size
    scale = size / min(w, h)
    return _resize(image, (max(size, round(w * scale)), max(size, round(h * scale))), resample)


def letterbox(image: Image.Image, size: int, resample=None) -> Image.Image:
    """Resized so the long side is `size`, centred on a `PAD_VALUE` square of side `size`."""
    w, h = image.size
    if (w, h) == (size, size):
        return image
    scale = size / max(w, h)
    inner = (min(size, max(1, round(w * scale))), min(size, max(1, round(h * scale))))
    canvas = Image.new(image.mode, (size, size), (PAD_VALUE,) * len(image.getbands()))
    canvas.paste(_resize(image, inner, resample), ((size - inner[0]) // 2,
                                                   (size - inner[1]) // 2))
    return canvas


def for_storage(image: Image.Image, size: int, geometry: str, resample=None) -> Image.Image:
    """What a prepared record holds: the short-side resize (`crop`), else the final square."""
    if geometry == "crop":
        return short_side(image, size, resample)
    if geometry == "squash":
        return _resize(image, (size, size), resample)
    if geometry == "pad":
        return letterbox(image, size, resample)
    raise ValueError(check(geometry))


def crop(image: np.ndarray, size: int, rng: np.random.Generator | None,
         resample=None) -> np.ndarray:
    """Square crop of side `size`: random in training (rng given), central otherwise."""
    h, w = image.shape[:2]
    if min(h, w) < size:
        image = np.asarray(short_side(Image.fromarray(image), size, resample))
        h, w = image.shape[:2]
    if rng is not None:
        y, x = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
    else:
        y, x = (h - size) // 2, (w - size) // 2
    return image[y:y + size, x:x + size]


def fit(image: np.ndarray, size: int, geometry: str = "crop",
        rng: np.random.Generator | None = None, resample=None) -> np.ndarray:
    """uint8 HxWx3 (or a HxW mask) of any shape -> `size` x `size` by `geometry`; `rng`
    (training) only moves the `crop` square; `resample=Image.NEAREST` for masks."""
    if geometry == "crop":
        return crop(image, size, rng, resample)
    if image.shape[:2] == (size, size):
        return image
    if geometry == "squash":
        return np.asarray(_resize(Image.fromarray(image), (size, size), resample))
    if geometry == "pad":
        return np.asarray(letterbox(Image.fromarray(image), size, resample))
    raise ValueError(check(geometry))


def to_source(box, size: int, source_size: tuple[int, int], geometry: str) -> tuple:
    """A box (x0, y0, x1, y1) in the `size` square the model saw (the central `crop` square,
    as at evaluation) -> the same region in the source picture of `source_size` (w, h),
    clipped to it: the inverse of `fit` (lesion crops from predicted masks)."""
    w, h = source_size
    x0, y0, x1, y1 = (float(v) for v in box)
    if geometry == "squash":
        sx, sy, ox, oy = w / size, h / size, 0.0, 0.0
    elif geometry == "crop":
        scale = size / min(w, h)
        rw, rh = max(size, round(w * scale)), max(size, round(h * scale))
        sx, sy = w / rw, h / rh
        ox, oy = (rw - size) // 2 * sx, (rh - size) // 2 * sy
    elif geometry == "pad":
        scale = size / max(w, h)
        iw, ih = min(size, max(1, round(w * scale))), min(size, max(1, round(h * scale)))
        sx, sy = w / iw, h / ih
        ox, oy = -((size - iw) // 2) * sx, -((size - ih) // 2) * sy
    else:
        raise ValueError(check(geometry))
    return (max(0.0, x0 * sx + ox), max(0.0, y0 * sy + oy), min(float(w), x1 * sx + ox),
            min(float(h), y1 * sy + oy))


def aspect_ratios(paths) -> np.ndarray:
    """width / height of each image file from its header (nothing is decoded); NaN for a
    file that cannot be read."""
    out = []
    for path in paths:
        try:
            with Image.open(path) as im:
                out.append(im.size[0] / im.size[1])
        except (OSError, ValueError, ZeroDivisionError):
            out.append(np.nan)
    return np.asarray(out, np.float64)


def median_aspect(paths) -> float | None:
    ratios = aspect_ratios(paths)
    ratios = ratios[np.isfinite(ratios)]
    return float(np.median(ratios)) if len(ratios) else None


def check_aspect(train_ratio: float | None, ratio: float | None, geometry: str, what: str,
                 tolerance: float = ASPECT_TOLERANCE) -> bool:
    """Warn (one line) when `ratio` differs from `train_ratio` by more than `tolerance`
    (relative, either way); return whether it warned."""
    if not train_ratio or not ratio:
        return False
    differ = max(ratio, train_ratio) / min(ratio, train_ratio) - 1
    if differ <= tolerance:
        return False
    warnings.warn(
        f"{what}: median aspect ratio (width/height) {ratio:.2f} differs by {differ:.0%} from "
        f"the training data's {train_ratio:.2f}; with data.geometry={geometry} "
        f"{_EFFECT[geometry]}, so expect a shift in accuracy", stacklevel=2)
    return True
