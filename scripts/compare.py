"""Compare two evaluations of the same rows: each metric's difference with a paired
lesion-bootstrap 95% interval.

    python scripts/compare.py runs/ham_img/eval runs/ham/eval --names image image+meta
    python scripts/compare.py runs/ham/eval runs/ham/eval_shifted --names original shifted

Rows are matched by image id (a shifted copy from scripts/shift_testset.py keeps them); the
same bootstrap resample of groups scores both sides, so the interval is the paired one.
"""

from __future__ import annotations

import argparse
import json
import sys

from multimodal.errors import ConfigError, cli


@cli
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="evaluation folder (or its predictions.csv): the reference")
    parser.add_argument("b", help="evaluation folder (or predictions.csv) compared against a")
    parser.add_argument("--names", nargs=2, default=["a", "b"], metavar=("A", "B"))
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples of groups")
    parser.add_argument("--out", help="also write the comparison as JSON here")
    args = parser.parse_args(argv)
    if args.bootstrap < 10:
        raise ConfigError(f"--bootstrap {args.bootstrap}: an interval needs at least 10 "
                          "resamples", "use the default 1000")
    from multimodal.evaluation.compare import compare, comparison_markdown, read_predictions

    result = compare(read_predictions(args.a), read_predictions(args.b), args.bootstrap)
    print(f"{result['rows']} shared rows ({result['rows_only_in_a']} only in {args.names[0]}, "
          f"{result['rows_only_in_b']} only in {args.names[1]})")
    print(comparison_markdown(result, *args.names))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({**result, "names": args.names, "a": args.a, "b": args.b}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
