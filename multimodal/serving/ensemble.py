"""An ensemble behind a prediction: member networks combined as the ensemble directory says.

- late fusion: the manifest's convex weights over the members' probabilities
  (`ensemble.late_fusion.combine`);
- stacking: the XGBoost stacker on [member probabilities + metadata encoded by the
  ensemble's encoder] (`ensemble.stacking.stack_inputs`, the table it was fitted on). With
  `group_context` each image is its own group (one image per lesion): at prediction time
  no lesion is known.

Members come from the ensemble's run directories, or from an exported ensemble's
`members/<k>/` exported models (serving/export.py).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from multimodal.data.pipeline.metadata import MetadataEncoder
from multimodal.errors import RunError
from multimodal.serving.model import SingleModel

KINDS = ("late_fusion", "stacking")


class EnsembleModel:
    def __init__(self, kind: str, classes, members: list[SingleModel], source: dict,
                 weights=None, stacker=None, encoder: MetadataEncoder | None = None,
                 group_context: bool = False):
        if kind not in KINDS:
            raise RunError(f"unknown ensemble kind {kind!r} (stacking or late_fusion)")
        for m in members:
            if m.classes != list(classes):
                raise RunError(f"member {m.source.get('path')} has classes {m.classes}, the "
                               f"ensemble {list(classes)}: the member was retrained after the "
                               "ensemble was built")
        self.kind, self.classes, self.members, self.source = kind, list(classes), members, source
        self.weights, self.stacker, self.encoder = weights, stacker, encoder
        self.group_context = group_context

    @property
    def uses_image(self) -> bool:
        return any(m.uses_image for m in self.members)

    @property
    def uses_meta(self) -> bool:
        return bool(self.encoders)

    @property
    def encoders(self) -> list:
        own = [self.encoder] if self.encoder is not None and self.encoder.dim else []
        return [e for m in self.members for e in m.encoders] + own

    @classmethod
    def from_dir(cls, directory: str) -> EnsembleModel:
        """An ensemble directory of scripts/stack.py or scripts/late_fusion.py."""
        from multimodal.ensemble.manifest import read_manifest

        manifest = read_manifest(directory)
        members = [SingleModel.from_run(_path(directory, m)) for m in manifest["members"]]
        return cls._build(directory, manifest, members, {"kind": manifest["kind"], "path":
                                                         os.path.abspath(directory)})

    @classmethod
    def from_export(cls, directory: str, manifest: dict) -> EnsembleModel:
        members = [SingleModel.from_export(os.path.join(directory, m))
                   for m in manifest["members"]]
        ensemble = manifest["ensemble"]
        return cls._build(directory, ensemble, members,
                          {**manifest.get("source", {}), "kind": "exported " + ensemble["kind"],
                           "path": os.path.abspath(directory)})

    @classmethod
    def _build(cls, directory, manifest, members, source) -> EnsembleModel:
        kind, classes = manifest["kind"], manifest["classes"]
        if kind == "late_fusion":
            return cls(kind, classes, members, source, weights=list(manifest["weights"]))
        if kind != "stacking":
            raise RunError(f"{directory}: unknown ensemble kind {kind!r} (stacking or "
                           "late_fusion)")
        from multimodal.ensemble.stacking import Stacker

        try:
            encoder = MetadataEncoder.load(_path(directory, manifest["metadata_encoder"]))
            stacker = Stacker.load(_path(directory, manifest["stacker"]), classes,
                                   manifest["columns"])
        except (OSError, ValueError, KeyError) as exc:
            raise RunError(f"{directory}: the stacker or its encoder is missing or damaged "
                           f"({type(exc).__name__}: {exc})", "build the ensemble again") \
                from None
        return cls(kind, classes, members[:1], source, stacker=stacker, encoder=encoder,
                   group_context=bool(manifest.get("group_context")))

    def member_probabilities(self, pictures, metadata_rows) -> list[np.ndarray]:
        return [m.probabilities(pictures, metadata_rows) for m in self.members]

    def stacker_table(self, member_probs: np.ndarray, metadata_rows) -> pd.DataFrame:
        """The stacker's input rows (the columns it was fitted on, in order)."""
        from multimodal.ensemble.stacking import stack_inputs

        preds = pd.DataFrame(member_probs, columns=[f"prob_{c}" for c in self.classes])
        preds["group_id"] = [f"image_{i}" for i in range(len(preds))]
        raw = pd.DataFrame(list(metadata_rows), columns=list(self.encoder.columns))
        metadata = self.encoder.transform(raw) if self.encoder.dim else None
        return stack_inputs(preds, self.classes, metadata, self.encoder.feature_names,
                            self.group_context)

    def combine(self, member_probs: list[np.ndarray], metadata_rows) -> np.ndarray:
        if self.kind == "late_fusion":
            from multimodal.ensemble.late_fusion import combine

            return combine(member_probs, self.weights)
        return self.stacker.predict_proba(self.stacker_table(member_probs[0], metadata_rows))

    def probabilities(self, pictures, metadata_rows) -> np.ndarray:
        return np.asarray(self.combine(self.member_probabilities(pictures, metadata_rows),
                                       metadata_rows), np.float64)

    def attributions(self, picture, metadata: dict, target: int, steps: int = 16):
        """Saliency of the first member that reads the image, for the ensemble's class."""
        for m in self.members:
            if m.uses_image:
                return m.attributions(picture, metadata, target, steps)
        return None


def _path(directory: str, p: str) -> str:
    return p if os.path.isabs(p) else os.path.join(directory, p)
