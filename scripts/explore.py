"""Explore a dataset: class, age, sex, localization, Fitzpatrick and group plots + summary.md.

    python scripts/explore.py --config configs/ham10000_sample.yaml --out runs/explore
    python scripts/explore.py --config configs/ham10000.yaml --out runs/explore_ham
"""

from __future__ import annotations

import argparse
import sys

from multimodal.config import load_config
from multimodal.data.split.build import load_table
from multimodal.data.explore import explore
from multimodal.errors import cli


@cli
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/ham10000_sample.yaml", help="YAML config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (repeatable)")
    parser.add_argument("--on-missing", choices=["error", "drop"],
                        help="unusable rows: stop (error) or drop them with a warning")
    parser.add_argument("--out", default="runs/explore", help="output folder")
    args = parser.parse_args(argv)
    overrides = list(args.set) + ([f"data.on_missing={args.on_missing}"] if args.on_missing else [])
    cfg = load_config(args.config, overrides)
    table = load_table(cfg.data)
    print(explore(table, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
