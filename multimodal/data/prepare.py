"""Prepared datasets: a table + split written as TFDS ArrayRecord files (no TensorFlow).

One TFDS dataset per prepared folder with one split per part (train/val/test
or fold_k). Each record holds the encoded image (JPEG or PNG, resized so the
short side is `image_size`), the label, group and image ids, and the raw
metadata fields (numbers as float32 with NaN for missing, categories as text).

Preparation is idempotent: the folder records a sha256 of its inputs (rows,
split, image bytes, settings). The same inputs do nothing; different inputs
are refused unless `overwrite=True`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from PIL import Image

from multimodal.data.splits import content_hashes
from multimodal.data.table import DatasetTable

FORMAT_VERSION = "1.0.0"
MANIFEST = "prepared.json"


class PreparedMismatch(RuntimeError):
    """The folder holds a dataset prepared from other inputs."""


def _tfds():
    import tensorflow_datasets as tfds  # heavy import, only when preparing or reading

    logging.getLogger("absl").setLevel(logging.ERROR)
    tfds.disable_progress_bar()
    return tfds


def _features(table: DatasetTable, encoding: str):
    tfds = _tfds()
    spec = {
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format=encoding),
        "label": tfds.features.ClassLabel(names=list(table.classes)),
        "image_id": tfds.features.Text(),
        "group_id": tfds.features.Text(),
    }
    for name, kind in table.metadata.items():
        spec[f"meta_{name}"] = (tfds.features.Text() if kind == "categorical"
                                else tfds.features.Scalar(np.float32))
    return tfds.features.FeaturesDict(spec)


def resize_short_side(image: Image.Image, size: int) -> Image.Image:
    scale = size / min(image.size)
    target = (max(size, round(image.size[0] * scale)), max(size, round(image.size[1] * scale)))
    return image.resize(target, Image.BILINEAR if scale > 1 else Image.LANCZOS)


def encode_image(path: str, size: int, encoding: str, quality: int = 95) -> bytes:
    with Image.open(path) as im:
        im = resize_short_side(im.convert("RGB"), size)
        buf = io.BytesIO()
        im.save(buf, format="JPEG" if encoding == "jpeg" else "PNG", quality=quality)
        return buf.getvalue()


def inputs_hash(table: DatasetTable, split: pd.DataFrame, column: str, settings: dict,
                hashes: list[str] | None = None) -> str:
    """sha256 over everything a prepared dataset depends on."""
    h = hashlib.sha256()
    h.update(json.dumps({"settings": settings, "classes": table.classes,
                         "metadata": table.metadata, "format": FORMAT_VERSION},
                        sort_keys=True).encode())
    columns = ["image_id", "label", "group_id", *table.metadata]
    h.update(table.frame[columns].to_csv(index=False).encode())
    h.update(split[["image_id", column]].to_csv(index=False).encode())
    for digest in hashes or content_hashes(table.frame["image_path"]):
        h.update(digest.encode())
    return h.hexdigest()


def _record(row, table: DatasetTable, size: int, encoding: str) -> dict:
    record = {
        "image": encode_image(row["image_path"], size, encoding),
        "label": table.classes.index(row["label"]),
        "image_id": str(row["image_id"]),
        "group_id": str(row["group_id"]),
    }
    for name, kind in table.metadata.items():
        value = row[name]
        if kind == "categorical":
            record[f"meta_{name}"] = "" if pd.isna(value) else str(value)
        else:
            record[f"meta_{name}"] = np.float32(np.nan if pd.isna(value) else float(value))
    return record


def prepare(table: DatasetTable, split: pd.DataFrame, out_dir: str, image_size: int = 224,
            column: str = "split", encoding: str = "jpeg", overwrite: bool = False,
            workers: int = 8, hashes: list[str] | None = None) -> dict:
    """Write one ArrayRecord split per value of `split[column]`; return the manifest.

    `hashes`: the images' sha256 in table order, when the caller has them already
    (the leak check computes the same ones).
    """
    if encoding not in ("jpeg", "png"):
        raise ValueError(f"encoding must be 'jpeg' or 'png', not {encoding!r}")
    tfds = _tfds()
    settings = {"image_size": image_size, "encoding": encoding, "column": column}
    digest = inputs_hash(table, split, column, settings, hashes)
    manifest_path = os.path.join(out_dir, MANIFEST)
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
        if manifest["inputs_sha256"] == digest:
            manifest["status"] = "unchanged"
            return manifest
        if not overwrite:
            raise PreparedMismatch(
                f"{out_dir} was prepared from other inputs ({manifest['inputs_sha256'][:12]} != "
                f"{digest[:12]}); pass overwrite=True (--overwrite) to replace it")
        shutil.rmtree(out_dir)

    frame = table.frame.merge(split[["image_id", column]], on="image_id", how="inner")
    parts = {str(p): rows for p, rows in frame.groupby(column, sort=True)}

    def generate(rows):
        with ThreadPoolExecutor(workers) as pool:
            records = pool.map(lambda r: _record(r, table, image_size, encoding),
                               (row for _, row in rows.iterrows()))
            for record in records:
                yield record["image_id"], record

    features = _features(table, encoding)

    # Not registered by name: one process may prepare several datasets.
    class Prepared(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version(FORMAT_VERSION)

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=features,
                                         description=f"{table.name} prepared by multimodal",
                                         metadata=tfds.core.MetadataDict(inputs_sha256=digest))

        def _split_generators(self, dl_manager):
            return {name: generate(rows) for name, rows in parts.items()}

        def _generate_examples(self):  # splits come from _split_generators
            raise NotImplementedError

    Prepared.name = "prepared"
    builder = Prepared(data_dir=out_dir, file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        verify_ssl=True, try_download_gcs=False))
    manifest = {"inputs_sha256": digest, "settings": settings, "classes": list(table.classes),
                "metadata": table.metadata, "name": table.name,
                "splits": {k: int(len(v)) for k, v in parts.items()},
                "data_dir": os.path.relpath(builder.data_dir, out_dir)}
    with open(manifest_path + ".tmp", "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(manifest_path + ".tmp", manifest_path)  # written last: marks completion
    manifest["status"] = "prepared"
    return manifest


def read_manifest(out_dir: str) -> dict:
    path = os.path.join(out_dir, MANIFEST)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{out_dir} holds no prepared dataset (no {MANIFEST}); "
                                "run scripts/prepare_data.py first")
    with open(path) as f:
        return json.load(f)


def open_split(out_dir: str, split: str):
    """Random-access source of one prepared split; images stay encoded bytes."""
    tfds = _tfds()
    manifest = read_manifest(out_dir)
    if split not in manifest["splits"]:
        raise KeyError(f"no split {split!r} in {out_dir}; it has {sorted(manifest['splits'])}")
    builder = tfds.builder_from_directory(os.path.join(out_dir, manifest["data_dir"]))
    return builder.as_data_source(split=split, decoders={"image": tfds.decode.SkipDecoding()})


def record_metadata(record: dict, kinds: dict) -> dict:
    """A record's raw metadata fields: categories as text (blank -> None), numbers as float."""
    row = {}
    for name, kind in kinds.items():
        value = record[f"meta_{name}"]
        row[name] = (value.decode() or None) if kind == "categorical" else float(value)
    return row


def split_frame(source, manifest: dict) -> pd.DataFrame:
    """The rows of a prepared split as a table (ids, label name, raw metadata), in source order."""
    rows = []
    for i in range(len(source)):
        rec = source[i]
        rows.append({"image_id": rec["image_id"].decode(), "group_id": rec["group_id"].decode(),
                     "label": manifest["classes"][rec["label"]],
                     **record_metadata(rec, manifest["metadata"])})
    return pd.DataFrame(rows)
