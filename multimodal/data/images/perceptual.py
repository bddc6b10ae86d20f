"""A perceptual hash of a picture: the same picture resized or re-encoded hashes alike.

`phash` is a 256-bit DCT hash (pHash): the picture in 8-bit gray, squashed to 64x64
(bilinear, antialiased; a JPEG is decoded at reduced scale first, which makes a large
file cheap), the 2-D DCT-II of that, its 16x16 lowest frequencies less the constant term
(255 coefficients), one bit per coefficient: above their median or not (the 256th bit is
always 0). The Hamming distance between two hashes (`distances`) says how alike the
pictures' coarse structure is; about half the bits differ between unrelated pictures.

Why 256 bits and DCT (measured on HAM10000, see docs/datasets.md, "Merged sources"):
dermoscopy pictures share a coarse layout (a dark lesion in the middle of bright skin), so
the common 64-bit hashes collide across different lesions (64-bit dHash: 136 pairs of
different HAM10000 lesions at distance 0; 64-bit pHash: 2 at 0, 327 within 4 bits), while
the 255 low-frequency DCT signs keep unrelated lesions more than 32 bits apart (one pair
within 32 bits among 50 million, which is the same lesion under two lesion ids). Copies
resized from 1/3 to 4x and re-encoded (JPEG quality 60 to 95, PNG) stay well within 32 bits;
heavy recompression (JPEG quality 30) reaches 32-34 bits, the edge
(benchmarks/results/near_duplicates_ham10000.md).

Not robust to (by design of such hashes): crops and re-framing beyond a few per cent,
rotations and flips, mirroring, strong colour edits that change the gray levels' layout,
overlays (text, rulers) covering much of the picture.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from multimodal.data.images.dicom import open_image

SIDE = 64  # the gray picture the DCT is taken of
LOW = 16  # LOW x LOW lowest frequencies (less the constant term) make the bits
BITS = LOW * LOW  # 255 used + 1 always-zero bit
BYTES = BITS // 8


@functools.cache
def _dct_matrix(n: int = SIDE, k: int = LOW) -> np.ndarray:
    """The first k rows of the orthonormal DCT-II matrix of size n."""
    rows = np.arange(k)[:, None]
    cols = np.arange(n)[None, :]
    basis = np.cos(np.pi * (2 * cols + 1) * rows / (2 * n)) * np.sqrt(2.0 / n)
    basis[0] /= np.sqrt(2.0)
    return basis.astype(np.float64)


def gray(source) -> np.ndarray:
    """A picture (path or bytes; DICOM too) as SIDE x SIDE float gray levels."""
    with open_image(source) as im:
        if im.format == "JPEG":
            im.draft("L", (SIDE, SIDE))  # decode at 1/2..1/8 scale, still >= SIDE
        small = im.convert("L").resize((SIDE, SIDE), Image.BILINEAR)
    return np.asarray(small, np.float64)


def phash_of(pixels: np.ndarray) -> np.ndarray:
    """The hash (BYTES uint8) of SIDE x SIDE gray levels."""
    basis = _dct_matrix()
    coefficients = (basis @ pixels @ basis.T).ravel()[1:]  # the constant term left out
    bits = np.append(coefficients > np.median(coefficients), False)
    return np.packbits(bits)


def phash(source) -> np.ndarray:
    """The perceptual hash (BYTES uint8) of a picture file or its bytes."""
    return phash_of(gray(source))


def phashes(paths, workers: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(hashes [n, BYTES] uint8, ok [n] bool): a picture that does not decode has ok False
    (and a zero hash); the image checks and preparation report such files."""
    def one(path):
        try:
            return phash(path)
        except Exception:  # noqa: BLE001 - unreadable files are reported elsewhere
            return None

    with ThreadPoolExecutor(workers) as pool:
        found = list(pool.map(one, paths))
    ok = np.array([h is not None for h in found], bool)
    out = np.zeros((len(found), BYTES), np.uint8)
    for i, h in enumerate(found):
        if h is not None:
            out[i] = h
    return out, ok


def words(hashes: np.ndarray) -> np.ndarray:
    """Hashes [n, BYTES] as [n, BYTES // 8] uint64 (for popcounts)."""
    return np.ascontiguousarray(hashes, np.uint8).view(np.uint64)


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between hash words a [n, w] and b [m, w]: [n, m] ints."""
    return np.bitwise_count(a[:, None, :] ^ b[None, :, :]).sum(-1, dtype=np.int32)
