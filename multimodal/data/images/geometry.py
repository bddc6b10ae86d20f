"""How a picture of any shape becomes the model input: one choice per config.

`data.image_size` is the input's side (a square) or `[height, width]` (a rectangle, e.g.
`[150, 200]`: HAM10000's 200x150 pictures at full resolution, nothing cropped or stretched).
`hw(size)` turns either into (height, width); below, "the input" is that rectangle.

`data.geometry` names it, and every place an image becomes a model input applies the
same one (preparation, normaliser fitting, the training and evaluation pipeline,
SMOTE/ADASYN resampling, feature extraction, evaluation on another dataset):

- `crop` (default): resize so the picture just covers the input (aspect ratio kept; for
  a square, the short side is `image_size`), then take an input-sized window: a random
  one in training, the central one otherwise. What lies outside the window is never seen
  at evaluation (nothing, when the picture has the input's aspect ratio).
- `squash`: resize the whole picture to the input; nothing is lost, shapes are
  stretched when the aspect ratios differ.
- `pad`: letterbox: resize so the picture just fits inside the input (aspect ratio kept)
  and centre it on black; nothing is lost or stretched, part of the input is padding.

Prepared records hold the covering resize for `crop` (room for random crops) and the
final input for `squash` and `pad`; `fit` is idempotent on them. Random
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

from multimodal.data.images.dicom import image_size
from multimodal.errors import ConfigError

GEOMETRIES = ("crop", "squash", "pad")
ASPECT_TOLERANCE = 0.10  # relative difference of median width/height that warns
PAD_VALUE = 0  # letterbox fill (black), on the 0-255 scale before normalisation

_EFFECT = {
    "crop": "the centre crop keeps another part of each picture than in training",
    "squash": "pictures are stretched differently than in training",
    "pad": "the letterbox padding differs from training",
}


def hw(size) -> tuple[int, int]:
    """`data.image_size` (an int: a square; [height, width]: a rectangle) -> (height, width)."""
    if isinstance(size, (list, tuple)):
        return int(size[0]), int(size[1])
    return int(size), int(size)


def describe(size) -> str:
    """'128 px square' or '150x200 px (height x width)', for reports and model cards."""
    h, w = hw(size)
    return f"{h} px square" if h == w else f"{h}x{w} px (height x width)"


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


def cover(image: Image.Image, size, resample=None) -> Image.Image:
    """Resized (aspect ratio kept) to the smallest picture that covers the input `size`;
    for a square input, the short side becomes `size`."""
    h, w = hw(size)
    iw, ih = image.size
    scale = max(w / iw, h / ih)
    return _resize(image, (max(w, round(iw * scale)), max(h, round(ih * scale))), resample)


def letterbox(image: Image.Image, size, resample=None) -> Image.Image:
    """Resized to fit inside the input `size` (aspect ratio kept), centred on `PAD_VALUE`."""
    h, w = hw(size)
    iw, ih = image.size
    if (iw, ih) == (w, h):
        return image
    scale = min(w / iw, h / ih)
    inner = (min(w, max(1, round(iw * scale))), min(h, max(1, round(ih * scale))))
    canvas = Image.new(image.mode, (w, h), (PAD_VALUE,) * len(image.getbands()))
    canvas.paste(_resize(image, inner, resample), ((w - inner[0]) // 2, (h - inner[1]) // 2))
    return canvas


def for_storage(image: Image.Image, size, geometry: str, resample=None) -> Image.Image:
    """What a prepared record holds: the covering resize (`crop`), else the final input."""
    if geometry == "crop":
        return cover(image, size, resample)
    if geometry == "squash":
        h, w = hw(size)
        return _resize(image, (w, h), resample)
    if geometry == "pad":
        return letterbox(image, size, resample)
    raise ValueError(check(geometry))


def crop(image: np.ndarray, size, rng: np.random.Generator | None,
         resample=None) -> np.ndarray:
    """An input-sized window: random in training (rng given), central otherwise. A picture
    smaller than the input along either side is first resized to cover it; a larger one
    is cut as it is (prepared records already hold the covering resize)."""
    th, tw = hw(size)
    h, w = image.shape[:2]
    if h < th or w < tw:
        image = np.asarray(cover(Image.fromarray(image), size, resample))
        h, w = image.shape[:2]
    if rng is not None:
        y, x = int(rng.integers(h - th + 1)), int(rng.integers(w - tw + 1))
    else:
        y, x = (h - th) // 2, (w - tw) // 2
    return image[y:y + th, x:x + tw]


def fit(image: np.ndarray, size, geometry: str = "crop",
        rng: np.random.Generator | None = None, resample=None) -> np.ndarray:
    """uint8 HxWx3 (or a HxW mask) of any shape -> the input `size` by `geometry`; `rng`
    (training) only moves the `crop` window; `resample=Image.NEAREST` for masks."""
    if geometry == "crop":
        return crop(image, size, rng, resample)
    th, tw = hw(size)
    if image.shape[:2] == (th, tw):
        return image
    if geometry == "squash":
        return np.asarray(_resize(Image.fromarray(image), (tw, th), resample))
    if geometry == "pad":
        return np.asarray(letterbox(Image.fromarray(image), size, resample))
    raise ValueError(check(geometry))


def to_source(box, size, source_size: tuple[int, int], geometry: str) -> tuple:
    """A box (x0, y0, x1, y1) in the input the model saw (the central `crop` window, as at
    evaluation) -> the same region in the source picture of `source_size` (w, h), clipped
    to it: the inverse of `fit` (lesion crops from predicted masks)."""
    th, tw = hw(size)
    w, h = source_size
    x0, y0, x1, y1 = (float(v) for v in box)
    if geometry == "squash":
        sx, sy, ox, oy = w / tw, h / th, 0.0, 0.0
    elif geometry == "crop":
        scale = max(tw / w, th / h)
        rw, rh = max(tw, round(w * scale)), max(th, round(h * scale))
        sx, sy = w / rw, h / rh
        ox, oy = (rw - tw) // 2 * sx, (rh - th) // 2 * sy
    elif geometry == "pad":
        scale = min(tw / w, th / h)
        iw, ih = min(tw, max(1, round(w * scale))), min(th, max(1, round(h * scale)))
        sx, sy = w / iw, h / ih
        ox, oy = -((tw - iw) // 2) * sx, -((th - ih) // 2) * sy
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
            w, h = image_size(path)  # DICOM too (dicom.py)
            out.append(w / h)
        except (OSError, ValueError, ZeroDivisionError):  # DataError is a ValueError
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
