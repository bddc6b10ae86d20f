"""Download images listed in a CSV of URLs, with retries, resume and a failure report.

Used for Fitzpatrick17k, whose CSV lists each image's URL and `md5hash` id.
A file is written to `<id>.part` and renamed when complete, so an interrupted
run never leaves a half image under its final name; a rerun skips what exists.
"""

from __future__ import annotations

import csv
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed

from tqdm import tqdm

USER_AGENT = "multimodal-downloader/0.1 (research; +https://github.com)"
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


def fetch(url: str, dest: str, retries: int = 3, timeout: float = 30.0,
          backoff: float = 1.0) -> str | None:
    """Fetch one URL to `dest`; return None on success, else the reason it failed."""
    if os.path.exists(dest):
        return None
    reason = "no attempt"
    for attempt in range(retries + 1):
        try:
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                data = response.read()
            if not data:
                raise ValueError("empty response")
            with open(dest + ".part", "wb") as f:
                f.write(data)
            os.replace(dest + ".part", dest)
            return None
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code}"
            if exc.code not in RETRY_STATUS:
                return reason  # 404 and friends will not get better
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            reason = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        if attempt < retries:
            time.sleep(backoff * 2 ** attempt)
    return reason


def download_all(rows, out_dir: str, workers: int = 8, retries: int = 3, timeout: float = 30.0,
                 backoff: float = 1.0, report: str | None = None) -> dict:
    """Download (image_id, url) pairs into out_dir/<image_id>.jpg and report failures.

    Returns counts {"done", "skipped", "failed"}; failures go to `report` (CSV:
    image_id, url, reason).
    """
    os.makedirs(out_dir, exist_ok=True)
    todo, skipped, failures = [], 0, []
    for image_id, url in rows:
        dest = os.path.join(out_dir, image_id + ".jpg")
        if os.path.exists(dest):
            skipped += 1
        elif not url:
            failures.append((image_id, url, "no URL in the CSV"))
        else:
            todo.append((image_id, url, dest))
    with ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(fetch, url, dest, retries, timeout, backoff): (image_id, url)
                   for image_id, url, dest in todo}
        for future in tqdm(as_completed(futures), total=len(futures), desc="download",
                           unit="img", disable=not todo):
            reason = future.result()
            if reason:
                failures.append((*futures[future], reason))
    report = report or os.path.join(out_dir, "download_failures.csv")
    with open(report, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_id", "url", "reason"])
        writer.writerows(sorted(failures))
    return {"done": len(todo) - sum(1 for f in failures if f[1]), "skipped": skipped,
            "failed": len(failures), "report": report}
