"""Export a run or an ensemble as a self-contained inference artifact.

    python scripts/export.py --checkpoint runs/demo --out model/
    python scripts/predict.py --model model/ image.jpg --age 54 --sex female

model/ holds the network serialized with jax.export (weights included), the preprocessing
constants, the metadata encoder, the class names and manifest.json (input shapes, metadata
vocabulary) and MODEL_CARD.md, the model card written from the run folder's files
(evaluate the run first, so its card holds the evaluation); predict.py and serve.py run it
without the run directory, its config or the training code. See multimodal/serving/export.py.
"""

from __future__ import annotations

import argparse
import os
import sys

from multimodal.errors import RunError, cli


@cli
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a run or ensemble directory")
    parser.add_argument("--out", required=True, help="the folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.checkpoint):
        raise RunError(f"no run directory {args.checkpoint}",
                       "pass a folder written by scripts/train.py --workdir or an ensemble script")
    from multimodal.serving.export import export_model

    manifest = export_model(args.checkpoint, args.out, args.overwrite)
    print(f"exported {args.checkpoint} -> {args.out} ({manifest['kind']}, classes "
          f"{', '.join(manifest['classes'])}, metadata {list(manifest['metadata_vocabulary'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
