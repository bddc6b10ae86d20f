"""Exploratory summary of a dataset table: plots and a markdown page."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from multimodal.data.split.grouped import content_hashes  # noqa: E402
from multimodal.data.table import DatasetTable  # noqa: E402


def _bar(series: pd.Series, title: str, path: str, horizontal: bool = False) -> None:
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(series) + 1.5) if horizontal else (7, 4))
    (series.plot.barh if horizontal else series.plot.bar)(ax=ax, color="#4878a8")
    ax.set_title(title)
    for i, v in enumerate(series.values):
        if horizontal:
            ax.text(v, i, f" {v}", va="center", fontsize=8)
        else:
            ax.text(i, v, f"{v}", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table_md(series: pd.Series, name: str) -> str:
    total = series.sum()
    rows = [f"| {name} | count | share |", "| --- | ---: | ---: |"]
    rows += [f"| {k} | {v} | {v / total:.1%} |" for k, v in series.items()]
    return "\n".join(rows)


def frame_markdown(frame: pd.DataFrame) -> str:
    """A DataFrame as a markdown table (index as the first column)."""
    head = [str(frame.index.name or "")] + [str(c) for c in frame.columns]
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for key, values in frame.iterrows():
        rows.append("| " + " | ".join([str(key)] + [str(v) for v in values]) + " |")
    return "\n".join(rows)


def explore(table: DatasetTable, out_dir: str, hash_images: bool = True) -> str:
    """Write PNG plots and `summary.md` to `out_dir`; return the summary path."""
    os.makedirs(out_dir, exist_ok=True)
    frame = table.frame
    lines = [f"# {table.name}: data exploration", "",
             f"{len(frame)} images, {frame['group_id'].nunique()} groups, "
             f"{len(table.classes)} classes.", ""]

    counts = frame["label"].value_counts().reindex(table.classes, fill_value=0)
    _bar(counts, "Images per class", os.path.join(out_dir, "classes.png"), len(counts) > 12)
    imbalance = counts.max() / max(counts.min(), 1)
    lines += ["## Classes", "", _table_md(counts, "class"), "",
              f"Largest/smallest class ratio: {imbalance:.1f}. ![classes](classes.png)", ""]

    per_group = frame.groupby("group_id").size()
    _bar(per_group.value_counts().sort_index(), "Images per group",
         os.path.join(out_dir, "images_per_group.png"))
    lines += ["## Groups", "",
              f"{(per_group > 1).sum()} of {len(per_group)} groups have several images "
              f"(max {per_group.max()}); they must stay on one side of every split. "
              "![groups](images_per_group.png)", ""]

    if "age" in frame.columns:
        age = pd.to_numeric(frame["age"], errors="coerce")
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.hist(age.dropna(), bins=20, color="#4878a8")
        ax.set_title(f"Age ({age.isna().sum()} missing)")
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "age.png"), dpi=110)
        plt.close(fig)
        lines += ["## Age", "", f"median {age.median():g}, range {age.min():g}-{age.max():g}, "
                  f"{age.isna().sum()} missing. ![age](age.png)", ""]
    for column in ("sex", "localization", "view", "fitzpatrick"):
        if column not in frame.columns:
            continue
        text = frame[column].astype(object).where(frame[column].notna(), "missing").astype(str)
        values = text.value_counts()
        _bar(values, column.capitalize(), os.path.join(out_dir, f"{column}.png"), len(values) > 6)
        lines += [f"## {column.capitalize()}", "", _table_md(values, column), "",
                  f"![{column}]({column}.png)", ""]
        by_class = pd.crosstab(text, frame["label"])
        lines += [f"Images by {column} and class:", "", frame_markdown(by_class), ""]

    if hash_images and frame["image_path"].map(os.path.exists).all():
        digest = pd.Series(content_hashes(frame["image_path"].tolist()), index=frame.index)
        dup = frame[digest.duplicated(keep=False)].assign(sha256=digest)
        lines += ["## Identical images", ""]
        if dup.empty:
            lines.append("No two image files are byte-identical.")
        else:
            lines.append(f"{len(dup)} images share their bytes with another image id "
                         "(kept on one side of every split by the leak check):")
            for _, rows in dup.groupby("sha256"):
                lines.append("- " + ", ".join(f"{i} (group {g})" for i, g in
                                             zip(rows["image_id"], rows["group_id"])))
        lines.append("")
    path = os.path.join(out_dir, "summary.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path
