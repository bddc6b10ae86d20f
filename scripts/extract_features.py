"""Run a (pretrained) image encoder once over a dataset and cache its features.

    python scripts/extract_features.py --config configs/ham10000.yaml \
        --set model.encoder=efficientnet_lite0 --set model.pretrained=efficientnet_lite0 \
        --set data.image_size=224 --set data.normalize=minus1_1 --root runs/features [--tta]
    python scripts/train.py --config configs/ham10000.yaml --modality image+meta \
        --features runs/features/features/efficientnet_lite0-<digest>

The cache is keyed by encoder, weights, image size, preprocessing, normaliser, the
images and --block/--tta: the same key is reused, a changed one extracted anew.
--block K caches the activations after block K instead of pooled embeddings, and
training then fine-tunes the blocks above K only.
"""

from __future__ import annotations

import argparse
import sys

from multimodal.config import config_from_cli
from multimodal.data.records.store import REFERENCE
from multimodal.data.split.grouped import SPLIT_FILE
from multimodal.errors import cli

# what this tool writes in its folder (the output marker lists these as its own)
OWN_ENTRIES = (SPLIT_FILE, "features", REFERENCE, "prepared")


@cli
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (repeatable)")
    parser.add_argument("--smoke", action="store_true", help="the config's tiny smoke variant")
    parser.add_argument("--root", required=True,
                        help="folder for the split and the feature caches (features/...)")
    parser.add_argument("--block", type=int, help="cache activations after this block")
    parser.add_argument("--tta", action="store_true", help="also cache the three flipped views")
    parser.add_argument("--batch-size", type=int, default=64, help="images per encoder call")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    cfg = config_from_cli(args.config, args.set, args.smoke, modality="image")
    from multimodal.data.split.build import dataset_folders
    from multimodal.outputs import claim_output, record_entries
    from multimodal.run.features import extract_features

    # the root is reused (one cache per encoder and settings): new, empty or its own
    claim_output(args.root, "extract_features", protected=dataset_folders(cfg.data),
                 legacy=OWN_ENTRIES)

    path, status = extract_features(cfg, args.root, args.block, args.tta, args.batch_size,
                                    show_progress=not args.no_progress)
    record_entries(args.root, "extract_features", OWN_ENTRIES)
    print(f"{status}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
