"""Write a shifted copy of a run's test split: the same rows as another camera would see them.

    python scripts/shift_testset.py --run runs/ham --out runs/ham_shifted
    python scripts/evaluate.py --checkpoint runs/ham --data runs/ham_shifted/dataset.yaml
    python scripts/evaluate.py --checkpoint runs/ham --shifted       # both in one command
    python scripts/shift_testset.py --run runs/ham --out runs/ham_blur3 --shifts blur --severity 3

Shifts (--shifts, comma-separated; default all), each drawn per image from a fixed range
with --seed (multimodal/data/images/shift.py documents the ranges):
  contrast, saturation, white_balance, gamma, squash (4:3 -> square), jpeg (quality 15-40)

--severity 1-5 applies each named shift at that one level instead (a corruption benchmark,
benchmarks/quality/shift_severity.py; the levels, from MedMNIST-C / ImageNet-C where they exist,
are tabled in multimodal/data/images/shift.py). With a severity there are more families: blur,
vignette, black_corners, low_res, noise, levels, contrast, saturation, white_balance, gamma,
squash, jpeg (default: all of them at once).

The copy keeps every row's label, lesion (group) and metadata, so evaluate.py reports the
same metrics and lesion-bootstrap intervals as on the original split. It never leaves the
run's own test rows: the rows are read from the run's split.csv.
"""

from __future__ import annotations

import argparse
import sys

from multimodal.errors import cli


@cli
def main(argv=None) -> int:
    from multimodal.data.images.shift import FAMILIES, SHIFTS

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a run directory from train.py")
    parser.add_argument("--out", required=True,
                        help="folder for the shifted copy: new or empty, outside the dataset")
    parser.add_argument("--shifts", default="all",
                        help=f"comma-separated, from: {', '.join(SHIFTS)}; with --severity "
                             f"also {', '.join(f for f in FAMILIES if f not in SHIFTS)} "
                             "(default: all)")
    parser.add_argument("--severity", metavar="1-5",
                        help="each shift at this level (1 mildest, 5 strongest) instead of "
                             "drawn from its range")
    parser.add_argument("--seed", type=int, default=0, help="draws of the per-image shifts")
    parser.add_argument("--split", default="test", help="which split's rows (default test)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    from multimodal.data.images.shift import parse_severity, parse_shifts
    from multimodal.run.shifted import shifted_copy_of_run

    from multimodal.run.files import load_run_config
    from multimodal.data.split.build import dataset_folders
    from multimodal.outputs import check_output, staged_output

    severity = parse_severity(args.severity)  # refuse a bad level or name before any work
    shifts = parse_shifts(args.shifts, severity)
    # never the run or the dataset: a copy written beside the originals would be read as them
    protected = {args.run: "run", **dataset_folders(load_run_config(args.run).data)}
    rule = dict(protected=protected, replace_with=None)  # a copy is made once: no --overwrite
    check_output(args.out, "shift_testset", **rule)
    with staged_output(args.out, "shift_testset", **rule) as tmp:
        path, rows, _ = shifted_copy_of_run(args.run, tmp, shifts, args.seed, args.split,
                                            progress=not args.no_progress, final=args.out,
                                            severity=severity)
    level = f", severity {severity}" if severity else ""
    print(f"{rows} shifted images ({','.join(shifts)}{level}) -> {args.out}\n"
          f"evaluate: python scripts/evaluate.py --checkpoint {args.run} --data {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
