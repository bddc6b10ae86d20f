"""Prepare a dataset config as TFDS ArrayRecord splits (no TensorFlow needed).

    python scripts/prepare_data.py --config configs/ham10000.yaml --out data/prepared/ham10000

Loads and checks the table, makes (or reads) the grouped split, refuses a leaky
split, and writes one ArrayRecord split per part. A second run with the same
inputs does nothing and says so; other inputs are refused unless --overwrite.
"""

from __future__ import annotations

import argparse
import os
import sys

from multimodal.config import config_from_cli


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", required=True, help="folder for the prepared dataset")
    parser.add_argument("--encoding", choices=["jpeg", "png"], default="jpeg")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    cfg = config_from_cli(args.config, args.set)
    if cfg is None:
        return 2
    from multimodal.data import prepare
    from multimodal.data.build import load_table, resolve_split

    from multimodal.data import splits
    from multimodal.data.splits import content_hashes

    table = load_table(cfg.data)
    hashes = content_hashes(table.frame["image_path"])  # leak check and cache key share them
    split = resolve_split(table, cfg.data, hashes=hashes)
    try:
        manifest = prepare.prepare(table, split, args.out, cfg.data.image_size,
                                   encoding=args.encoding, overwrite=args.overwrite,
                                   hashes=hashes)
    except prepare.PreparedMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    splits.save_split(split, os.path.join(args.out, "split.csv"))  # after: --overwrite clears the folder
    if manifest["status"] == "unchanged":
        print(f"{args.out} is up to date (inputs sha256 {manifest['inputs_sha256'][:12]}): "
              "nothing to do")
    else:
        print(f"prepared {manifest['splits']} at {cfg.data.image_size} px -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
