"""Load check of the web demo on loopback: sequential, then concurrent POST /predict requests
against `scripts/serve.py` started on 127.0.0.1; no errors allowed; latency p50/p95/p99 and
requests/s written to benchmarks/results/serve_load.{md,json}.

    python -m benchmarks.serving.serve_load --checkpoint runs/demo              # 200 + 50, as the page asks
    python -m benchmarks.serving.serve_load --checkpoint runs/demo --plain      # probabilities only

Each request is what the page sends: one sample image, age / sex / site, saliency overlay and
explanation (`--plain`: neither). The request loops are bounded (count and a per-request
timeout) and the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from benchmarks.common import ROOT, write_result

from multimodal.serving.client import multipart

SAMPLE = os.path.join(ROOT, "multimodal", "data", "sample", "ham10000", "images")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]




def one_request(url: str, body: bytes, boundary: str, timeout: float) -> tuple[float, int, str]:
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            payload = json.loads(resp.read())
            status, error = resp.status, "" if "top_class" in payload else "no top_class"
    except urllib.error.HTTPError as err:
        status, error = err.code, err.read()[:200].decode(errors="replace")
    except OSError as err:
        status, error = 0, f"{type(err).__name__}: {err}"
    return time.perf_counter() - t0, status, error


def summary(latencies: list[float], wall: float, errors: list) -> dict:
    ms = np.asarray(latencies) * 1000
    return {"requests": len(latencies), "errors": len(errors), "first_errors": errors[:3],
            "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()),
            "wall_s": wall, "requests_per_s": len(latencies) / wall}


def phase(url, body, boundary, n: int, workers: int, timeout: float) -> dict:
    t0 = time.perf_counter()
    if workers == 1:
        results = [one_request(url, body, boundary, timeout) for _ in range(n)]
    else:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(lambda _: one_request(url, body, boundary, timeout),
                                    range(n)))
    wall = time.perf_counter() - t0
    errors = [f"{s} {e}" for _, s, e in results if s != 200 or e]
    return summary([r[0] for r in results], wall, errors)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a run or ensemble directory")
    source.add_argument("--model", help="an exported model")
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--concurrent", type=int, default=50,
                        help="requests sent at once, each on its own connection")
    parser.add_argument("--plain", action="store_true", help="no saliency, no explanation")
    parser.add_argument("--timeout", type=float, default=120.0, help="per request, seconds")
    parser.add_argument("--name", default=None, help="result file name (default serve_load"
                        "[_plain])")
    args = parser.parse_args(argv)

    port = free_port()
    target = args.checkpoint or args.model
    server = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "scripts", "serve.py"),
         "--checkpoint" if args.checkpoint else "--model", target, "--host", "127.0.0.1",
         "--port", str(port)], cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        started = time.perf_counter()
        while True:
            if server.poll() is not None:
                raise SystemExit(f"serve.py exited with {server.returncode}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=2):
                    break
            except OSError:
                if time.perf_counter() - started > 300:
                    raise SystemExit("serve.py did not answer within 300 s") from None
                time.sleep(0.5)
        startup = time.perf_counter() - started
        with urllib.request.urlopen(base + "/model", timeout=10) as resp:
            model = json.loads(resp.read())
        image_name = min(os.listdir(SAMPLE))
        with open(os.path.join(SAMPLE, image_name), "rb") as f:
            image = f.read()
        fields = {k: v for k, v in {"age": "54", "sex": "female", "localization": "back"}.items()
                  if k in model["metadata"]}
        if args.plain:
            fields.update(saliency="false", explain="false")
        body, boundary = multipart(fields, image)
        url = base + "/predict"
        one_request(url, body, boundary, args.timeout)  # first request outside the numbers
        load_before = os.getloadavg()
        sequential = phase(url, body, boundary, args.sequential, 1, args.timeout)
        concurrent = phase(url, body, boundary, args.concurrent, args.concurrent, args.timeout)
        load_after = os.getloadavg()
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()

    what = "probabilities only" if args.plain else "probabilities + saliency overlay + explanation"
    rows = [f"| {name} | {r['requests']} | {r['errors']} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} "
            f"| {r['p99_ms']:.0f} | {r['requests_per_s']:.1f} |"
            for name, r in (("sequential", sequential),
                            (f"concurrent ({args.concurrent} at once)", concurrent))]
    markdown = "\n".join([
        f"# Web demo load check ({what})", "",
        (f"`scripts/serve.py` on 127.0.0.1 (uvicorn, one process), model `{target}` "
        f"({model['kind']}, {model['source'].get('modality', '')} "
        f"{model['source'].get('encoder', '')}, {len(model['classes'])} classes); each request "
        f"POSTs the sample image {image_name} ({len(image) // 1024} KiB) with {fields}. "
        f"Server start-up (imports, model load, compile) {startup:.1f} s. Load average "
        f"(1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after: other work on the "
         "machine's cores counts in these latencies."), "",
        "| phase | requests | errors | p50 ms | p95 ms | p99 ms | requests/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |", *rows])
    name = args.name or ("serve_load_plain" if args.plain else "serve_load")
    path = write_result(name, markdown, {"model": model, "fields": fields, "image": image_name,
                                         "startup_s": startup, "loadavg_before": load_before,
                                         "loadavg_after": load_after, "sequential": sequential,
                                         "concurrent": concurrent})
    print(markdown)
    print(f"-> {path}")
    failed = sequential["errors"] + concurrent["errors"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
