"""Download the Fitzpatrick17k images listed in fitzpatrick17k.csv.

    python scripts/download_fitzpatrick17k.py --csv fitzpatrick17k.csv --out data/fitzpatrick17k/images

Retries transient errors with backoff, resumes (existing files are skipped),
and writes the rows that failed to download_failures.csv beside the images.
The images belong to their source atlases: check their terms before use.
"""

from __future__ import annotations

import argparse
import csv
import sys

from multimodal.data.sources.download import download_all
from multimodal.errors import cli


@cli
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", required=True, help="fitzpatrick17k.csv (md5hash, url columns)")
    parser.add_argument("--out", required=True, help="folder for the images")
    parser.add_argument("--workers", type=int, default=8, help="parallel downloads")
    parser.add_argument("--retries", type=int, default=3, help="attempts per image")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument("--limit", type=int, help="only the first N rows (trial runs)")
    args = parser.parse_args(argv)
    with open(args.csv, newline="") as f:
        rows = [(r["md5hash"], r["url"].strip()) for r in csv.DictReader(f)]
    rows = rows[: args.limit] if args.limit else rows
    result = download_all(rows, args.out, args.workers, args.retries, args.timeout)
    print(f"downloaded {result['done']}, already present {result['skipped']}, "
          f"failed {result['failed']} (see {result['report']})")
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
