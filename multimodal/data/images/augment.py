"""Named image operations on uint8 HxWx3 arrays, listed by name in a config.

Each op is `fn(image, rng, **options) -> image`. Ops marked `random` run only
in training (augmentation); the others (colour constancy, equalisation,
grayscale) are preprocessing and run at training and evaluation alike.
Randomness comes only from the `rng` passed in, so a pipeline seeded per
example is deterministic whatever the number of workers.

In a config an op is a name (`flip_h`) or a one-key mapping with options
(`{rotate: {degrees: 15}}`).

Segmentation: `apply_ops_with_mask` moves a lesion mask with its image. Ops marked
`geometric` (flips, rotations, zoom, translation, shear, crops) run on both, the mask with
the same random draws (a copy of the generator) and nearest-neighbour resampling (every
geometric op takes a keyword-only `resample`); colour ops and preprocessing touch the image
only.
"""

from __future__ import annotations

import copy
import dataclasses
import io
from typing import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageOps
from multimodal.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Op:
    fn: Callable
    random: bool
    geometric: bool = False  # moves pixels: applied to a segmentation mask too
    check: Callable | None = None  # check(**options): refuses bad option values at config time


OPS: dict[str, Op] = {}


def register(name: str, random: bool, geometric: bool = False, check: Callable | None = None):
    def wrap(fn):
        OPS[name] = Op(fn, random, geometric, check)
        return fn
    return wrap


def _pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(image)


# -- geometry -----------------------------------------------------------------
@register("flip_h", random=True, geometric=True)
def flip_h(image, rng, p=0.5, *, resample=None):
    return image[:, ::-1] if rng.random() < p else image


@register("flip_v", random=True, geometric=True)
def flip_v(image, rng, p=0.5, *, resample=None):
    return image[::-1] if rng.random() < p else image


@register("rotate90", random=True, geometric=True)
def rotate90(image, rng, *, resample=None):
    """Lossless quarter turns; dermoscopy has no canonical orientation."""
    return np.rot90(image, int(rng.integers(4)))


def _affine(image, angle=0.0, scale=1.0, translate=(0.0, 0.0), shear=0.0,
            resample=Image.BILINEAR):
    """Rotate/scale/shear about the centre and translate (fractions of size), reflect-free."""
    h, w = image.shape[:2]
    cx, cy = w / 2, h / 2
    a, sh = np.deg2rad(angle), np.deg2rad(shear)
    # forward matrix: rotation * shear * scale; PIL needs the inverse map (output -> input)
    forward = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ \
        np.array([[1, np.tan(sh)], [0, 1]]) * scale
    inv = np.linalg.inv(forward)
    tx, ty = translate[0] * w, translate[1] * h
    offset = np.array([cx, cy]) - inv @ np.array([cx + tx, cy + ty])
    coeffs = (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1])
    out = _pil(image).transform((w, h), Image.AFFINE, coeffs,
                                resample=Image.BILINEAR if resample is None else resample)
    return np.asarray(out)


@register("rotate", random=True, geometric=True)
def rotate(image, rng, degrees=20.0, *, resample=None):
    return _affine(image, angle=rng.uniform(-degrees, degrees), resample=resample)


@register("zoom", random=True, geometric=True)
def zoom(image, rng, scale=(0.9, 1.1), *, resample=None):
    return _affine(image, scale=rng.uniform(*scale), resample=resample)


@register("translate", random=True, geometric=True)
def translate(image, rng, fraction=0.1, *, resample=None):
    return _affine(image, translate=tuple(rng.uniform(-fraction, fraction, 2)), resample=resample)


@register("shear", random=True, geometric=True)
def shear(image, rng, degrees=10.0, *, resample=None):
    return _affine(image, shear=rng.uniform(-degrees, degrees), resample=resample)


@register("random_resized_crop", random=True, geometric=True)
def random_resized_crop(image, rng, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), *, resample=None):
    """Crop a random area fraction and aspect ratio, resized back to the input size."""
    h, w = image.shape[:2]
    for _ in range(10):
        area = rng.uniform(*scale) * h * w
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        cw, ch = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = int(rng.integers(w - cw + 1)), int(rng.integers(h - ch + 1))
            crop = _pil(image[y:y + ch, x:x + cw])
            return np.asarray(crop.resize((w, h), Image.BILINEAR if resample is None
                                          else resample))
    return image


