"""Evaluate a trained run or an ensemble directory; write metrics, plots and a report.
A segmentation run (its config's `task`) gets Dice/IoU, overlays and its own report
(multimodal/evaluation/segmenter.py).

    python scripts/evaluate.py --checkpoint runs/sample --out runs/sample/eval
    python scripts/evaluate.py --checkpoint runs/ham --data configs/isic2018_test.yaml --tta
    python scripts/evaluate.py --checkpoint runs/stack --data configs/isic2018_test.yaml \
        --set data.options.root=/data/isic2018     # ensembles too (stacking, late fusion)
    python scripts/evaluate.py --checkpoint runs/ham --shifted     # as another camera sees it
    python scripts/evaluate.py --checkpoint runs/ham --shifted blur --severity 3
    python scripts/evaluate.py --checkpoint runs/ham --shifted --adapt-bn  # + BatchNorm adapted

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
--severity 1-5 (with --shifted) applies each named family at that one level instead
(multimodal/data/images/shift.py's table: blur, vignette, black_corners, low_res, noise, levels,
contrast, saturation, white_balance, gamma, squash, jpeg; `all`: every family at once); the
folders name the level: <checkpoint>/shifted/blur-s3-seed0, <checkpoint>/eval_shifted_blur-s3-seed0.
--adapt-bn re-estimates the run's BatchNorm statistics on the evaluated images, without
their labels (multimodal/evaluation/adapt.py; at least 32 images), blended with the training
statistics by --adapt-bn-blend (the target's weight, default 1), and evaluates the run both
ways: as trained into the usual folder, adapted into the same name + `_adapted`
(<checkpoint>/eval_adapted, <checkpoint>/eval_shifted_blur-s3-seed0_adapted; `-blend<b>`
added when b is not 1), and prints the paired difference. Runs only: an ensemble or an
exported model (scripts/export.py) is not adapted. The target set's class mix biases the
statistics too (the report and metrics.json say so).

Writes metrics.json, predictions.csv, confusion/ROC/reliability PNGs, saliency
overlays of the most confident errors, report.md and a self-contained report.html.
"""

from __future__ import annotations

import argparse
import os
import sys

from multimodal.errors import ConfigError, RunError, cli
from multimodal.run.layout import is_run

