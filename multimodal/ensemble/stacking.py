"""XGBoost stacking: [member class probabilities + per-group context + encoded metadata].

Inputs per image: the member's class probabilities; where a group (lesion or patient)
has several images, the group's mean probabilities and the image's difference from them,
and the group size; then the metadata as the member run's encoder writes it (standardised
numbers with missing flags, one-hot categories). The booster is fitted on out-of-fold
rows with class-balanced weights and early stopping on a grouped inner validation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.utils.class_weight import compute_sample_weight

from multimodal.ensemble.members import prob_columns

DEFAULT_PARAMS = {"n_estimators": 2000, "learning_rate": 0.03, "max_depth": 3,
                  "subsample": 0.8, "colsample_bytree": 0.8, "min_child_weight": 2.0,
                  "reg_lambda": 1.0, "tree_method": "hist", "early_stopping_rounds": 100}


def stack_inputs(preds: pd.DataFrame, classes, metadata: np.ndarray | None,
                 metadata_names=(), group_context: bool = True) -> pd.DataFrame:
    """The stacker's input table, one row per row of `preds` (same order)."""
    probs = preds[prob_columns(classes)].reset_index(drop=True)
    parts = [probs.rename(columns=lambda c: "p_" + c[5:])]
    if group_context:
        groups = preds["group_id"].reset_index(drop=True)
        mean = probs.groupby(groups).transform("mean")
        parts += [mean.rename(columns=lambda c: "group_mean_" + c[5:]),
                  (probs - mean).rename(columns=lambda c: "vs_group_" + c[5:]),
                  groups.map(groups.value_counts()).rename("group_images").astype(float)]
    if metadata is not None and metadata.shape[1]:
        parts.append(pd.DataFrame(metadata, columns=[f"meta:{n}" for n in metadata_names]))
    return pd.concat(parts, axis=1)


def inner_validation(labels, groups, seed: int, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """One grouped, stratified fold of the stacking rows for early stopping."""
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return next(splitter.split(np.zeros(len(labels)), labels, groups))


class Stacker:
    """fit / predict_proba over a stacking table; saved as XGBoost UBJ."""

    def __init__(self, classes, seed: int = 0, **params):
        self.classes, self.seed = list(classes), seed
        self.params = {**DEFAULT_PARAMS, **params}
        self.model = None
        self.columns: list[str] = []

    def _booster(self):
        from xgboost import XGBClassifier

        return XGBClassifier(objective="multi:softprob", eval_metric="mlogloss",
                             random_state=self.seed, n_jobs=2, **self.params)

    def fit(self, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray) -> Stacker:
        missing = sorted(set(range(len(self.classes))) - set(np.unique(y)))
        if missing:
            raise ValueError(f"stacking rows lack classes {[self.classes[i] for i in missing]}")
        fit_idx, val_idx = inner_validation(y, groups, self.seed)
        self.columns = list(X.columns)
        self.model = self._booster()
        weights = compute_sample_weight("balanced", y)
        self.model.fit(X.iloc[fit_idx], y[fit_idx], sample_weight=weights[fit_idx],
                       eval_set=[(X.iloc[val_idx], y[val_idx])],
                       sample_weight_eval_set=[weights[val_idx]], verbose=False)
        self.inner_val = val_idx
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if list(X.columns) != self.columns:
            raise ValueError(f"stacking inputs {list(X.columns)[:5]}... differ from the fitted "
                             f"columns {self.columns[:5]}...")
        return self.model.predict_proba(X)

    @property
    def best_iteration(self) -> int:
        return int(self.model.best_iteration)

    def save(self, path: str) -> None:
        self.model.save_model(path)  # .ubj / .json: XGBoost's documented formats

    @classmethod
    def load(cls, path: str, classes, columns) -> Stacker:
        stacker = cls(classes)
        stacker.model = stacker._booster()
        stacker.model.load_model(path)
        stacker.columns = list(columns)
        return stacker
