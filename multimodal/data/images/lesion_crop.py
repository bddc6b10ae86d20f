"""Lesion crops: each picture cut to a square around its predicted lesion, for
segmentation-aware classification (scripts/crop_lesions.py writes a copy of a dataset whose
images are these crops; a classification config then reads that copy).

The box comes from a mask predicted at the segmentation run's input square
(`data.image_size`, `data.geometry`), mapped back onto the source picture
(`geometry.to_source`), widened by `margin` of its long side on each side and made square
(centred on the lesion, shifted inside the picture, never larger than the picture). An
empty prediction keeps the whole picture.
"""

from __future__ import annotations

import os

import numpy as np

from multimodal.data.images import geometry as geometry_lib
from multimodal.data.images.dicom import open_image


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), end exclusive, of a binary HxW mask's foreground; None if empty."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def lesion_box(mask: np.ndarray, source_size: tuple[int, int], geometry: str,
               margin: float = 0.1) -> tuple[int, int, int, int]:
    """The square crop box (source pixels) around a mask predicted at the model's square."""
    w, h = source_size
    box = mask_box(mask)
    if box is None:
        return 0, 0, w, h
    x0, y0, x1, y1 = geometry_lib.to_source(box, mask.shape[0], source_size, geometry)
    side = min(max(x1 - x0, y1 - y0) * (1 + 2 * margin), w, h)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(round(min(max(cx - side / 2, 0), w - side)))
    top = int(round(min(max(cy - side / 2, 0), h - side)))
    side = int(round(side))
    return left, top, min(w, left + side), min(h, top + side)


def write_crop(source_path: str, target_path: str, box, quality: int = 95) -> None:
    with open_image(source_path) as im:
        crop = im.convert("RGB").crop(tuple(box))
    os.makedirs(os.path.dirname(target_path), exist_ok=True)
    crop.save(target_path, quality=quality)
