"""The shared store of prepared data: one prepared folder (prepare.py) per distinct input,
reused by content hash.

Runs share prepared data by that hash (`prepare_shared`): one folder per distinct input
under the store root (`store_root()`: $MULTIMODAL_PREPARED, else
$MULTIMODAL_CACHE/prepared, else ~/.cache/multimodal/prepared), named
`<dataset>-<inputs sha256[:16]>`, built in a temporary folder and renamed when complete.
A run directory (or any folder inputs are built in) records the folder it used in
`prepared_data.json` (`write_reference`). The store is a cache: a deleted folder is
prepared again from the inputs.
"""

from __future__ import annotations

import json
import os
import shutil
import socket

import pandas as pd

from multimodal.data.records.prepare import MANIFEST, inputs_hash, prepare, prepared_settings
from multimodal.data.split.grouped import content_hashes
from multimodal.data.table import DatasetTable

PREPARED_ENV = "MULTIMODAL_PREPARED"
REFERENCE = "prepared_data.json"  # in a run directory: the prepared folder it used


def store_root() -> str:
    """$MULTIMODAL_PREPARED, else $MULTIMODAL_CACHE/prepared, else
    $XDG_CACHE_HOME (~/.cache)/multimodal/prepared."""
    root = os.environ.get(PREPARED_ENV)
    if not root:
        cache = os.environ.get("MULTIMODAL_CACHE") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "multimodal")
        root = os.path.join(cache, "prepared")
    return os.path.abspath(os.path.expanduser(root))


def shared_dir(name: str, digest: str, root: str | None = None) -> str:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "dataset"
    return os.path.join(root or store_root(), f"{safe}-{digest[:16]}")


def complete_manifest(path: str, digest: str | None = None) -> dict | None:
    """The manifest of a complete prepared folder (made from `digest` when given), else None."""
    try:
        with open(os.path.join(path, MANIFEST)) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    if digest is not None and manifest.get("inputs_sha256") != digest:
        return None
    if not os.path.isdir(os.path.join(path, manifest.get("data_dir", "\0"))):
        return None  # the records were deleted: rebuild
    return manifest


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _temp_dir(path: str) -> str:
    host = "".join(c if c.isalnum() else "_" for c in socket.gethostname())
    parent, name = os.path.split(path)
    for entry in os.listdir(parent):  # left by killed preparations of this host
        pid = entry.rpartition("-")[2]
        if entry.startswith(f".tmp-{name}-{host}-") and pid.isdigit() and \
                not _pid_alive(int(pid)):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
    return os.path.join(parent, f".tmp-{name}-{host}-{os.getpid()}")


def prepare_shared(table: DatasetTable, split: pd.DataFrame, image_size: int = 224,
                   column: str = "split", encoding: str = "jpeg", geometry: str = "crop",
                   hashes: list[str] | None = None, root: str | None = None, known=(),
                   on_missing: str = "error", workers: int = 8, progress: bool | None = None,
                   build: bool = True) -> tuple[str, dict | None]:
    """Prepared data for these inputs from the shared store: (folder, manifest), the
    manifest's status "reused" or "prepared".

    `known`: folders to try before the store (the one a run recorded, a run's own
    `prepared/` from before the store); any holding these very inputs is used. Else the
    store's `<dataset>-<digest>` folder is used or, when missing or damaged, prepared in a
    temporary folder and renamed (concurrent preparations of the same inputs: the first
    rename wins, the others are discarded). `build=False` (hosts other than the first)
    only locates the folder and returns manifest None.
    """
    hashes = list(hashes) if hashes is not None else content_hashes(table.frame["image_path"])
    settings = prepared_settings(image_size, encoding, column, geometry)
    digest = inputs_hash(table, split, column, settings, hashes)
    path = shared_dir(table.name, digest, root)
    for candidate in [*known, path]:
        if candidate and (manifest := complete_manifest(candidate, digest)) is not None:
            return candidate, {**manifest, "status": "reused"}
    if not build:
        return path, None
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = _temp_dir(path)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        manifest = prepare(table, split, tmp, image_size, column=column, encoding=encoding,
                           workers=workers, hashes=hashes, on_missing=on_missing,
                           geometry=geometry, progress=progress)
        try:
            os.rename(tmp, path)
        except OSError:  # the folder exists: another process's complete one, or a damaged one
            if complete_manifest(path, digest) is not None:
                return path, {**complete_manifest(path, digest), "status": "reused"}
            shutil.rmtree(path, ignore_errors=True)
            os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path, {**manifest, "status": "prepared"}


def write_reference(workdir: str, path: str, manifest: dict, **extra) -> dict:
    """Record in a run directory which prepared folder it used (and `extra` facts)."""
    reference = {"path": os.path.abspath(path), "inputs_sha256": manifest["inputs_sha256"],
                 "name": manifest.get("name"), "settings": manifest.get("settings"),
                 "splits": manifest.get("splits"), **extra}
    os.makedirs(workdir, exist_ok=True)
    target = os.path.join(workdir, REFERENCE)
    with open(target + ".tmp", "w") as f:
        json.dump(reference, f, indent=1)
    os.replace(target + ".tmp", target)
    return reference


def read_reference(workdir: str) -> dict | None:
    """What `write_reference` recorded in a run directory, or None (older runs)."""
    try:
        with open(os.path.join(workdir, REFERENCE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
