"""Train an image, metadata or fused classifier, or a lesion segmentation model, from a config.

    python scripts/train.py --config configs/ham10000_sample.yaml --modality image+meta \
        --workdir runs/sample [--set train.epochs=3 ...] [--smoke] [--resume]
    python scripts/train.py --config configs/ham10000_sample_unet.yaml --task segmentation \
        --workdir runs/sample_unet

Config errors are reported before any work starts. Ctrl-C (or SIGTERM) saves a
checkpoint; --resume continues exactly where the run stopped.
"""

from __future__ import annotations

import argparse
import os
import sys

from multimodal.config import MODALITIES, config_differences, config_from_cli
from multimodal.errors import ConfigError, cli
from multimodal.run.files import load_run_config
from multimodal.run.layout import CONFIG
from multimodal import tasks
from multimodal.tasks import TASKS

SAMPLE_CONFIG = "configs/ham10000_sample.yaml"


def resolve_config(args):
    """A new run's config from --config/--set; a resumed run's own saved config, refusing
    options that would change it."""
    if not args.resume:
        return config_from_cli(args.config or SAMPLE_CONFIG, args.set, args.smoke,
                               args.modality, args.features, args.task)
    if not args.workdir:
        raise ConfigError("--resume needs --workdir: the run directory to continue")
    saved = load_run_config(args.workdir)
    if args.config or args.set or args.smoke or args.modality or args.features or args.task:
        asked = config_from_cli(args.config, args.set, args.smoke, args.modality, args.features,
                                args.task)
        if not args.config:  # --set etc. alone: applied on top of the run's own config
            asked = config_from_cli(os.path.join(args.workdir, CONFIG), args.set,
                                    False, args.modality, args.features, args.task)
        changed = config_differences(saved, asked)
        if changed:
            raise ConfigError(
                f"--resume continues {args.workdir} with its own config.yaml; the options given "
                f"would change {len(changed)} value(s), e.g. {changed[0]}",
                f"resume with only: python scripts/train.py --workdir {args.workdir} --resume "
                "(or start a new run in another --workdir)")
    return saved


@cli
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help=f"YAML config (default {SAMPLE_CONFIG}; with --resume "
                                          "the run's own config.yaml is used)")
    parser.add_argument("--modality", choices=MODALITIES,
                        help="what the model sees (overrides the config's `modality`)")
    parser.add_argument("--task", choices=tuple(TASKS),
                        help="classification or segmentation (overrides the config's `task`; "
                             "segmentation trains a U-Net on the lesion masks)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. train.epochs=3 (repeatable)")
    parser.add_argument("--workdir", help="run directory (default runs/<name>_<modality>)")
    parser.add_argument("--smoke", action="store_true",
                        help="apply the config's tiny `smoke` variant (seconds, for checks)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --workdir from its latest checkpoint")
    parser.add_argument("--features", metavar="CACHE",
                        help="train on a feature cache from extract_features.py, not images")
    parser.add_argument("--devices", type=int, help="use only the first N devices")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    cfg = resolve_config(args)
    # runs/<name>_<modality> (image_meta...); a task whose model sees images only: <name>_<task>
    kind = cfg.task if tasks.get(cfg.task).images_only else cfg.modality.replace("+", "_")
    workdir = args.workdir or os.path.join("runs", f"{cfg.name}_{kind}")
    from multimodal.training.trainer import train  # jax import after the config is valid

    summary = train(cfg, workdir, resume=args.resume, num_devices=args.devices,
                    show_progress=not args.no_progress)
    print(f"done: {summary['steps']} steps -> {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