@register("squash", random=True, geometric=True)
def squash(image, rng, p=0.5, *, resample=None):
    """With probability `p`, the whole picture resized to a square of its short side, so the
    crop that follows sees it all, stretched. Mixes the `crop` and `squash` geometries in
    training: pipelines elsewhere squash 4:3 camera frames, and a model that has only seen
    true aspect ratios pays for it (benchmarks/results/recipe_ham10000.md)."""
    return image if rng.random() >= p else squash_square(image, resample)


def squash_square(image: np.ndarray, resample=None) -> np.ndarray:
    """The whole picture resized to a square of its short side (also shift.py's `squash`)."""
    side = min(image.shape[:2])
    return np.asarray(_pil(image).resize((side, side), Image.BILINEAR if resample is None
                                         else resample))


# -- colour -------------------------------------------------------------------
def _enhance(kind, image, factor):
    return np.asarray(getattr(ImageEnhance, kind)(_pil(image)).enhance(factor))


@register("brightness", random=True)
def brightness(image, rng, amount=0.2, factors=None):
    """A factor from 1 +- `amount`, or from `factors` [low, high] when given (an asymmetric
    range, e.g. Keras's brightness_range [0.8, 1.1])."""
    low, high = factors if factors is not None else (1 - amount, 1 + amount)
    return _enhance("Brightness", image, rng.uniform(low, high))


@register("contrast", random=True)
def contrast(image, rng, amount=0.2):
    return _enhance("Contrast", image, rng.uniform(1 - amount, 1 + amount))


@register("saturation", random=True)
def saturation(image, rng, amount=0.2):
    return _enhance("Color", image, rng.uniform(1 - amount, 1 + amount))


@register("hue", random=True)
def hue(image, rng, amount=0.05):
    """Shift hue by up to `amount` of a full turn."""
    hsv = np.asarray(_pil(image).convert("HSV")).copy()
    shift = int(round(rng.uniform(-amount, amount) * 255))
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + shift) % 256
    return np.asarray(Image.fromarray(hsv, "HSV").convert("RGB"))


@register("color_jitter", random=True)
def color_jitter(image, rng, brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02):
    for name, amount in (("brightness", brightness), ("contrast", contrast),
                         ("saturation", saturation), ("hue", hue)):
        image = OPS[name].fn(image, rng, amount)
    return image


# -- acquisition: what another camera or colour pipeline does -----------------
@register("gamma", random=True)
def gamma(image, rng, powers=(0.8, 1.25)):
    """Intensities on [0, 1] raised to a power drawn log-uniformly from `powers` (tone curves
    differ between cameras)."""
    power = float(np.exp(rng.uniform(np.log(powers[0]), np.log(powers[1]))))
    return ((image / 255.0) ** power * 255.0).round().astype(np.uint8)


@register("white_balance", random=True)
def white_balance(image, rng, amount=0.1):
    """Per-channel gains from 1 +- `amount`, renormalised to mean 1: a colour cast that keeps
    the brightness (white balance differs between cameras and lamps)."""
    gains = rng.uniform(1 - amount, 1 + amount, size=3)
    return apply_gains(image, gains / gains.mean())


def apply_gains(image: np.ndarray, gains) -> np.ndarray:
    """Per-channel gains on a uint8 picture (also shift.py's `white_balance`)."""
    return np.clip(image * np.asarray(gains), 0, 255).round().astype(np.uint8)


@register("jpeg", random=True)
def jpeg(image, rng, quality=(20, 95), p=0.5):
    """With probability `p`, re-encoded as JPEG at a quality drawn from `quality` (block
    artefacts and colour bleeding of compressed uploads)."""
    if rng.random() >= p:
        return image
    return reencode_jpeg(image, int(rng.integers(quality[0], quality[1] + 1)))


def reencode_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """The picture through JPEG at `quality` and back (also shift.py's `jpeg`)."""
    buffer = io.BytesIO()
    _pil(image).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


