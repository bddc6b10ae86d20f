"""The split's perceptual near-duplicate check on HAM10000: its cost, and what it finds.

    python -m benchmarks.speed.near_duplicates --data ../shared/data/ham10000

Times, on the whole dataset: the byte hashes (sha256, what the leak check always computed),
the perceptual hashes (multimodal/data/images/perceptual.py), reading them back from the
cache, and the pair search (multimodal/data/split/near_duplicates.py; multi-index buckets)
against an exact all-pairs peer, which must find the same pairs. Then what it finds:
pictures of different lesions (lesion_id groups) within the tolerance, with their rows, and
the distance distribution of same-lesion and different-lesion pairs. Last, how far copies
of sampled pictures drift when resized and re-encoded (what the tolerance must cover).
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time

import numpy as np
from PIL import Image

from benchmarks.common import write_result
from multimodal.data.images import perceptual
from multimodal.data.sources import ham10000
from multimodal.data.split import near_duplicates
from multimodal.data.split.grouped import content_hashes

VARIANTS = {  # name -> (scale, format, JPEG quality)
    "1/3 size, JPEG q75": (1 / 3, "JPEG", 75),
    "1/2 size, JPEG q60": (0.5, "JPEG", 60),
    "0.8 size, PNG": (0.8, "PNG", None),
    "same size, JPEG q30": (1.0, "JPEG", 30),
    "3x size, JPEG q90": (3.0, "JPEG", 90),
    "4x size, JPEG q95": (4.0, "JPEG", 95),
}
EDGES = (0, 8, 16, 24, 32, 40, 48)


def _timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def _variant(path: str, scale: float, fmt: str, quality) -> bytes:
    with Image.open(path) as im:
        im = im.convert("RGB")
        size = (max(8, round(im.width * scale)), max(8, round(im.height * scale)))
        im = im.resize(size, Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **({"quality": quality} if quality else {}))
    return buf.getvalue()


def all_pairs(hashes, groups, tolerance):
    """The exact peer: every pair's distance, in row blocks; (pairs of different groups
    within tolerance, counts of same-group and different-group pairs by distance)."""
    words = perceptual.words(hashes)
    groups = np.asarray(groups)
    same_hist = np.zeros(perceptual.BITS + 1, np.int64)
    diff_hist = np.zeros(perceptual.BITS + 1, np.int64)
    found = []
    for start in range(0, len(words), 256):
        dist = perceptual.distances(words[start:start + 256], words)
        rows = np.arange(start, min(start + 256, len(words)))
        upper = rows[:, None] < np.arange(len(words))[None, :]
        same = groups[rows][:, None] == groups[None, :]
        same_hist += np.bincount(dist[upper & same], minlength=perceptual.BITS + 1)
        diff_hist += np.bincount(dist[upper & ~same], minlength=perceptual.BITS + 1)
        for i, j in zip(*np.nonzero(upper & ~same & (dist <= tolerance))):
            found.append((int(rows[i]), int(j), int(dist[i, j])))
    return sorted(found), same_hist, diff_hist


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.join(
        os.environ.get("MULTIMODAL_DATA", os.path.join("..", "shared", "data")), "ham10000"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", type=int, default=300, help="pictures copied per variant")
    parser.add_argument("--name", default="near_duplicates_ham10000")
    args = parser.parse_args(argv)

    table = ham10000.load(args.data, verify="none")
    frame = table.frame
    paths = frame["image_path"].tolist()
    n = len(paths)
    tol = near_duplicates.TOLERANCE
    t_sha, digests = _timed(lambda: content_hashes(paths), args.repeats)
    t_phash, (hashes, ok) = _timed(lambda: perceptual.phashes(paths), args.repeats)
    with tempfile.TemporaryDirectory() as cache:
        near_duplicates.cached_phashes(paths, digests, cache)
        t_cached, _ = _timed(lambda: near_duplicates.cached_phashes(paths, digests, cache),
                             args.repeats)
    stats = {}
    t_search, pairs = _timed(lambda: near_duplicates.find_pairs(
        hashes, ok, frame["group_id"], frame["source"], "all", stats=stats), args.repeats)
    # two pseudo-sources (lesions alternately): the default scope of a merged table
    halves = frame["group_id"].rank(method="dense").astype(int) % 2
    t_sources, _ = _timed(lambda: near_duplicates.find_pairs(
        hashes, ok, frame["group_id"], halves, "sources"), args.repeats)
    t_peer, (peer, same_hist, diff_hist) = _timed(
        lambda: all_pairs(hashes, frame["group_id"], tol), 1)
    assert [tuple(p) for p in pairs.tolist()] == peer, "the bucketed search missed pairs"

    found = []
    for i, j, bits in pairs.tolist():
        rows = frame.iloc[[i, j]]
        found.append({"bits": bits, **{f"{k}_{s}": str(rows[k].iloc[m])
                                       for m, s in enumerate("ab")
                                       for k in ("image_id", "group_id", "label", "age", "sex",
                                                 "localization")}})
    rng = np.random.default_rng(0)
    sample = rng.choice(n, size=min(args.copies, n), replace=False)
    drift = {}
    for name, (scale, fmt, quality) in VARIANTS.items():
        d = [int(perceptual.distances(
            perceptual.words(perceptual.phash(_variant(paths[i], scale, fmt, quality))[None]),
            perceptual.words(hashes[i][None]))[0, 0]) for i in sample]
        drift[name] = {"median": float(np.median(d)), "p99": float(np.percentile(d, 99)),
                       "max": int(max(d)), "within": float(np.mean(np.array(d) <= tol))}

    cum = {f"<={e}": {"same_lesion": int(same_hist[:e + 1].sum()),
                      "different_lesions": int(diff_hist[:e + 1].sum())} for e in EDGES}
    data = {"images": n, "tolerance_bits": tol, "hash_bits": perceptual.BITS,
            "seconds": {"sha256": t_sha, "perceptual_hash": t_phash, "cached_read": t_cached,
                        "pair_search_all": t_search, "pair_search_two_sources": t_sources,
                        "all_pairs_peer": t_peer},
            "compared": stats["compared"], "all_pairs": n * (n - 1) // 2,
            "unreadable": int((~ok).sum()), "pairs_across_groups": found,
            "pairs_by_distance": cum, "same_lesion_pairs": int(same_hist.sum()),
            "copies": drift, "copies_per_variant": len(sample)}
    lines = [f"# Near-duplicate check on HAM10000: {n} pictures, 256-bit pHash, tolerance {tol} bits",
             "",
             "| step | seconds |", "| --- | ---: |",
             f"| sha256 of every file (the byte check, as before) | {t_sha:.2f} |",
             f"| perceptual hash of every picture (8 threads) | {t_phash:.2f} |",
             f"| the same, read back from the cache | {t_cached:.3f} |",
             f"| pair search, all groups (multi-index buckets; {stats['compared']:,} of "
             f"{n * (n - 1) // 2:,} distances) | {t_search:.2f} |",
             f"| pair search, two pseudo-sources (the default scope) | {t_sources:.2f} |",
             f"| peer: exact all-pairs distances (same pairs found) | {t_peer:.2f} |", "",
             f"## Pairs of different lesions within {tol} bits: {len(found)}", ""]
    if found:
        lines += ["| bits | a | b |", "| ---: | --- | --- |"]
        for f in found:
            lines.append(" | ".join([f"| {f['bits']}"] + [
                f"{f['image_id_' + s]} ({f['group_id_' + s]}, {f['label_' + s]}, "
                f"{f['age_' + s]} {f['sex_' + s]} {f['localization_' + s]})" for s in "ab"]) + " |")
    lines += ["", "## Pairs by perceptual distance (cumulative)", "",
              "| within bits | same lesion | different lesions |", "| ---: | ---: | ---: |"]
    lines += [f"| {k[2:]} | {v['same_lesion']} | {v['different_lesions']} |" for k, v in cum.items()]
    lines += ["", f"Same-lesion pairs in all: {int(same_hist.sum())}; different-lesion pairs: "
              f"{int(diff_hist.sum()):,}.", "",
              f"## Copies: {len(sample)} sampled pictures resized and re-encoded, distance to "
              "the original", "", f"| copy | median | p99 | max | within {tol} |",
              "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {k} | {v['median']:.0f} | {v['p99']:.0f} | {v['max']} | {100 * v['within']:.1f}% |"
              for k, v in drift.items()]
    print(write_result(args.name, "\n".join(lines), data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
