"""Train an image, metadata or fused classifier from a config.

    python scripts/train.py --config configs/ham10000_sample.yaml --modality image+meta \
        --workdir runs/sample [--set train.epochs=3 ...] [--smoke] [--resume]

Config errors are reported before any work starts. Ctrl-C (or SIGTERM) saves a
checkpoint; --resume continues exactly where the run stopped.
"""

from __future__ import annotations

import argparse
import os
import sys

from multimodal.config import config_from_cli


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/ham10000_sample.yaml")
    parser.add_argument("--modality", choices=["image", "meta", "image+meta"])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. train.epochs=3 (repeatable)")
    parser.add_argument("--workdir", help="run directory (default runs/<name>_<modality>)")
    parser.add_argument("--smoke", action="store_true", help="the config's tiny smoke variant")
    parser.add_argument("--resume", action="store_true", help="continue the run in --workdir")
    parser.add_argument("--features", metavar="CACHE",
                        help="train on a feature cache from extract_features.py, not images")
    parser.add_argument("--devices", type=int, help="use only the first N devices")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    cfg = config_from_cli(args.config, args.set, args.smoke, args.modality, args.features)
    if cfg is None:
        return 2
    workdir = args.workdir or os.path.join("runs", f"{cfg.name}_{cfg.modality.replace('+', '_')}")
    from multimodal.training.trainer import train  # jax import after the config is valid

    try:
        summary = train(cfg, workdir, resume=args.resume, num_devices=args.devices,
                        show_progress=not args.no_progress)
    except KeyboardInterrupt:
        return 130
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"done: {summary['steps']} steps -> {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
