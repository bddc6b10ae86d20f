"""One `Predictor` over a run directory, an ensemble directory or an exported model.

    predictor = Predictor.open("runs/demo")               # or an ensemble, or model/
    rows = [predictor.check_metadata({"age": "54", "sex": "female"})]
    [result] = predictor.predict([picture], rows, explain=True, saliency=True)

Pictures are RGB `PIL.Image`s (serving/images.py turns untrusted bytes into them);
metadata rows are checked against the model's vocabulary (serving/fields.py) and missing
fields are encoded as missing, as in training. Preprocessing is the run's own
(serving/preprocess.py). The model is loaded once; predictions from several threads are
safe (each network runs one call at a time).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from multimodal.errors import RunError
from multimodal.serving import explain as explain_lib
from multimodal.serving.fields import parse_metadata, vocabulary
from multimodal.serving.model import SingleModel, is_export, read_export_manifest
from multimodal.run.layout import is_run

DISCLAIMER = ("Research tool, not a diagnosis: these probabilities come from a model trained "
              "on a small public dataset and have not been validated for clinical use. See a "
              "dermatologist about any lesion that worries you.")


@dataclasses.dataclass
class Prediction:
    probabilities: dict  # class -> probability
    top_class: str
    top_probability: float
    metadata: dict  # the checked values the model read (None: missing)
    explanation: dict | None = None
    saliency: tuple | None = None  # (model input uint8 [H,W,3], attribution [H,W])

    def to_dict(self) -> dict:
        return {"top_class": self.top_class, "top_probability": self.top_probability,
                "probabilities": self.probabilities, "metadata": self.metadata,
                **({"explanation": self.explanation} if self.explanation else {})}


class Predictor:
    def __init__(self, model, path: str):
        self.model, self.path = model, path
        self.classes = list(model.classes)
        self.vocabulary = vocabulary(*model.encoders)

    @classmethod
    def open(cls, path: str) -> Predictor:
        """A run directory (train.py), an ensemble (stack.py, late_fusion.py) or an
        exported model (export.py)."""
        from multimodal.serving.ensemble import EnsembleModel

        if not os.path.isdir(path):
            raise RunError(f"no model directory {path}",
                           "pass a run folder (scripts/train.py --workdir), an ensemble folder "
                           "or an exported model (scripts/export.py --out)")
        if is_export(path):
            manifest = read_export_manifest(path)
            if manifest.get("kind") == "ensemble":
                return cls(EnsembleModel.from_export(path, manifest), path)
            return cls(SingleModel.from_export(path), path)
        if os.path.exists(os.path.join(path, "manifest.json")):
            return cls(EnsembleModel.from_dir(path), path)
        if is_run(path):
            return cls(SingleModel.from_run(path), path)
        raise RunError(f"{path} holds no run (config.yaml), ensemble or exported model "
                       "(manifest.json)",
                       "pass a folder written by scripts/train.py, stack.py, late_fusion.py "
                       "or export.py")

    @property
    def uses_image(self) -> bool:
        return self.model.uses_image

    @property
    def kind(self) -> str:
        return self.model.source.get("kind", "run")

    def describe(self) -> dict:
        """What a client needs: classes, metadata vocabulary, what the model is."""
        explanation = ("xgboost_shap" if getattr(self.model, "kind", "") == "stacking" else
                       "metadata_masking" if self.model.uses_meta else "none")
        return {"kind": self.kind, "classes": self.classes, "metadata": self.vocabulary,
                "uses_image": self.uses_image, "uses_metadata": bool(self.vocabulary),
                "explanation": explanation, "source": self.model.source,
                "disclaimer": DISCLAIMER}

    def check_picture(self, picture, name: str | None = None) -> None:
        """Refuse (naming `name`) a picture some network's preprocessing cannot store."""
        for network in getattr(self.model, "members", [self.model]):
            network.prep.check_storable(*picture.size, name)

    def check_metadata(self, given: dict, strict: bool = True) -> dict:
        return parse_metadata(given, self.vocabulary, strict)

    def predict(self, pictures, rows, explain: bool = False, saliency: bool = False,
                saliency_steps: int = 16) -> list[Prediction]:
        """One `Prediction` per picture; `rows` from `check_metadata`."""
        pictures, rows = list(pictures), [dict(r) for r in rows]
        if len(pictures) != len(rows):
            raise ValueError(f"{len(pictures)} pictures for {len(rows)} metadata rows")
        if not pictures:
            return []
        member_probs = None
        if hasattr(self.model, "member_probabilities"):
            members = self.model.member_probabilities(pictures, rows)
            probs = np.asarray(self.model.combine(members, rows), np.float64)
            member_probs = members[0]
        else:
            probs = self.model.probabilities(pictures, rows)
        explanations = (explain_lib.explain(self.model, pictures, rows, probs, member_probs)
                        if explain else [None] * len(pictures))
        out = []
        for i, (p, row) in enumerate(zip(probs, rows)):
            top = int(p.argmax())
            maps = (self.model.attributions(pictures[i], row, top, saliency_steps)
                    if saliency else None)
            out.append(Prediction({c: float(v) for c, v in zip(self.classes, p)},
                                  self.classes[top], float(p[top]), row, explanations[i], maps))
        return out