# what an evaluation folder held before evaluations left the output marker
# (report.html first: the one file every earlier evaluation has and a user's folder hardly)
EVAL_ENTRIES = ("report.html", "metrics.json", "report.md", "*.json", "*.csv", "*.png",
                "saliency*", "overlays*")


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
    parser.add_argument("--severity", metavar="1-5",
                        help="with --shifted: each shift at this level (1 mildest, 5 strongest; "
                             "multimodal/data/images/shift.py lists the levels)")
    parser.add_argument("--adapt-bn", action="store_true",
                        help="also evaluate with the BatchNorm statistics re-estimated on the "
                             "evaluated images, unlabelled (at least 32; runs only, not "
                             "ensembles or exported models), into <out>_adapted")
    parser.add_argument("--adapt-bn-blend", type=float, default=None, metavar="0..1",
                        help="weight of the target images' statistics against the training "
                             "ones (default 1: the target's alone)")
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
    from multimodal.data.images.shift import parse_severity

    severity = parse_severity(args.severity)
    if severity is not None and not args.shifted:
        raise ConfigError("--severity sets the level of --shifted's shifts; there is no "
                          "--shifted", "add --shifted blur (or another shift) or drop --severity")
    if args.adapt_bn_blend is not None and not args.adapt_bn:
        raise ConfigError("--adapt-bn-blend weighs the statistics of --adapt-bn; there is no "
                          "--adapt-bn", "add --adapt-bn or drop --adapt-bn-blend")
    if not os.path.isdir(args.checkpoint):
        raise RunError(f"no run directory {args.checkpoint}",
                       "pass a folder written by scripts/train.py --workdir or an ensemble script")
    if args.bootstrap < 0 or args.saliency < 0 or not 0 < args.target_sensitivity <= 1:
        raise ConfigError("--bootstrap and --saliency must be >= 0, --target-sensitivity in (0, 1]")
    blend = None
    if args.adapt_bn:
        from multimodal.evaluation.adapt import check_blend

        blend = check_blend(1.0 if args.adapt_bn_blend is None else args.adapt_bn_blend)
    from multimodal.evaluation.evaluate import evaluate_run, result_line
    from multimodal.outputs import check_output, staged_output

    out = args.out or os.path.join(args.checkpoint, "eval")
    if args.shifted:
        seed = args.shift_seed or 0
        args.data, tag = shifted_copy(args.checkpoint, args.shifted, seed, severity)
        out = args.out or os.path.join(args.checkpoint, f"eval_shifted_{tag}-seed{seed}")
    # an evaluation replaces its own earlier one, never the run or a folder of other files
    protected = {args.checkpoint: "run being evaluated"}
    if is_run(args.checkpoint):  # a run: its dataset too
        from multimodal.run.files import load_run_config
        from multimodal.data.split.build import dataset_folders

        protected.update(dataset_folders(load_run_config(args.checkpoint).data))
    rule = dict(overwrite=True, protected=protected, legacy=EVAL_ENTRIES)
    adapted_out = adapted_folder(out, blend) if blend is not None else None
    for folder in (out, adapted_out):
        if folder:
            check_output(folder, "evaluate", **rule)

    def evaluate(folder, adapt_bn=None):
        with staged_output(folder, "evaluate", **rule) as tmp:
            result = evaluate_run(args.checkpoint, tmp, args.data, args.split, args.tta,
                                  args.bootstrap, args.operating_class, args.target_sensitivity,
                                  args.saliency, data_overrides=args.set, adapt_bn=adapt_bn)
            # the run's card with every evaluation it has, this one included (read in place)
            from multimodal.serving.model_card import write_model_card

            write_model_card(args.checkpoint, os.path.join(tmp, "MODEL_CARD.md"),
                             pending=(tmp, os.path.relpath(folder, args.checkpoint)))
            return result

    # adapted first: its refusals (no BatchNorm, too few images) come before any work
    adapted = evaluate(adapted_out, blend) if blend is not None else None
    result = evaluate(out)
    if result.get("calibration_on_same_rows"):
        print(f"note: calibration and the operating point were fitted on the {args.split} rows "
              "they are reported on (in-sample; see the report)")
    print(result_line(result))
    print(f"report: {os.path.join(out, 'report.html')}")
    if adapted is not None:
        print_adapted(adapted, out, adapted_out, args.bootstrap)
    return 0


def adapted_folder(out: str, blend: float) -> str:
    """The adapted evaluation's folder beside the plain one: <out>_adapted[-blend<b>]."""
    return out.rstrip(os.sep) + "_adapted" + (f"-blend{blend:g}" if blend != 1 else "")


def print_adapted(adapted: dict, plain: str, folder: str, n_boot: int) -> None:
    """The adapted evaluation's line, and its paired difference to the plain one."""
    from multimodal.evaluation.compare import compare, read_predictions
    from multimodal.evaluation.evaluate import result_line

    info = adapted["adapted_batchnorm"]
    print(f"adapted BatchNorm on {info['target_images']} target images ({info['layers']} "
          f"layers, blend {info['blend']:g}; the target's class mix biases the statistics): "
          + result_line(adapted))
    if n_boot:
        d = compare(read_predictions(plain), read_predictions(folder), n_boot,
                    metrics=("balanced_accuracy",))["metrics"]["balanced_accuracy"]
        print(f"adapted - as trained: {100 * d['difference']:+.1f} points of balanced accuracy "
              f"[{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}] (paired, over groups)")
    print(f"report: {os.path.join(folder, 'report.html')}")


def shifted_copy(run_dir: str, names: str, seed: int,
                 severity: int | None = None) -> tuple[str, str]:
    """The dataset.yaml of the run's shifted test copy, written on first use, and a short
    name for the shifts ('all', or their names joined by '+'; '-s<level>' with a severity)."""
    from multimodal.data.images.shift import parse_shifts, shift_tag
    from multimodal.run.shifted import shifted_copy_of_run

    shifts = parse_shifts(names, severity)  # in the order they are applied
    folder = os.path.join(run_dir, "shifted",
                          f"{'+'.join(shifts)}" + (f"-s{severity}" if severity else "")
                          + f"-seed{seed}")
    path, rows, reused = shifted_copy_of_run(run_dir, folder, shifts, seed, reuse=True,
                                             severity=severity)
    print(f"shifted copy of {rows} test images: {folder}" + (" (made before)" if reused else ""))
    return path, shift_tag(shifts, severity)


if __name__ == "__main__":
    sys.exit(main())
