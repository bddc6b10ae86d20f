"""Untrusted image bytes -> an 8-bit RGB picture, or a clear `ImageInputError`.

Checks, in order, before anything large is decoded: the byte size (`max_bytes`), that the
bytes are an image format Pillow knows (the header), the pixel count from the header
(`max_pixels`: decompression bombs), the aspect ratio (`max_aspect`: a 1x60000 strip would
become a 32x1,920,000 model record), then a full decode (truncated or corrupt files).
An upload (HTTP) and a local file (predict.py) have their own defaults; for a local file
each message names the predict.py option that raises the limit (`LOCAL_OPTIONS`), for an
upload it says how to shrink the image, the only fix a client has.

Modes: 8-bit pictures (RGB, grayscale, palette, CMYK, with or without alpha) become RGB by
`Image.convert("RGB")`, exactly as preparation does for training images (alpha is dropped,
not composited). 16-bit and 32-bit integer or float pictures, which that conversion would
clip at 255, are scaled to 8 bits first (by their bit depth; floats by their range).
DICOM (bytes with the `DICM` marker at 128) is read with pydicom as in training
(data/images/dicom.py: Modality LUT, window, MONOCHROME1 inverted, 8 bits); its Rows x Columns
go through the same pixel and aspect limits before its pixel data is decoded.
"""

from __future__ import annotations

import io
import math
import os
import warnings

import numpy as np
from PIL import Image

from multimodal.data.images import dicom
from multimodal.errors import ConfigError, DataError

DEFAULT_MAX_BYTES = 20 * 1024 * 1024  # an upload (serve.py --max-upload-mb)
DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024  # a local file: 40 MP as a 16-bit TIFF fits
DEFAULT_MAX_PIXELS = 40_000_000  # ~6300 x 6300; dermatoscopes give at most a few megapixels
DEFAULT_MAX_ASPECT = 10.0  # long side / short side; dermatoscopic images are about 4:3
LOCAL_OPTIONS = {"bytes": "--max-file-mb", "pixels": "--max-pixels", "aspect": "--max-aspect"}
ACCEPTED = "JPEG, PNG, TIFF, BMP, WebP or DICOM"


def add_limit_options(parser, size_option: str, size_default_mb: float, size_help: str) -> None:
    """The image limits as command-line options: the byte size (its own name and default: a
    local file in predict.py, an upload in serve.py), then pixels and aspect, shared."""
    parser.add_argument(size_option, type=float, default=size_default_mb,
                        help=f"{size_help}, in MiB (default {size_default_mb:g})")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="largest image in pixels (decompression bombs; default "
                             f"{DEFAULT_MAX_PIXELS // 1_000_000}M)")
    parser.add_argument("--max-aspect", type=float, default=DEFAULT_MAX_ASPECT,
                        help="largest ratio of an image's long to short side (default "
                             f"{DEFAULT_MAX_ASPECT:g})")


def check_limit_options(size_option: str, size_mb: float, max_pixels: int,
                        max_aspect: float) -> None:
    """Refuse limits that would refuse every image (or none), naming the options."""
    if not (size_mb > 0 and max_pixels > 0 and max_aspect >= 1):
        raise ConfigError(f"{size_option} {size_mb:g}, --max-pixels {max_pixels}, --max-aspect "
                          f"{max_aspect:g}: sizes must be positive and the aspect ratio at "
                          "least 1")


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


def _fix(shrink: str, options: dict | None, kind: str, needed) -> str:
    """The hint of a limit: shrink the image, or (a local file) raise the limit."""
    return f"{shrink}, or raise the limit with {options[kind]} {needed}" if options else shrink


def check_size(size: int, name: str, max_bytes: int, options: dict | None = None) -> None:
    if size > max_bytes:
        what = "file size limit" if options else "upload limit"
        raise ImageInputError(
            f"the file is {mib(size)}, over the {what} of {mib(max_bytes)}", 413, name,
            _fix("re-encode the image (e.g. as JPEG) or resize it", options, "bytes",
                 math.ceil(size / 2**20)))


