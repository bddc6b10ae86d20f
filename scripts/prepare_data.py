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
import tempfile

from multimodal.config import config_from_cli
from multimodal.data.images.geometry import describe
from multimodal.data.split.grouped import SPLIT_FILE
from multimodal.errors import cli

# what this tool writes in its folder (the output marker lists these as its own)
OWN_ENTRIES = ("prepared.json", "prepared", "downloads", SPLIT_FILE)


@cli
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (repeatable)")
    parser.add_argument("--out", required=True, help="folder for the prepared dataset")
    parser.add_argument("--encoding", choices=["jpeg", "png"], default="jpeg",
                        help="how images are stored in the records")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a folder prepared from other inputs")
    args = parser.parse_args(argv)
    cfg = config_from_cli(args.config, args.set)
    from multimodal.data.records import prepare
    from multimodal.data.split import grouped
    from multimodal.data.pipeline.inputs import split_table

    from multimodal.data.split.build import dataset_folders
    from multimodal.outputs import check_output, record_entries

    # its own earlier output is updated in place (prepare keeps or, with --overwrite, replaces
    # it by its inputs' digest); never the dataset or a folder of other files
    check_output(args.out, "prepare_data", overwrite=True, protected=dataset_folders(cfg.data),
                 legacy=OWN_ENTRIES)
    with tempfile.TemporaryDirectory() as scratch:  # a new split unless data.split_file
        table, split, column, hashes = split_table(cfg, os.path.join(scratch, SPLIT_FILE))
    manifest = prepare.prepare(table, split, args.out, cfg.data.image_size, column=column,
                               encoding=args.encoding, overwrite=args.overwrite,
                               hashes=hashes, on_missing=cfg.data.on_missing,
                               geometry=cfg.data.geometry)
    grouped.save_split(split, os.path.join(args.out, SPLIT_FILE))  # after: --overwrite clears the folder
    record_entries(args.out, "prepare_data", OWN_ENTRIES)
    if manifest["status"] == "unchanged":
        print(f"{args.out} is up to date (inputs sha256 {manifest['inputs_sha256'][:12]}): "
              "nothing to do")
    else:
        print(f"prepared {manifest['splits']} at {describe(cfg.data.image_size)} "
              f"({cfg.data.geometry}) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
