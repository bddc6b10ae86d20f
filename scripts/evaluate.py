"""Evaluate a trained run or an ensemble directory; write metrics, plots and a report.
A segmentation run (its config's `task`) gets Dice/IoU, overlays and its own report
(multimodal/evaluation/segmentation.py).

    python scripts/evaluate.py --checkpoint runs/sample --out runs/sample/eval
    python scripts/evaluate.py --checkpoint runs/ham --data configs/isic2018_test.yaml --tta
    python scripts/evaluate.py --checkpoint runs/stack --data configs/isic2018_test.yaml \
        --set data.options.root=/data/isic2018     # ensembles too (stacking, late fusion)
    python scripts/evaluate.py --checkpoint runs/ham --shifted     # as another camera sees it

--data scores every row of another dataset; temperature scaling and the operating point
are still fitted on the model's own validation rows (an ensemble's: see its manifest).
--split val reports on the rows those are fitted on: the report and metrics.json say so
("calibration_on_same_rows": true).
--shifted writes (once; reused after) a shifted copy of the run's test rows into
<checkpoint>/shifted/<shifts>-seed<N> (scripts/shift_testset.py: contrast, saturation,
white balance, gamma, 4:3 squashed to square, JPEG; each drawn per image) and evaluates on
it into <checkpoint>/eval_shifted_<shifts>-seed<N> (`all` for every shift; one folder per
choice, so one never overwrites another); `scripts/compare.py <checkpoint>/eval
<checkpoint>/eval_shifted_all-seed0` gives the paired drop.

Writes metrics.json, predictions.csv, confusion/ROC/reliability PNGs, saliency
overlays of the most confident errors, report.md and a self-contained report.html.
"""

from __future__ import annotations

import argparse
import os
import sys

from multimodal.errors import ConfigError, RunError, cli

# what an evaluation folder held before evaluations left the output marker
EVAL_ENTRIES = ("metrics.json", "*.json", "*.csv", "*.png", "*.md", "*.html", "saliency*",
               "overlays*")


@cli
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="a run directory from train.py, or an ensemble (manifest.json)")
    parser.add_argument("--data", help="evaluate on another dataset config (all its rows)")
    parser.add_argument("--split", default="test",
                        help="split of the run's own data: test (default), val or train")
    parser.add_argument("--tta", action="store_true",
                        help="average over the four flips (evaluation takes about 4x as long)")
    parser.add_argument("--out", help="output folder (default <checkpoint>/eval)")
    parser.add_argument("--bootstrap", type=int, default=1000,
                        help="group (lesion/patient) resamples for the 95%% intervals")
    parser.add_argument("--operating-class", default="mel",
                        help="class whose threshold is chosen on validation (default mel)")
    parser.add_argument("--target-sensitivity", type=float, default=0.9,
                        help="sensitivity the operating threshold aims for on validation")
    parser.add_argument("--saliency", type=int, default=6, help="errors to explain (0: none)")
    parser.add_argument("--shifted", nargs="?", const="all", metavar="SHIFTS",
                        help="evaluate on a shifted copy of the run's test rows: all shifts, "
                             "or a comma-separated subset (see scripts/shift_testset.py)")
    parser.add_argument("--shift-seed", type=int, default=None,
                        help="draws of the per-image shifts (with --shifted)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of the --data config, e.g. "
                             "data.options.root=/path/to/isic2018 (repeatable)")
    args = parser.parse_args(argv)
    if args.set and not args.data:
        raise ConfigError("--set overrides the --data config; there is none",
                          "add --data configs/isic2018_test.yaml (or drop --set)")
    if args.shifted and (args.data or args.split != "test"):
        raise ConfigError("--shifted evaluates a shifted copy of the run's own test rows; it "
                          "takes no --data or --split", "drop --data/--split, or --shifted")
    if args.shift_seed is not None and not args.shifted:
        raise ConfigError("--shift-seed draws the shifts of --shifted; there is no --shifted",
                          "add --shifted (all shifts) or drop --shift-seed")
    if not os.path.isdir(args.checkpoint):
        raise RunError(f"no run directory {args.checkpoint}",
                       "pass a folder written by scripts/train.py --workdir or an ensemble script")
    if args.bootstrap < 0 or args.saliency < 0 or not 0 < args.target_sensitivity <= 1:
        raise ConfigError("--bootstrap and --saliency must be >= 0, --target-sensitivity in (0, 1]")
    from multimodal.evaluation.evaluate import evaluate_run
    from multimodal.outputs import check_output, staged_output

    out = args.out or os.path.join(args.checkpoint, "eval")
    if args.shifted:
        seed = args.shift_seed or 0
        args.data, tag = shifted_copy(args.checkpoint, args.shifted, seed)
        out = args.out or os.path.join(args.checkpoint, f"eval_shifted_{tag}-seed{seed}")
    # an evaluation replaces its own earlier one, never the run or a folder of other files
    rule = dict(overwrite=True, protected={args.checkpoint: "run being evaluated"},
                legacy=EVAL_ENTRIES)
    check_output(out, "evaluate", **rule)
    with staged_output(out, "evaluate", **rule) as tmp:
        result = evaluate_run(args.checkpoint, tmp, args.data, args.split, args.tta,
                              args.bootstrap, args.operating_class, args.target_sensitivity,
                              args.saliency, data_overrides=args.set)
    if result.get("task") == "segmentation":
        m = result["metrics"]
        ci = m["dice"]["ci95"]
        print(f"Dice {m['dice']['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
              + f", IoU {m['iou']['value']:.3f}, pooled Dice {m['pooled_dice']['value']:.3f} "
              f"({result['n_images']} images; {result['n_full_frame']} full-frame masks apart)")
        print(f"report: {os.path.join(out, 'report.html')}")
        return 0
    if result.get("calibration_on_same_rows"):
        print(f"note: calibration and the operating point were fitted on the {args.split} rows "
              "they are reported on (in-sample; see the report)")
    m = result["metrics"]
    ci = m["balanced_accuracy"]["ci95"]
    print(f"balanced accuracy {m['balanced_accuracy']['value']:.3f}"
          + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
          + f", macro AUC {m['macro_auc']['value']:.3f}, accuracy {m['accuracy']['value']:.3f}")
    print(f"report: {os.path.join(out, 'report.html')}")
    return 0


def shifted_copy(run_dir: str, names: str, seed: int) -> tuple[str, str]:
    """The dataset.yaml of the run's shifted test copy, written on first use, and a short
    name for the shifts ('all', or their names joined by '+')."""
    from multimodal.data.shift import SHIFTS, parse_shifts, shifted_copy_of_run

    shifts = parse_shifts(list(SHIFTS) if names == "all" else names)  # in SHIFTS' order
    folder = os.path.join(run_dir, "shifted", f"{'+'.join(shifts)}-seed{seed}")
    path, rows, reused = shifted_copy_of_run(run_dir, folder, shifts, seed, reuse=True)
    print(f"shifted copy of {rows} test images: {folder}" + (" (made before)" if reused else ""))
    return path, "all" if shifts == list(SHIFTS) else "+".join(shifts)


if __name__ == "__main__":
    sys.exit(main())
