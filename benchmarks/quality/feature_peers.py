"""A plain peer for heads on frozen features: class-weighted logistic regression (scikit-learn)
on the very same cached features and split, its C chosen on the validation rows.

A trained head that does not at least match this leaves accuracy on the table. Used by
benchmarks/quality/ensembles.py; writes a metrics.json in evaluate.py's format.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd


def split_features(features_dir: str, split_csv: str):
    """Mean-over-views features and labels of each split, in the split file's row order."""
    ids = pd.read_csv(os.path.join(features_dir, "images.csv"), dtype=str)["image_id"]
    row = {i: n for n, i in enumerate(ids)}
    features = np.load(os.path.join(features_dir, "features.npy"), mmap_mode="r",
                       allow_pickle=False)
    split = pd.read_csv(split_csv, dtype=str)
    out = {}
    for name, part in split.groupby("split"):
        x = np.asarray(features[[row[i] for i in part["image_id"]]], np.float32).mean(1)
        out[name] = (x.reshape(len(x), -1), part["label"].to_numpy(), part["group_id"].to_numpy())
    return out


def logistic_regression(features_dir: str, split_csv: str, classes, out_dir: str,
                        grid=(0.01, 0.03, 0.1, 0.3, 1.0), n_boot: int = 1000) -> str:
    """Fit on train for each C, keep the best validation balanced accuracy, score test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.preprocessing import StandardScaler

    from multimodal.evaluation.scoring import evaluate_predictions

    parts = split_features(features_dir, split_csv)
    (x_train, y_train, _), (x_val, y_val, _) = parts["train"], parts["val"]
    x_test, y_test, g_test = parts["test"]
    scaler = StandardScaler().fit(x_train)
    index = {c: k for k, c in enumerate(classes)}
    y_train, y_val, y_test = ([index[c] for c in y] for y in (y_train, y_val, y_test))
    best = None
    for c in grid:
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
        model.fit(scaler.transform(x_train), y_train)
        score = balanced_accuracy_score(y_val, model.predict(scaler.transform(x_val)))
        if best is None or score > best[0]:
            best = (score, c, model)
    score, c, model = best
    probs = np.zeros((len(x_test), len(classes)))  # columns in the runs' class order, also
    probs[:, model.classes_] = model.predict_proba(scaler.transform(x_test))  # if one is absent
    result = evaluate_predictions(np.asarray(y_test), probs, g_test, list(classes), n_boot)
    result["chosen"] = {"C": c, "val_balanced_accuracy": score, "grid": list(grid)}
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "metrics.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    return path
