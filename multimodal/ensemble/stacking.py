"""XGBoost stacking: [member class probabilities + encoded metadata (+ group context)].

Inputs per image: the member's class probabilities, then the metadata as the member run's
encoder writes it (standardised numbers with missing flags, one-hot categories). Optional
group context (off by default): the group's (lesion's or patient's) mean probabilities,
the image's difference from them and the group size. In HAM10000 that is a label proxy:
how many images a lesion has is a curation artefact that differs by diagnosis (like
dx_type), so it flatters the numbers on HAM10000 and need not transfer elsewhere.

The stacking rows are cut into three grouped, stratified parts: the booster is fitted
(class-balanced weights) on 80%, early-stopped on 10%, and the last 10% stays held out
for calibration and the operating point in evaluation (never fitted or stopped on).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.utils.class_weight import compute_sample_weight

from multimodal.ensemble.members import prob_columns
from multimodal.errors import DataError, RunError

DEFAULT_PARAMS = {"n_estimators": 2000, "learning_rate": 0.03, "max_depth": 3,
                  "subsample": 0.8, "colsample_bytree": 0.8, "min_child_weight": 2.0,
                  "reg_lambda": 1.0, "tree_method": "hist", "early_stopping_rounds": 100}


GROUP_CONTEXT_WARNING = (
    "group context is on (how many images each lesion has, the lesion's mean probabilities): "
    "a label proxy in HAM10000, where the images per lesion are a curation artefact that "
    "differs by diagnosis, like dx_type; it inflates the numbers there and need not transfer "
    "to data curated otherwise")


class LabelProxyWarning(UserWarning):
    """A feature that stands in for the label in some dataset was turned on."""


def stack_inputs(preds: pd.DataFrame, classes, metadata: np.ndarray | None,
                 metadata_names=(), group_context: bool = False) -> pd.DataFrame:
    """The stacker's input table, one row per row of `preds` (same order).

    `group_context` adds per-group mean probabilities, differences from them and the
    group size; it warns (`LabelProxyWarning`): in HAM10000 it is a label proxy.
    """
    probs = preds[prob_columns(classes)].reset_index(drop=True)
    parts = [probs.rename(columns=lambda c: "p_" + c[5:])]
    if group_context:
        warnings.warn(GROUP_CONTEXT_WARNING, LabelProxyWarning, stacklevel=2)
        groups = preds["group_id"].reset_index(drop=True)
        mean = probs.groupby(groups).transform("mean")
        parts += [mean.rename(columns=lambda c: "group_mean_" + c[5:]),
                  (probs - mean).rename(columns=lambda c: "vs_group_" + c[5:]),
                  groups.map(groups.value_counts()).rename("group_images").astype(float)]
    if metadata is not None and metadata.shape[1]:
        parts.append(pd.DataFrame(metadata, columns=[f"meta:{n}" for n in metadata_names]))
    return pd.concat(parts, axis=1)


def inner_validation(labels, groups, seed: int,
                     k: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices (fit, early stopping, calibration) of the stacking rows: two grouped,
    stratified folds of `k` are held out, one to early-stop on and one kept for
    calibration; the other k-2 folds are fitted on."""
    n_groups = len(np.unique(groups))
    k = min(k, n_groups)
    if k < 3:
        raise DataError(f"the stacking rows hold {n_groups} group(s); fitting, early stopping "
                        "and calibration need at least 3")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # rare classes cannot reach every fold; that is expected
        warnings.filterwarnings("ignore", message="The least populated class")
        folds = [idx for _, idx in splitter.split(np.zeros(len(labels)), labels, groups)]
    stop, calibration = np.sort(folds[0]), np.sort(folds[1])
    fit = np.sort(np.concatenate(folds[2:]))
    return fit, stop, calibration


FORMAT = "multimodal.Stacker/1"
STATE = "multimodal_stacker"  # the booster attribute (saved in the UBJ) holding get_params
# and the fitted attributes, as JSON


