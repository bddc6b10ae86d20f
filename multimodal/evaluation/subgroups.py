"""Metrics by subgroup (dataset source, sex, age band, localization, Fitzpatrick type,
X-ray view)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from multimodal.evaluation.scoring import point_metrics

SUBGROUP_COLUMNS = ("sex", "age_band", "localization", "fitzpatrick", "view")
# the dataset a row came from: a subgroup when the rows come from more than one (data.sources)
SOURCE_COLUMN = "source"
AGE_BANDS = [0, 30, 45, 60, 75, 200]
GAP_FLAG = 0.05  # a subgroup this much below the overall balanced accuracy is flagged


def add_age_band(frame: pd.DataFrame) -> pd.DataFrame:
    if "age" not in frame.columns:
        return frame
    age = pd.to_numeric(frame["age"], errors="coerce")
    labels = ["<30", "30-44", "45-59", "60-74", "75+"]
    band = pd.cut(age, AGE_BANDS, right=False, labels=labels).astype(object)
    return frame.assign(age_band=band.where(age.notna(), "missing"))


def subgroup_tables(frame: pd.DataFrame, labels, probs, min_size: int = 10) -> dict:
    """{column: [rows]} with n, metrics and the gap to the overall balanced accuracy."""
    frame = add_age_band(frame.reset_index(drop=True))
    overall = point_metrics(labels, probs)["balanced_accuracy"]
    tables = {}
    for column in (SOURCE_COLUMN, *SUBGROUP_COLUMNS):
        if column not in frame.columns:
            continue
        if column == SOURCE_COLUMN and frame[column].nunique() < 2:
            continue  # one dataset: the overall numbers
        values = frame[column].astype(object).where(frame[column].notna(), "missing").astype(str)
        rows = []
        for value in sorted(values.unique()):
            sel = (values == value).to_numpy()
            if sel.sum() < min_size:
                rows.append({"value": value, "n": int(sel.sum()), "note": f"fewer than {min_size}"})
                continue
            m = point_metrics(labels[sel], probs[sel])
            gap = m["balanced_accuracy"] - overall
            rows.append({"value": value, "n": int(sel.sum()), "accuracy": m["accuracy"],
                         "balanced_accuracy": m["balanced_accuracy"], "macro_auc": m["macro_auc"],
                         "gap": gap, "flagged": bool(gap < -GAP_FLAG)})
        tables[column] = rows
    return tables


def subgroup_markdown(tables: dict) -> str:
    out = []
    for column, rows in tables.items():
        out += [f"### By {column}", "", "| value | n | accuracy | balanced acc. | macro AUC | gap |",
                "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in rows:
            if "note" in r:
                out.append(f"| {r['value']} | {r['n']} | ({r['note']}) | | | |")
                continue
            flag = " **flagged**" if r["flagged"] else ""
            auc = "n/a" if np.isnan(r["macro_auc"]) else f"{r['macro_auc']:.3f}"
            out.append(f"| {r['value']} | {r['n']} | {r['accuracy']:.3f} | "
                       f"{r['balanced_accuracy']:.3f} | {auc} | {r['gap']:+.3f}{flag} |")
        out.append("")
    return "\n".join(out)
