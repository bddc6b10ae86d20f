"""Tiny synthetic datasets in each supported format, made per test in tmp_path."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = os.environ.get("MULTIMODAL_DATA",
                             os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))


def write_image(path, seed=0, size=(16, 12), color=None):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    if color is not None:
        pixels[:] = color
    Image.fromarray(pixels).save(path)
    return path


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


HAM_HEADER = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


def ham_rows(n_lesions=70, seed=0):
    """Lesions with 1-3 images each, every class present, some missing metadata."""
    rng = np.random.default_rng(seed)
    rows, k = [], 0
    for lesion in range(n_lesions):
        label = CLASSES[lesion % len(CLASSES)] if lesion < 35 else rng.choice(["nv", "nv", "mel"])
        for _ in range(int(rng.integers(1, 4))):
            age = "" if k % 17 == 0 else f"{float(rng.integers(5, 90))}"
            sex = ["male", "female", "unknown"][k % 3]
            loc = ["back", "face", "trunk", "unknown"][k % 4]
            rows.append([f"HAM_{lesion:07d}", f"ISIC_{k:07d}", label, "histo", age, sex, loc])
            k += 1
    return rows


@pytest.fixture
def ham_dir(tmp_path):
    """A HAM10000-format folder: metadata CSV + `images/` of 16x12 JPEGs."""
    root = tmp_path / "ham"
    (root / "images").mkdir(parents=True)
    rows = ham_rows()
    for i, row in enumerate(rows):
        write_image(root / "images" / f"{row[1]}.jpg", seed=i)
    write_csv(root / "HAM10000_metadata.csv", HAM_HEADER, rows)
    return root
