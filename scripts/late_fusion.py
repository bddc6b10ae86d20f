"""Weighted late fusion of trained runs (one split), weights fitted on validation.

    python scripts/late_fusion.py --members runs/image runs/meta runs/image_meta \
        --out runs/fusion
    python scripts/evaluate.py --checkpoint runs/fusion

Weights lie on the simplex and minimise the class-balanced log loss of the averaged
probabilities on the members' shared validation split; saved in manifest.json.
"""

from __future__ import annotations

import argparse
import json
import sys

from multimodal.errors import RunError, cli
from multimodal.run.layout import is_run


@cli
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", nargs="+", required=True, help="run directories")
    parser.add_argument("--out", required=True, help="folder for the ensemble (manifest.json)")
    parser.add_argument("--plain-log-loss", action="store_true",
                        help="fit weights on the plain, not class-balanced, log loss")
    args = parser.parse_args(argv)
    missing = [m for m in args.members if not is_run(m)]
    if missing:
        raise RunError(f"not run directories (no config.yaml): {missing}",
                       "pass folders written by scripts/train.py --workdir")
    from multimodal.ensemble.arguments import check_late_fusion_members

    check_late_fusion_members(args.members)  # one run, or one run twice, fuses nothing
    from multimodal.ensemble.build import build_late_fusion
    from multimodal.outputs import staged_output

    # one manifest.json: a run again replaces this tool's own folder, never a member's
    with staged_output(args.out, "late_fusion", overwrite=True,
                       protected={m: "member run" for m in args.members}) as out:
        summary = build_late_fusion(args.members, out, not args.plain_log_loss)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
