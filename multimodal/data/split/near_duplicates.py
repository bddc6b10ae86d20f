"""Near-duplicate pictures in different groups: the split's perceptual leak check.

The byte hash (sha256, grouped.content_hashes) finds a file copied under two ids; it misses
the same picture re-encoded or resized, which is how one picture usually sits in two
collections (ISIC 2019 holds HAM10000's pictures; a clinic's export re-compresses). Beside
it, every picture gets a 256-bit perceptual hash (images/perceptual.py) and two pictures
within TOLERANCE bits are near-duplicates.

Which pairs are looked at (`data.near_duplicates`): `sources` (the default) pairs of
different sources, so a one-source table costs nothing and behaves as before; `all` any
two pictures of different groups (within one dataset too); `off` none. Pairs in the same
group are never a leak and are not reported.

What happens to a pair in different groups: a split made now keeps their groups on one
side (the groups are linked for splitting; group ids themselves are unchanged) and a
warning names the pairs; a split read from a file (data.split_file, a run's split.csv)
that puts the two in different parts is refused (LeakageError), as an identical image is.

Speed: the hash is computed once per image (threads; a JPEG is decoded at reduced scale)
and cached by the images' sha256 in `cache_dir` when given (the pipeline gives
<prepared store>/perceptual_hashes). Pairs are found by multi-index hashing, exactly: the
255 used bits are cut into TOLERANCE + 1 disjoint chunks, and two hashes within TOLERANCE
bits agree on at least one whole chunk (pigeonhole), so only pictures sharing a chunk
value are compared. On HAM10000 (10,015 pictures): benchmarks/results/near_duplicates_*.

Catches: the same picture resized (1/3 to 4x measured), re-encoded (JPEG quality 30+,
PNG), with small colour or brightness changes. Misses: crops beyond a few per cent, rotations,
flips, heavy edits (perceptual.py), and two photographs of one lesion taken apart (that is
what group ids are for).
"""

from __future__ import annotations

import hashlib
import os
import warnings

import numpy as np
import pandas as pd

from multimodal.data.images import perceptual
from multimodal.data.table import DatasetTable

TOLERANCE = 32  # bits of 256: near-duplicates (docs/datasets.md, "Merged sources")
SCOPES = ("sources", "all", "off")
PAIR_COLUMNS = ["image_id_a", "image_id_b", "bits", "source_a", "source_b"]
CACHE_VERSION = "phash256-v1"
_BLOCK = 256  # rows of a large bucket compared at once


class NearDuplicateWarning(UserWarning):
    pass


def in_scope(scope: str, table: DatasetTable) -> bool:
    """Whether the check has pairs to look at: `all`, or `sources` with two sources."""
    if scope not in SCOPES:
        raise ValueError(f"near_duplicates must be one of {SCOPES}, not {scope!r}")
    if scope == "off":
        return False
    return scope == "all" or table.frame["source"].nunique() > 1


def cached_phashes(paths, digests=None, cache_dir: str | None = None):
    """(hashes, ok) of the pictures (perceptual.phashes), read from `cache_dir` when the same
    pictures (by sha256, in order) were hashed before, else computed and stored there."""
    if not cache_dir or digests is None:
        return perceptual.phashes(list(paths))
    key = hashlib.sha256("\n".join([CACHE_VERSION, *digests]).encode()).hexdigest()
    path = os.path.join(cache_dir, f"{key[:32]}.npz")
    try:
        with np.load(path, allow_pickle=False) as data:
            hashes, ok = data["hashes"], data["ok"]
        if hashes.shape == (len(digests), perceptual.BYTES) and ok.shape == (len(digests),):
            return hashes, ok
    except (OSError, ValueError, KeyError):
        pass  # absent or damaged: hash again
    hashes, ok = perceptual.phashes(list(paths))
    try:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp.npz"
        np.savez(tmp, hashes=hashes, ok=ok)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache: a read-only store only costs the hashing next time
    return hashes, ok