def check_shape(w: int, h: int, name: str, max_pixels: int, max_aspect: float,
                options: dict | None = None) -> None:
    """Pixel count (decompression bombs) and aspect ratio, from the header's size."""
    if w < 1 or h < 1:
        raise ImageInputError(f"the image has no pixels ({w}x{h})", 400, name)
    if w * h > max_pixels:
        raise ImageInputError(
            f"the image has {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,}", 413,
            name, _fix(f"resize it to at most {max_pixels:,} pixels", options, "pixels", w * h))
    aspect = max(w, h) / min(w, h)
    if aspect > max_aspect:
        raise ImageInputError(
            f"the image is {w}x{h}, an aspect ratio of {aspect:,.1f}:1, over the limit of "
            f"{max_aspect:g}:1", 422, name,
            _fix("crop it to the lesion", options, "aspect", math.ceil(aspect)))


def load_image(data: bytes, name: str = "image", max_bytes: int = DEFAULT_MAX_BYTES,
               max_pixels: int = DEFAULT_MAX_PIXELS, max_aspect: float = DEFAULT_MAX_ASPECT,
               options: dict | None = None) -> Image.Image:
    """Decode `data` (untrusted) to an RGB picture; `name` only labels messages, `options`
    names the command-line option raising each limit (local files; None for uploads)."""
    if not data:
        raise ImageInputError("the file is empty (0 bytes)", 400, name)
    check_size(len(data), name, max_bytes, options)
    if dicom.is_dicom(data) or name.lower().endswith(dicom.DICOM_EXTENSIONS):
        return _load_dicom(data, name, max_pixels, max_aspect, options)
    try:  # Pillow's own bomb warning is left to `max_pixels`, which may be set above it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ImageInputError(f"the image declares more than {2 * Image.MAX_IMAGE_PIXELS:,} "
                              "pixels (a decompression bomb?)", 413, name,
                              f"resize it to at most {max_pixels:,} pixels") from None
    except Exception:  # noqa: BLE001 - UnidentifiedImageError, plugin errors on garbage
        raise ImageInputError(f"not an image Pillow can read; upload a {ACCEPTED} file",
                              415, name) from None
    check_shape(*im.size, name, max_pixels, max_aspect, options)
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


def _load_dicom(data: bytes, name: str, max_pixels: int, max_aspect: float,
                options: dict | None) -> Image.Image:
    """A DICOM file: header checks (one frame, a decoder), the size limits, then the pixels."""
    try:
        ds = dicom.read_dataset(data, name)
        check_shape(*dicom.check_header(ds, name), name, max_pixels, max_aspect, options)
        return Image.fromarray(dicom.to_uint8(ds, name)).convert("RGB")
    except dicom.DicomError as exc:
        raise ImageInputError(exc.problem, exc.status, name) from None


def header_metadata(source, vocab: dict) -> dict:
    """The metadata fields of `vocab` a DICOM file's header gives (age, sex, view: dicom.py),
    as text, each only when the model accepts its value (sex as its code M/F/O or its word
    male/female/other; another value is left out: masked). {} for other files."""
    from multimodal.serving.fields import parse_value

    if not dicom.is_dicom(source):
        return {}
    found = {}
    for field, value in dicom.header_metadata(source).items():
        if field in vocab and value is not None:
            texts = [f"{value:g}" if isinstance(value, float) else str(value)]
            if field == "sex" and value in dicom.SEX_WORDS:
                texts.append(dicom.SEX_WORDS[value])
            for text in texts:
                try:
                    parse_value(field, text, vocab[field])
                except DataError:
                    continue
                found[field] = text
                break
    return found


def read_image_file(path: str, max_bytes: int = DEFAULT_MAX_FILE_BYTES,
                    max_pixels: int = DEFAULT_MAX_PIXELS, max_aspect: float = DEFAULT_MAX_ASPECT,
                    options: dict | None = LOCAL_OPTIONS) -> Image.Image:
    """`load_image` of a local file (command line), naming the file in errors; its size is
    checked before it is read."""
    try:
        check_size(os.path.getsize(path), path, max_bytes, options)
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ImageInputError(f"cannot read the file ({exc.strerror or exc})", 400, path) \
            from None
    return load_image(data, path, max_bytes, max_pixels, max_aspect, options)
