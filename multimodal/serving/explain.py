"""How much the image and each metadata field moved one prediction.

- Stacked ensemble: XGBoost's own per-prediction feature contributions
  (`pred_contribs=True`: exact TreeSHAP values in the booster's margin, the log-odds of
  each class), summed per group: the member probabilities (`image`, or `member model` when
  the member read metadata too), the lesion context when the stacker uses it, and each
  metadata field (all its encoded columns: one-hot categories, value + missing flag).
  They add up, with the bias, to the top class's margin.
- Fusion heads and late fusion (any other model that reads metadata): the change in the
  top-class probability when each field is masked, i.e. encoded as missing exactly as in
  training (and `metadata_mask` 0 once no field is left): p(top | all given) -
  p(top | that field missing). `all metadata` masks every field at once.
"""

from __future__ import annotations

import numpy as np


def _field(column: str, fields) -> str:
    if column.startswith("p_"):
        return "image"
    if column.startswith("meta:"):
        feature = column[5:]
        for name in fields:
            if (feature in (name, f"{name}_missing") or feature.startswith(f"{name}=")
                    or (feature.startswith(f"{name}_bin") and feature[len(name) + 4:].isdigit())):
                return name  # numeric, categorical one-hot, or binned one-hot column
    return "lesion context"


def fitted_booster(stacker):
    """(the stacker's fitted XGBClassifier, its best iteration or None): the rounds its
    predict_proba uses, so the contributions add up to the margins behind its probabilities."""
    booster = getattr(stacker, "booster_", None) or getattr(stacker, "model", None)
    best = getattr(stacker, "best_iteration_", None)
    if best is None:
        try:
            best = booster.best_iteration
        except AttributeError:  # fitted without early stopping
            best = None
    return booster, best


def stacker_columns(stacker) -> list:
    columns = getattr(stacker, "feature_names_in_", None)
    return list(columns if columns is not None else stacker.columns)


def stacking_contributions(ensemble, member_probs: np.ndarray, rows, targets) -> list[dict]:
    """SHAP values of the stacker for each row's `targets` class, grouped by field."""
    import xgboost as xgb

    table = ensemble.stacker_table(member_probs, rows)
    model, best = fitted_booster(ensemble.stacker)
    kwargs = {} if best is None else {"iteration_range": (0, int(best) + 1)}
    contribs = model.get_booster().predict(xgb.DMatrix(table), pred_contribs=True, **kwargs)
    contribs = np.asarray(contribs).reshape(len(table), len(ensemble.classes), -1)
    fields = list(ensemble.encoder.columns)
    image_name = "image" if not ensemble.members[0].uses_meta else "member model"
    groups = [_field(c, fields) for c in table.columns]
    out = []
    for i, target in enumerate(targets):
        values = contribs[i, target]
        summed: dict[str, float] = {}
        for group, value in zip(groups, values[:-1]):
            name = image_name if group == "image" else group
            summed[name] = summed.get(name, 0.0) + float(value)
        out.append({"method": "xgboost_shap", "class": ensemble.classes[target],
                    "unit": "log-odds (margin) of the top class; the contributions plus the "
                            "bias add up to it",
                    "contributions": summed, "bias": float(values[-1]),
                    "margin": float(values.sum())})
    return out


def masking_contributions(model, pictures, rows, probs: np.ndarray, targets) -> list[dict]:
    """p(top) with all metadata given minus p(top) with each field (and all) masked."""
    variants, index = [], []  # (picture, row), (image index, field or None for all)
    for i, (picture, row) in enumerate(zip(pictures, rows)):
        for name, value in row.items():
            if value is not None:
                variants.append((picture, {**row, name: None}))
                index.append((i, name))
        if any(v is not None for v in row.values()):
            variants.append((picture, {name: None for name in row}))
            index.append((i, None))
    masked = (model.probabilities([v[0] for v in variants], [v[1] for v in variants])
              if variants else np.zeros((0, len(model.classes))))
    out = []
    for i, target in enumerate(targets):
        p = float(probs[i, target])
        contributions = {name: (None if value is None else 0.0) for name, value in rows[i].items()}
        without = p
        for (j, name), q in zip(index, masked):
            if j != i:
                continue
            if name is None:
                without = float(q[target])
            else:
                contributions[name] = p - float(q[target])
        out.append({"method": "metadata_masking", "class": model.classes[target],
                    "unit": "top-class probability minus that with the field masked "
                            "(missing); null: the field was not given",
                    "contributions": contributions, "all_metadata": p - without,
                    "probability_without_metadata": without})
    return out


def explain(model, pictures, rows, probs: np.ndarray, member_probs=None) -> list[dict]:
    """One explanation per prediction of `model` (serving.model / serving.ensemble)."""
    targets = [int(t) for t in probs.argmax(1)]
    if getattr(model, "kind", None) == "stacking":
        return stacking_contributions(model, member_probs, rows, targets)
    if not model.uses_meta:
        return [{"method": "none", "class": model.classes[t],
                 "note": "the model reads no metadata: the prediction is the image's alone"}
                for t in targets]
    return masking_contributions(model, pictures, rows, probs, targets)