def find_pairs(hashes: np.ndarray, ok: np.ndarray, groups, sources, scope: str = "sources",
               tolerance: int = TOLERANCE, stats: dict | None = None) -> np.ndarray:
    """Index pairs [k, 3] (i, j, bits), i < j, of pictures within `tolerance` bits in
    different groups (and, with scope `sources`, of different sources), each pair once.
    `stats` (a dict) gets `compared`: the hash distances computed (all pairs: n(n-1)/2)."""
    groups = pd.factorize(pd.Series(groups, dtype=str))[0]
    sources = pd.factorize(pd.Series(sources, dtype=str))[0]
    live = np.flatnonzero(ok)
    words = perceptual.words(hashes)
    bits = np.unpackbits(hashes[live], axis=1)[:, :perceptual.BITS - 1]
    bounds = np.linspace(0, bits.shape[1], tolerance + 2).astype(int)
    found, compared = {}, 0
    for a, b in zip(bounds[:-1], bounds[1:]):
        keys = bits[:, a:b].astype(np.int64) @ (1 << np.arange(b - a, dtype=np.int64))
        order = np.argsort(keys, kind="stable")  # ties keep index order: members ascend
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], len(order)]
        for s, e in zip(starts, ends):
            if e - s < 2:
                continue
            members = live[order[s:e]]
            if scope == "sources" and (sources[members] == sources[members[0]]).all():
                continue
            for r in range(0, len(members) - 1, _BLOCK):  # a large bucket by row blocks
                rows, cols = members[r:r + _BLOCK], members[r + 1:]
                dist = perceptual.distances(words[rows], words[cols])
                compared += dist.size
                close = (dist <= tolerance) & (rows[:, None] < cols[None, :])
                close &= groups[rows][:, None] != groups[cols][None, :]
                if scope == "sources":
                    close &= sources[rows][:, None] != sources[cols][None, :]
                for i, j in zip(*np.nonzero(close)):
                    found[(int(rows[i]), int(cols[j]))] = int(dist[i, j])
    if stats is not None:
        stats["compared"] = compared
    if not found:
        return np.zeros((0, 3), np.int64)
    return np.array([(i, j, d) for (i, j), d in sorted(found.items())], np.int64)


def near_pairs(table: DatasetTable, scope: str, digests=None,
               cache_dir: str | None = None) -> pd.DataFrame:
    """The table's near-duplicate pairs in different groups (PAIR_COLUMNS), nearest first."""
    frame = table.frame
    hashes, ok = cached_phashes(frame["image_path"].tolist(), digests, cache_dir)
    pairs = find_pairs(hashes, ok, frame["group_id"], frame["source"], scope)
    ids, src = frame["image_id"].to_numpy(), frame["source"].to_numpy()
    out = pd.DataFrame({"image_id_a": ids[pairs[:, 0]], "image_id_b": ids[pairs[:, 1]],
                        "bits": pairs[:, 2], "source_a": src[pairs[:, 0]],
                        "source_b": src[pairs[:, 1]]}, columns=PAIR_COLUMNS)
    return out.sort_values(["bits", "image_id_a", "image_id_b"], kind="stable",
                           ignore_index=True)


def describe(pairs: pd.DataFrame, limit: int = 3) -> str:
    """'a ~ b (k bits), ...' of the first pairs."""
    shown = [f"{r.image_id_a} ~ {r.image_id_b} ({r.bits} bits)"
             for r in pairs.head(limit).itertuples()]
    more = f" and {len(pairs) - limit} more" if len(pairs) > limit else ""
    return ", ".join(shown) + more


def linked_groups(frame: pd.DataFrame, pairs: pd.DataFrame) -> pd.Series:
    """Each row's group for splitting: groups joined by a near-duplicate pair (transitively)
    become one, named by its smallest group id."""
    groups = frame["group_id"].astype(str)
    if pairs is None or pairs.empty:
        return groups
    parent: dict = {}

    def root(g):
        while parent.get(g, g) != g:
            parent[g] = parent.get(parent[g], parent[g])
            g = parent[g]
        return g

    by_image = dict(zip(frame["image_id"], groups))
    for a, b in zip(pairs["image_id_a"], pairs["image_id_b"]):
        ra, rb = root(by_image[a]), root(by_image[b])
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return groups.map(root)


def warn_linked(pairs: pd.DataFrame, scope: str) -> None:
    where = "across sources" if scope == "sources" else "in different groups"
    warnings.warn(f"{len(pairs)} near-duplicate picture pair(s) {where} (perceptual hash "
                  f"within {TOLERANCE} bits), e.g. {describe(pairs)}: the new split keeps "
                  "each pair's groups on one side. If they are the same patient, give them "
                  "one group id; if not (a false match), --set data.near_duplicates=off",
                  NearDuplicateWarning, stacklevel=3)
