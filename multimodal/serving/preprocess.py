"""A run's exact input preprocessing, for pictures and metadata given at prediction time.

Each picture goes the way a training image goes (multimodal.data): RGB -> the stored form
for the run's geometry and size (`geometry.for_storage`) encoded like a prepared record
(JPEG, quality 95) -> the evaluation `ExampleLoader` (deterministic preprocessing ops,
`geometry.fit`, the run's normaliser; the metadata encoded by the run's fitted encoder,
`metadata_mask` 0 when every field is missing). Nothing is re-implemented here but the
record: the loader is the one training and evaluation use.

`Preprocessing` is also what an exported model stores (`to_dict` / `from_dict`), so the
exported artifact preprocesses without the run's config.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
from PIL import Image

from multimodal.data.images import geometry as geometry_lib
from multimodal.data.images.augment import parse_ops
from multimodal.data.pipeline.metadata import MetadataEncoder
from multimodal.data.pipeline.loaders import ExampleLoader, Normalizer
from multimodal.serving.images import ImageInputError

RECORD_ENCODING = "jpeg"  # what prepare.prepare writes for every run (its default)
RECORD_QUALITY = 95  # prepare.encode_image's JPEG quality
JPEG_MAX_SIDE = 65_535  # the longest side a JPEG record can have


@dataclasses.dataclass
class Preprocessing:
    image_size: int | list  # a square's side or [height, width]
    geometry: str
    ops: list  # the run's deterministic (non-random) augmentation ops, config form
    normalizer: Normalizer
    meta_encoder: MetadataEncoder
    uses_image: bool = True
    uses_meta: bool = True
    image_dtype: str = "float32"  # "bfloat16" for a bf16 model
    encoding: str = RECORD_ENCODING
    seed: int = 0

    @classmethod
    def from_config(cls, cfg, normalizer, meta_encoder) -> Preprocessing:
        from multimodal.data.pipeline.inputs import preprocessing_ops

        ops = [{name: dict(options)} for name, options in preprocessing_ops(cfg)]
        dtype = "bfloat16" if cfg.model.dtype == "bfloat16" else "float32"
        return cls(cfg.data.image_size, cfg.data.geometry, ops, normalizer, meta_encoder,
                   cfg.uses_image, cfg.uses_meta, dtype, seed=cfg.train.seed)

    @property
    def metadata_kinds(self) -> dict:
        return dict(self.meta_encoder.columns)

    def image_shape(self) -> tuple:
        return (*geometry_lib.hw(self.image_size), 3) if self.uses_image else (1, 1, 3)

    def _record(self, picture: Image.Image | None, metadata: dict, index: int) -> dict:
        record = {"label": np.int32(0), "image_id": str(index).encode(), "group_id": b""}
        if picture is not None and self.uses_image:
            self.check_storable(*picture.size)
            stored = geometry_lib.for_storage(picture.convert("RGB"), self.image_size,
                                              self.geometry)
            buf = io.BytesIO()
            stored.save(buf, format="JPEG" if self.encoding == "jpeg" else "PNG",
                        quality=RECORD_QUALITY)
            record["image"] = buf.getvalue()
        else:
            record["image"] = b""
        for name, kind in self.metadata_kinds.items():
            value = metadata.get(name)
            record[f"meta_{name}"] = ((b"" if value is None else str(value).encode())
                                      if kind == "categorical" else
                                      np.float32(np.nan if value is None else float(value)))
        return record

    def check_storable(self, w: int, h: int, name: str | None = None) -> None:
        """A strip (allowed by a raised aspect limit) whose short-side resize (`crop`) is
        too long for the JPEG record is refused before the resize allocates it."""
        th, tw = geometry_lib.hw(self.image_size)
        if self.geometry == "crop" and max(w * th, h * tw) > JPEG_MAX_SIDE * min(w, h):
            raise ImageInputError(f"the image is {w}x{h}: scaled to cover the model's "
                                  f"{th}x{tw} px input it would be longer than "
                                  f"{JPEG_MAX_SIDE:,} px", 422, name, "crop it to the lesion")

    def batch(self, pictures, metadata_rows) -> dict:
        """{"image" [B,H,W,3], "metadata" [B,D], "metadata_mask" [B]} as the model reads them.

        `metadata_rows`: one {field: checked value or None} per picture (fields.parse_metadata).
        """
        records = [self._record(p, m, i) for i, (p, m) in enumerate(zip(pictures, metadata_rows))]
        loader = ExampleLoader(records, ["_"], self.meta_encoder, self.metadata_kinds,
                               self.ops, self.image_size, self.normalizer, train=False,
                               seed=self.seed, images=self.uses_image, geometry=self.geometry,
                               image_dtype=_dtype(self.image_dtype))
        examples = [loader((i, i)) for i in range(len(records))]
        return {key: np.stack([ex[key] for ex in examples])
                for key in ("image", "metadata", "metadata_mask")}

    def shown(self, image: np.ndarray) -> np.ndarray:
        """A normalised model input back to uint8 pixels (for overlays)."""
        pixels = np.asarray(image, np.float32) * np.float32(self.normalizer.std) + \
            np.float32(self.normalizer.mean)
        return np.clip(pixels, 0, 255).astype(np.uint8)

    def to_dict(self) -> dict:
        return {"image_size": self.image_size, "geometry": self.geometry, "ops": self.ops,
                "normalizer": self.normalizer.to_dict(), "uses_image": self.uses_image,
                "uses_meta": self.uses_meta,
                "image_dtype": self.image_dtype, "encoding": self.encoding,
                "jpeg_quality": RECORD_QUALITY, "seed": self.seed}

    @classmethod
    def from_dict(cls, data: dict, meta_encoder: MetadataEncoder) -> Preprocessing:
        parse_ops(data["ops"])  # a bad op name fails here, not mid-request
        size = data["image_size"]
        size = [int(v) for v in size] if isinstance(size, list) else int(size)
        return cls(size, geometry_lib.check(data["geometry"]),
                   list(data["ops"]), Normalizer.from_dict(data["normalizer"]), meta_encoder,
                   bool(data["uses_image"]), bool(data["uses_meta"]), data["image_dtype"],
                   data["encoding"], int(data.get("seed", 0)))


def _dtype(name: str):
    if name == "bfloat16":
        import jax.numpy as jnp

        return jnp.bfloat16
    return np.float32
