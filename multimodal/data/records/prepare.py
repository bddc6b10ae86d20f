"""Prepared datasets: a table + split written as TFDS ArrayRecord files (no TensorFlow).

One TFDS dataset per prepared folder with one split per part (train/val/test
or fold_k). Each record holds the encoded image (JPEG or PNG, fitted to
`image_size` by `data.geometry`: the covering resize for `crop`, the final input
for `squash` and `pad`; see images/geometry.py), the label, group and image ids, and the raw
metadata fields (numbers as float32 with NaN for missing, categories as text). A table
with masks (`mask_path`, segmentation) adds `seg_mask`: the mask as a 0/255 PNG, fitted
like its image with nearest-neighbour resampling; the masks' bytes join the inputs hash.

Preparation is idempotent: the folder records a sha256 of its inputs (rows,
split, image bytes, settings). The same inputs do nothing; different inputs
are refused unless `overwrite=True`.

Runs share prepared folders by that hash through the store (store.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from multimodal.data.images import geometry as geometry_lib
from multimodal.data.images.dicom import open_image
from multimodal.data.split.grouped import content_hashes
from multimodal.errors import DataError, PreparedMismatch
from multimodal.data.table import DatasetTable

FORMAT_VERSION = "1.0.0"
MANIFEST = "prepared.json"
MASK = "seg_mask"  # the record feature of a segmentation mask (PNG, 0/255)


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
    if has_masks(table):
        spec[MASK] = tfds.features.Image(shape=(None, None, 1), encoding_format="png")
    return tfds.features.FeaturesDict(spec)


def has_masks(table: DatasetTable) -> bool:
    return "mask_path" in table.frame.columns


def resize_short_side(image: Image.Image, size: int) -> Image.Image:
    return geometry_lib.cover(image, size)


def read_rgb(path: str) -> Image.Image:
    """The picture at `path` decoded whole, as RGB. A file that does not decode (truncated,
    empty, not an image) is a DataError naming it: what PIL raises differs by format and
    damage (OSError, SyntaxError, struct.error, DecompressionBombError, ...). DICOM files
    are windowed to 8 bits first (dicom.py), and say themselves why one is not read."""
    try:
        with open_image(path) as im:
            return im.convert("RGB")
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure makes the file unusable
        raise DataError(f"unreadable image ({type(exc).__name__}: {' '.join(str(exc).split())})",
                        path, hint="replace the file, or set data.on_missing=drop to leave "
                                   "its row out") from None


def encode_image(path: str, size: int, encoding: str, quality: int = 95,
                 geometry: str = "crop") -> bytes:
    im = geometry_lib.for_storage(read_rgb(path), size, geometry)
    buf = io.BytesIO()
    im.save(buf, format="JPEG" if encoding == "jpeg" else "PNG", quality=quality)
    return buf.getvalue()


def encode_mask(path: str, size: int, geometry: str = "crop") -> bytes:
    """A binary mask file -> 0/255 PNG fitted like its image (nearest neighbour)."""
    with Image.open(path) as im:
        mask = np.asarray(im.convert("L")) > (0 if im.mode == "1" else 127)
    mask = geometry_lib.for_storage(Image.fromarray(mask.astype(np.uint8) * 255), size, geometry,
                                    resample=Image.NEAREST)
    buf = io.BytesIO()
    mask.save(buf, format="PNG")
    return buf.getvalue()


def decode_mask(data: bytes) -> np.ndarray:
    """A record's `seg_mask` PNG -> HxW uint8 0/255."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L"))


def inputs_hash(table: DatasetTable, split: pd.DataFrame, column: str, settings: dict,
                hashes: list[str] | None = None) -> str:
    """sha256 over everything a prepared dataset depends on (the masks' bytes too, when the
    table has masks)."""
    h = hashlib.sha256()
    h.update(json.dumps({"settings": settings, "classes": table.classes,
                         "metadata": table.metadata, "format": FORMAT_VERSION},
                        sort_keys=True).encode())
    columns = ["image_id", "label", "group_id", *table.metadata]
    h.update(table.frame[columns].to_csv(index=False).encode())
    h.update(split[["image_id", column]].to_csv(index=False).encode())
    for digest in hashes or content_hashes(table.frame["image_path"]):
        h.update(digest.encode())
    if has_masks(table):
        h.update(b"masks")
        for digest in content_hashes(table.frame["mask_path"]):
            h.update(digest.encode())
    return h.hexdigest()


def prepared_settings(image_size: int, encoding: str = "jpeg", column: str = "split",
                      geometry: str = "crop") -> dict:
    """The settings a prepared dataset depends on (part of its inputs hash)."""
    return {"image_size": image_size, "encoding": encoding, "column": column,
            "geometry": geometry_lib.check(geometry)}


def _progress(total: int, show: bool | None):
    """A bar of records written; `show=None`: only when stderr is a terminal."""
    return tqdm(total=total, unit="img", desc="preparing records", disable=None if show is None
                else not show, dynamic_ncols=True, leave=False)


def _record(row, table: DatasetTable, size: int, encoding: str, geometry: str = "crop") -> dict:
    record = {
        "image": encode_image(row["image_path"], size, encoding, geometry=geometry),
        "label": table.classes.index(row["label"]),
        "image_id": str(row["image_id"]),
        "group_id": str(row["group_id"]),
    }
    if has_masks(table):
        record[MASK] = encode_mask(row["mask_path"], size, geometry)
    for name, kind in table.metadata.items():
        value = row[name]
        if kind == "categorical":
            record[f"meta_{name}"] = "" if pd.isna(value) else str(value)
        else:
            record[f"meta_{name}"] = np.float32(np.nan if pd.isna(value) else float(value))
    return record


