"""Saliency overlay PNGs: the model's input picture beside it with the integrated-gradient
map blended over it (inferno colours), enlarged for viewing."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def overlay_image(shown: np.ndarray, heat: np.ndarray, size: int = 256,
                  alpha: float = 0.55) -> Image.Image:
    """[input | input with heat map] side by side, each `size` pixels square."""
    from matplotlib import colormaps

    heat = np.asarray(heat, np.float64)
    top = np.percentile(heat, 99) if heat.size else 0.0
    norm = np.clip(heat / top, 0, 1) if top > 0 else np.zeros_like(heat)
    colours = (colormaps["inferno"](norm)[..., :3] * 255).astype(np.float32)
    blended = (1 - alpha) * shown.astype(np.float32) + alpha * colours
    left = Image.fromarray(shown.astype(np.uint8)).resize((size, size), Image.BILINEAR)
    right = Image.fromarray(blended.clip(0, 255).astype(np.uint8)).resize((size, size),
                                                                            Image.BILINEAR)
    canvas = Image.new("RGB", (2 * size + 8, size), (255, 255, 255))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (size + 8, 0))
    return canvas


def overlay_png(shown: np.ndarray, heat: np.ndarray, size: int = 256) -> bytes:
    buf = io.BytesIO()
    overlay_image(shown, heat, size).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