# -- preprocessing (deterministic) --------------------------------------------
@register("shades_of_gray", random=False)
def shades_of_gray(image, rng=None, p=6):
    """Colour constancy (Finlayson & Trezzi): scale channels so their p-norm is equal.

    p=6 is what ISIC 2017-2019 winners used against camera and lighting shifts;
    p=1 is gray-world.
    """
    x = image.astype(np.float64)
    norm = np.power(np.mean(np.power(x, p), axis=(0, 1)), 1 / p)
    gain = norm.mean() / np.maximum(norm, 1e-6)
    return np.clip(x * gain, 0, 255).astype(np.uint8)


@register("gray_world", random=False)
def gray_world(image, rng=None):
    return shades_of_gray(image, rng, p=1)


@register("equalize", random=False)
def equalize(image, rng=None):
    """Global histogram equalisation, channel by channel (X-rays are grey: all equal)."""
    return np.asarray(ImageOps.equalize(_pil(image)))


@register("clahe", random=False)
def clahe(image, rng=None, clip_limit=0.01, tiles=8):
    """Contrast-limited adaptive equalisation on luminance (scikit-image)."""
    from skimage import exposure

    grey = np.asarray(_pil(image).convert("L"))
    kernel = max(8, min(grey.shape) // tiles)
    out = exposure.equalize_adapthist(grey, kernel_size=kernel, clip_limit=clip_limit)
    out = (out * 255).round().astype(np.uint8)
    return np.repeat(out[..., None], 3, axis=2)


@register("grayscale", random=False)
def grayscale(image, rng=None):
    """Grey to 3 identical channels, so RGB backbones accept X-rays."""
    grey = np.asarray(_pil(image).convert("L"))
    return np.repeat(grey[..., None], 3, axis=2)


# -- config -------------------------------------------------------------------
def parse_ops(spec) -> list[tuple[str, dict]]:
    """Config list -> [(name, options)], checking names and option names now."""
    ops = []
    for item in spec or []:
        if isinstance(item, str):
            name, options = item, {}
        elif isinstance(item, tuple) and len(item) == 2:  # already parsed
            name, options = item[0], dict(item[1])
        elif isinstance(item, dict) and len(item) == 1:
            name, options = next(iter(item.items()))
            options = dict(options or {})
        else:
            raise ConfigError(f"data.augment entry {item!r}: expected a name or {{name: options}}")
        if name not in OPS:
            raise ConfigError(f"data.augment: unknown augmentation {name!r}; known: {sorted(OPS)}")
        code = OPS[name].fn.__code__
        allowed = code.co_varnames[2:code.co_argcount]
        unknown = set(options) - set(allowed)
        if unknown:
            raise ConfigError(f"data.augment {name!r}: unknown option(s) {sorted(unknown)}; "
                             f"allowed: {list(allowed)}")
        if OPS[name].check is not None:
            OPS[name].check(**options)
        ops.append((name, options))
    return ops


def apply_ops(image: np.ndarray, ops, rng, train: bool) -> np.ndarray:
    """Apply preprocessing ops always and random ops only when `train`."""
    for name, options in ops:
        op = OPS[name]
        if op.random and not train:
            continue
        image = op.fn(image, rng, **options)
    return np.ascontiguousarray(image)


def apply_ops_with_mask(image: np.ndarray, mask: np.ndarray, ops, rng,
                        train: bool) -> tuple[np.ndarray, np.ndarray]:
    """`apply_ops` on an image and its HxW mask: geometric ops move both alike (the mask
    with a copy of `rng` and nearest-neighbour resampling, so it stays binary); colour and
    preprocessing ops change the image only."""
    for name, options in ops:
        op = OPS[name]
        if op.random and not train:
            continue
        if op.geometric:
            replay = copy.deepcopy(rng)  # the same draws for the mask
            image = op.fn(image, rng, **options)
            mask = op.fn(mask, replay, **options, resample=Image.NEAREST)
        else:
            image = op.fn(image, rng, **options)
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)


# the corruption benchmark's families as a training op (registers "corrupt"; imported last:
# it builds on this module and on shift.py, which imports this one)
from multimodal.data.images import corrupt as _corrupt  # noqa: E402,F401