def prepare(table: DatasetTable, split: pd.DataFrame, out_dir: str, image_size: int = 224,
            column: str = "split", encoding: str = "jpeg", overwrite: bool = False,
            workers: int = 8, hashes: list[str] | None = None,
            on_missing: str = "error", geometry: str = "crop",
            progress: bool | None = None) -> dict:
    """Write one ArrayRecord split per value of `split[column]`; return the manifest.

    `hashes`: the images' sha256 in table order, when the caller has them already
    (the leak check computes the same ones). An image that does not decode (truncated,
    empty, not an image) raises a `DataError` naming the file and row, or with
    `on_missing="drop"` is left out with a warning (listed in the manifest).
    `geometry`: how pictures become `image_size` inputs (images/geometry.py). `progress`: a
    progress bar of the records written (None: only on a terminal).
    """
    if encoding not in ("jpeg", "png"):
        raise ValueError(f"encoding must be 'jpeg' or 'png', not {encoding!r}")
    tfds = _tfds()
    settings = prepared_settings(image_size, encoding, column, geometry)
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
                f"{digest[:12]})", f"it is a cache: remove it (rm -r {out_dir}), choose another "
                "folder (data.prepared_dir), or replace it with scripts/prepare_data.py --overwrite")
        shutil.rmtree(out_dir)

    frame = table.frame.merge(split[["image_id", column]], on="image_id", how="inner")
    parts = {str(p): rows for p, rows in frame.groupby(column, sort=True)}

    unreadable = []  # (row, problem) of images that fail to decode: dropped or refused

    def safe_record(row):
        try:
            return _record(row, table, image_size, encoding, geometry)
        except DataError as exc:  # the image (read_rgb) does not decode
            return exc.problem
        except (OSError, ValueError, Image.DecompressionBombError) as exc:  # e.g. the mask
            return f"unreadable image ({type(exc).__name__}: {exc})"

    def generate(rows):
        with ThreadPoolExecutor(workers) as pool, _progress(len(rows), progress) as bar:
            records = pool.map(safe_record, (row for _, row in rows.iterrows()))
            for (_, row), record in zip(rows.iterrows(), records):
                if isinstance(record, str):
                    if on_missing != "drop":
                        raise DataError(f"{record}: {row['image_path']}", _file(row, table),
                                        _line(row), "set data.on_missing=drop to drop such "
                                        "rows with a warning (data.verify=decode finds them "
                                        "all when the table is loaded)")
                    unreadable.append((row, record))
                    continue
                yield record["image_id"], record
                bar.update()

    features = _features(table, encoding)

    class _LocalInfo(tfds.core.DatasetInfo):
        def initialize_from_bucket(self):
            """Never on GCS; TFDS's version leaves an empty tmp*tfds folder in the temp dir."""

    # Not registered by name: one process may prepare several datasets.
    class Prepared(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version(FORMAT_VERSION)

        def _info(self):
            return _LocalInfo(builder=self, features=features,
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
    if unreadable:
        row, problem = unreadable[0]
        warnings.warn(f"{table.file or table.name}: dropped {len(unreadable)} row(s) whose image "
                      f"does not decode, e.g. line {_line(row)}: {problem}: {row['image_path']}",
                      stacklevel=2)
    dropped = {str(row["image_id"]) for row, _ in unreadable}
    manifest = {"inputs_sha256": digest, "settings": settings, "classes": list(table.classes),
                "metadata": table.metadata, "name": table.name, "masks": has_masks(table),
                "splits": {k: int((~v["image_id"].astype(str).isin(dropped)).sum())
                           for k, v in parts.items()},
                "dropped_unreadable": sorted(dropped),
                "data_dir": os.path.relpath(builder.data_dir, out_dir)}
    with open(manifest_path + ".tmp", "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(manifest_path + ".tmp", manifest_path)  # written last: marks completion
    manifest["status"] = "prepared"
    return manifest


def _file(row, table: DatasetTable):
    """The file a row's `_line` refers to: its source's (a merged table's `_file`), else the
    table's."""
    file = row.get("_file") if hasattr(row, "get") else None
    return file if isinstance(file, str) else table.file


def _line(row) -> int | None:
    return int(row["_line"]) if "_line" in row and not pd.isna(row["_line"]) else None


def read_manifest(out_dir: str) -> dict:
    path = os.path.join(out_dir, MANIFEST)
    if not os.path.exists(path):
        raise DataError(f"{out_dir} holds no prepared dataset (no {MANIFEST}); "
                                "run scripts/prepare_data.py first")
    with open(path) as f:
        return json.load(f)


def open_split(out_dir: str, split: str):
    """Random-access source of one prepared split; images stay encoded bytes."""
    tfds = _tfds()
    manifest = read_manifest(out_dir)
    if split not in manifest["splits"]:
        raise DataError(f"no split {split!r} in {out_dir}; it has {sorted(manifest['splits'])}")
    builder = tfds.builder_from_directory(os.path.join(out_dir, manifest["data_dir"]))
    decoders = {"image": tfds.decode.SkipDecoding()}
    if manifest.get("masks"):
        decoders[MASK] = tfds.decode.SkipDecoding()
    return builder.as_data_source(split=split, decoders=decoders)


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
