"""Web demo: upload a dermatoscopic image (+ age, sex, site), see the class probabilities,
a saliency overlay and the image / metadata contributions. A research tool, not a diagnosis.

    python scripts/serve.py --checkpoint runs/demo                 # then open http://127.0.0.1:8000
    python scripts/serve.py --model model/ --port 8080              # an exported model
    python scripts/serve.py --checkpoint runs/stack --max-upload-mb 5

The JSON API is beside the page: POST /predict (multipart: image + metadata fields),
GET /model, GET /health; its OpenAPI description is at /openapi.json (rendered at /docs).
An exported model's card (MODEL_CARD.md, written by export.py) is served at GET /model-card
and linked from the page.
"""

from __future__ import annotations

import argparse
import sys

from multimodal.errors import ConfigError, cli
from multimodal.serving.images import add_limit_options, check_limit_options


@cli
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a run or ensemble directory")
    source.add_argument("--model", help="an exported model (scripts/export.py --out)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                        "127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    add_limit_options(parser, "--max-upload-mb", 20.0, "largest accepted upload")
    parser.add_argument("--saliency-steps", type=int, default=16,
                        help="integrated-gradient steps per saliency map (default 16)")
    args = parser.parse_args(argv)
    check_limit_options("--max-upload-mb", args.max_upload_mb, args.max_pixels, args.max_aspect)
    if args.saliency_steps < 1:
        raise ConfigError(f"--saliency-steps {args.saliency_steps}: must be at least 1")
    if not 0 <= args.port < 65536:
        raise ConfigError(f"--port {args.port} is not a port number (0-65535)")

    import uvicorn
    from PIL import Image

    from multimodal.serving.app import create_app, warm_up
    from multimodal.serving.predictor import Predictor

    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, args.max_pixels)  # ours decides
    predictor = Predictor.open(args.checkpoint or args.model)
    warm_up(predictor, args.saliency_steps)
    app = create_app(predictor, int(args.max_upload_mb * 2**20), args.max_pixels,
                     args.saliency_steps, args.max_aspect)
    print(f"serving {args.checkpoint or args.model} on http://{args.host}:{args.port} "
          "(Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