class Stacker:
    """fit / predict_proba over a stacking table, in scikit-learn's conventions; saved as
    XGBoost UBJ.

    Parameters (`get_params`): `classes` (names, in label-index order), `seed`, and XGBoost
    parameters over DEFAULT_PARAMS. Fitted attributes, set by `fit` and restored by `load`:
    `booster_` (the fitted XGBClassifier), `classes_` (the columns of predict_proba),
    `feature_names_in_`, `n_features_in_` (the input columns, checked at predict time),
    `best_iteration_` (boosting rounds kept by early stopping, 0-based), `rows_` (row indices
    of the stacking table: `fit`, `early_stopping`, `calibration`) and `calibration_rows_`
    (those never fitted or early-stopped on).
    """

    def __init__(self, classes, seed: int = 0, **params):
        self.classes, self.seed = list(classes), seed
        self.params = {**DEFAULT_PARAMS, **params}

    def get_params(self, deep: bool = True) -> dict:
        return {"classes": self.classes, "seed": self.seed, **self.params}

    def _booster(self):
        from xgboost import XGBClassifier

        return XGBClassifier(objective="multi:softprob", eval_metric="mlogloss",
                             random_state=self.seed, n_jobs=2, **self.params)

    def fit(self, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray) -> Stacker:
        _check_frame(X)
        y = np.asarray(y)
        missing = sorted(set(range(len(self.classes))) - set(np.unique(y)))
        if missing:
            raise DataError(f"stacking rows lack classes {[self.classes[i] for i in missing]}")
        fit_idx, stop_idx, calibration_idx = inner_validation(y, groups, self.seed)
        absent = sorted(set(range(len(self.classes))) - set(np.unique(y[fit_idx])))
        if absent:
            raise DataError(f"the stacker's fitting rows lack classes "
                            f"{[self.classes[i] for i in absent]}: too few groups of them in "
                            "the development rows")
        booster = self._booster()
        weights = compute_sample_weight("balanced", y)
        booster.fit(X.iloc[fit_idx], y[fit_idx], sample_weight=weights[fit_idx],
                    eval_set=[(X.iloc[stop_idx], y[stop_idx])],
                    sample_weight_eval_set=[weights[stop_idx]], verbose=False)
        self._set_fitted(booster, self.classes, X.columns, {
            "fit": fit_idx, "early_stopping": stop_idx, "calibration": calibration_idx})
        return self

    def _set_fitted(self, booster, classes, columns, rows) -> None:
        self.booster_ = booster
        self.classes_ = np.asarray(classes, dtype=object)
        self.feature_names_in_ = np.asarray(columns, dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        try:
            self.best_iteration_ = int(booster.best_iteration)
        except AttributeError:  # fitted without early stopping
            self.best_iteration_ = None
        self.rows_ = None if rows is None else {k: np.asarray(v, dtype=np.int64)
                                                for k, v in rows.items()}
        self.calibration_rows_ = None if rows is None else self.rows_["calibration"]

    def _check_fitted(self) -> None:
        if not hasattr(self, "booster_"):
            raise NotFittedError("this Stacker is not fitted yet: call fit, or Stacker.load "
                                 "a saved one")

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Class probabilities, one column per `classes_`; X must hold exactly the columns
        the stacker was fitted on (`feature_names_in_`), in that order."""
        self._check_fitted()
        _check_frame(X)
        fitted, given = list(self.feature_names_in_), list(X.columns)
        if given != fitted:
            missing = [c for c in fitted if c not in set(given)]
            extra = [c for c in given if c not in set(fitted)]
            what = ([f"missing {_few(missing)}"] if missing else []) + \
                ([f"not fitted on {_few(extra)}"] if extra else [])
            raise RunError(f"stacking inputs differ from the fitted columns "
                           f"(feature_names_in_): {'; '.join(what) or 'another order'}")
        return self.booster_.predict_proba(X)

    def save(self, path: str) -> None:
        """XGBoost UBJ (or JSON, by the suffix); the parameters and fitted attributes go
        into the model file's attributes, so `load` restores them."""
        self._check_fitted()
        state = {"format": FORMAT, "params": self.get_params(),
                 "classes_": list(self.classes_),
                 "feature_names_in_": list(self.feature_names_in_),
                 "rows_": None if self.rows_ is None else {k: v.tolist()
                                                           for k, v in self.rows_.items()}}
        booster = self.booster_.get_booster()
        booster.set_attr(**{STATE: json.dumps(state, default=_plain)})
        try:
            self.booster_.save_model(path)
        finally:
            booster.set_attr(**{STATE: None})

    @classmethod
    def load(cls, path: str, classes=None, columns=None) -> Stacker:
        """A saved Stacker, parameters and fitted attributes as they were. `classes` and
        `columns` (the manifest's), when given, must match the saved ones; a model file
        saved without them (before the Stacker stored its state) needs both."""
        from xgboost import Booster

        raw = Booster(model_file=path).attr(STATE)
        if raw is None:
            if classes is None or columns is None:
                raise RunError(f"{path} holds no Stacker parameters: pass its classes and "
                               "columns (manifest.json's)")
            state = {"params": {"classes": list(classes)}, "classes_": list(classes),
                     "feature_names_in_": list(columns), "rows_": None}
        else:
            state = json.loads(raw)
            if state.get("format") != FORMAT:
                raise RunError(f"{path}: unknown Stacker format {state.get('format')!r}")
        stacker = cls(**state["params"])
        booster = stacker._booster()
        booster.load_model(path)
        booster.get_booster().set_attr(**{STATE: None})
        stacker._set_fitted(booster, state["classes_"], state["feature_names_in_"],
                            state["rows_"])
        for name, given, saved in (("classes", classes, stacker.classes_),
                                   ("columns", columns, stacker.feature_names_in_)):
            if given is not None and list(given) != list(saved):
                raise RunError(f"{path} was fitted with other {name} than given: "
                               f"{_few(list(saved))} vs {_few(list(given))}",
                               "rebuild the ensemble with scripts/stack.py")
        return stacker


def _check_frame(X) -> None:
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"the Stacker takes a DataFrame of named columns, not "
                        f"{type(X).__name__}")


def _few(names: list, k: int = 8) -> str:
    return str(names[:k])[:-1] + f", ... ({len(names)} in all)]" if len(names) > k else str(names)


def _plain(value):
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
