"""Untrusted image bytes -> an 8-bit RGB picture, or a clear `ImageInputError`.

Checks, in order, before anything large is decoded: the byte size (`max_bytes`), that the
bytes are an image format Pillow knows (the header), the pixel count from the header
(`max_pixels`: decompression bombs), then a full decode (truncated or corrupt files).

Modes: 8-bit pictures (RGB, grayscale, palette, CMYK, with or without alpha) become RGB by
`Image.convert("RGB")`, exactly as preparation does for training images (alpha is dropped,
not composited). 16-bit and 32-bit integer or float pictures, which that conversion would
clip at 255, are scaled to 8 bits first (by their bit depth; floats by their range).
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import Image

from multimodal.errors import DataError

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000  # ~6300 x 6300; dermatoscopes give at most a few megapixels
ACCEPTED = "JPEG, PNG, TIFF, BMP or WebP"


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


class ImageInputError(DataError):
    """An uploaded or given image that cannot be used. `status` is the HTTP code for it."""

    def __init__(self, problem: str, status: int = 400, file: str | None = None,
                 hint: str | None = None):
        super().__init__(problem, file=file, hint=hint)
        self.status = status


def _to_8bit(im: Image.Image) -> Image.Image:
    if im.mode.startswith("I;16"):
        return Image.fromarray((np.asarray(im).astype(np.uint32) >> 8).astype(np.uint8))
    if im.mode in ("I", "F"):
        a = np.asarray(im).astype(np.float64)
        if im.mode == "I":
            top = 65535.0 if a.max(initial=0) > 255 else 255.0
            a = a / top * 255.0
        else:
            lo, hi = float(np.nanmin(a, initial=0)), float(np.nanmax(a, initial=0))
            a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        return Image.fromarray(np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8))
    return im


def load_image(data: bytes, name: str = "image", max_bytes: int = DEFAULT_MAX_BYTES,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode `data` (untrusted) to an RGB picture; `name` only labels messages."""
    if not data:
        raise ImageInputError("the file is empty (0 bytes)", 400, name)
    if len(data) > max_bytes:
        raise ImageInputError(f"the file is {mib(len(data))}, over the upload limit of "
                              f"{mib(max_bytes)}", 413, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageInputError("the image declares too many pixels (a decompression bomb?)",
                              413, name) from None
    except Exception:  # noqa: BLE001 - UnidentifiedImageError, plugin errors on garbage
        raise ImageInputError(f"not an image Pillow can read; upload a {ACCEPTED} file",
                              415, name) from None
    w, h = im.size
    if w < 1 or h < 1:
        raise ImageInputError(f"the image has no pixels ({w}x{h})", 400, name)
    if w * h > max_pixels:
        raise ImageInputError(f"the image has {w}x{h} = {w * h:,} pixels, over the limit of "
                              f"{max_pixels:,}", 413, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im.load()
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt: OSError, SyntaxError, ...
        raise ImageInputError(f"the image is truncated or corrupt ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:120]})", 400, name) from None
    try:
        return _to_8bit(im).convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageInputError(f"image mode {im.mode!r} cannot be converted to RGB ({exc})",
                              415, name) from None


def read_image_file(path: str, max_bytes: int = DEFAULT_MAX_BYTES,
                    max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """`load_image` of a local file (command line), naming the file in errors."""
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise ImageInputError(f"the file is {mib(size)}, over the upload limit of "
                                  f"{mib(max_bytes)}", 413, path)
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ImageInputError(f"cannot read the file ({exc.strerror or exc})", 400, path) \
            from None
    return load_image(data, path, max_bytes, max_pixels)
