"""Synthetic datasets in a real dataset's file format, for pipelines whose images are not
obtainable here (Fitzpatrick17k: the annotation CSV is public, the images sit on the source
atlases' servers).

The pictures are drawn, not photographed: a skin-toned background by Fitzpatrick type and
a lesion whose colour, size and texture depend on the class, with noise. A model learns
them above chance, which checks a pipeline end to end; the numbers say nothing about the
real dataset.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os

import numpy as np
from PIL import Image, ImageDraw

# Fitzpatrick I..VI skin tones (RGB), light to dark
SKIN = [(247, 224, 205), (234, 198, 165), (213, 167, 128), (180, 128, 90), (128, 86, 58),
        (80, 54, 38)]
NINE = ("inflammatory", "malignant epidermal", "genodermatoses", "benign dermal",
        "benign epidermal", "malignant melanoma", "benign melanocyte",
        "malignant cutaneous lymphoma", "malignant dermal")
THREE = {"inflammatory": "non-neoplastic", "genodermatoses": "non-neoplastic",
         "benign dermal": "benign", "benign epidermal": "benign", "benign melanocyte": "benign"}
FITZPATRICK_HEADER = ["md5hash", "fitzpatrick_scale", "fitzpatrick_centaur", "label",
                      "nine_partition_label", "three_partition_label", "qc", "url",
                      "url_alphanum"]


def _lesion_image(rng, skin: int, cls: int, n_classes: int, size: int) -> Image.Image:
    base = np.array(SKIN[skin], np.float64)
    pixels = base + rng.normal(0, 10, (size, size, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    hue = cls / n_classes
    colour = tuple(int(255 * (0.35 + 0.3 * np.sin(2 * np.pi * (hue + k / 3)))) for k in range(3))
    radius = size * (0.12 + 0.22 * ((cls * 7) % 11) / 10) * rng.uniform(0.85, 1.15)
    cx, cy = size / 2 + rng.normal(0, size * 0.08, 2)
    aspect = 1.0 + 0.6 * ((cls * 3) % 5) / 4
    draw.ellipse([cx - radius * aspect, cy - radius / aspect, cx + radius * aspect,
                  cy + radius / aspect], fill=colour)
    stripes = (cls * 5) % 4  # texture: 0-3 darker rings
    for k in range(stripes):
        r = radius * (0.3 + 0.2 * k)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=tuple(c // 2 for c in colour),
                     width=max(1, size // 48))
    out = np.asarray(image, np.float64) + rng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def write_fitzpatrick17k(out_dir: str, counts=None, n_classes: int = 114, per_class: int = 30,
                         size: int = 64, seed: int = 0, unknown_type: float = 0.03) -> str:
    """Write `out_dir/fitzpatrick17k.csv` (the real file's columns) and
    `out_dir/images/<md5hash>.jpg`; return the CSV path.

    `counts`: {class name: images} (e.g. the real CSV's, scaled down by
    `fitzpatrick17k_counts`), else `n_classes` classes `condition 000`... of `per_class`
    images. Fitzpatrick types are drawn with the real file's frequencies (-1, unknown, for
    `unknown_type` of the images).
    """
    counts = dict(counts) if counts else {f"condition {i:03d}": per_class
                                          for i in range(n_classes)}
    rng = np.random.default_rng(seed)
    images = os.path.join(out_dir, "images")
    os.makedirs(images, exist_ok=True)
    types = np.array([2947, 4808, 3308, 2781, 1533, 635], np.float64)  # the real I..VI counts
    rows = []
    for cls, (name, n) in enumerate(sorted(counts.items())):
        nine = NINE[cls % len(NINE)]
        three = THREE.get(nine, "malignant")
        for _ in range(int(n)):
            skin = int(rng.choice(6, p=types / types.sum()))
            image = _lesion_image(rng, skin, cls, len(counts), size)
            buf = io.BytesIO()
            image.save(buf, format="JPEG", quality=90)
            data = buf.getvalue()
            digest = hashlib.md5(data).hexdigest()
            with open(os.path.join(images, f"{digest}.jpg"), "wb") as f:
                f.write(data)
            scale = -1 if rng.random() < unknown_type else skin + 1
            centaur = scale if rng.random() < 0.5 else int(np.clip(skin + 1 + rng.integers(-1, 2),
                                                                   1, 6))
            rows.append([digest, scale, centaur, name, nine, three, "",
                         f"synthetic://{digest}.jpg", f"synthetic{digest}jpg.jpg"])
    path = os.path.join(out_dir, "fitzpatrick17k.csv")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(FITZPATRICK_HEADER)
        writer.writerows(rows)
    return path


def fitzpatrick17k_counts(csv_path: str, scale: float = 1.0, minimum: int = 1) -> dict | None:
    """{class: images} of the real CSV times `scale` (at least `minimum`), or None when the
    file is not there."""
    if not os.path.exists(csv_path):
        return None
    counts: dict[str, int] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            label = row["label"].strip()
            counts[label] = counts.get(label, 0) + 1
    return {k: max(minimum, round(v * scale)) for k, v in counts.items()}
