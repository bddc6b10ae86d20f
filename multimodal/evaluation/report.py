"""report.md and a self-contained report.html (plots embedded as base64 PNG)."""

from __future__ import annotations

import base64
import html
import math
import os
import re


def _fmt(value, ci=None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{value:.3f}"
    if ci:
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return text


def metrics_markdown(result: dict) -> str:
    rows = ["| metric | value [95% CI] |", "| --- | --- |"]
    order = ["balanced_accuracy", "accuracy", "macro_auc", "macro_f1", "weighted_f1",
             "macro_precision", "macro_recall", "log_loss", "ece"]
    for key in order:
        m = result["metrics"][key]
        rows.append(f"| {key.replace('_', ' ')} | {_fmt(m['value'], m['ci95'])} |")
    return "\n".join(rows)


def per_class_markdown(result: dict) -> str:
    rows = ["| class | support | recall (sensitivity) [95% CI] | precision | specificity | AUC "
            "[95% CI] | F1 |", "| --- | ---: | --- | ---: | ---: | --- | ---: |"]
    for r in result["per_class"]:
        rows.append(f"| {r['class']} | {r['support']} | {_fmt(r['recall'], r['recall_ci95'])} | "
                    f"{_fmt(r['precision'])} | {_fmt(r['specificity'])} | "
                    f"{_fmt(r['auc'], r['auc_ci95'])} | {_fmt(r['f1'])} |")
    return "\n".join(rows)


def evaluation_markdown(ctx, outputs) -> str:
    """report.md: what was evaluated (from the context), then each evaluator's section in
    list order, then every evaluator's notes as a bullet list."""
    info = ctx.info
    lines = ["# Evaluation report", "",
             f"Checkpoint `{info['checkpoint']}` (step {info['step'] or '-'}, modality "
             f"`{info['modality']}`), data: {info['data']}, split `{info['split']}`, "
             f"TTA {'on' if info['tta'] else 'off'}: {len(ctx.preds)} images of "
             f"{ctx.n_groups} groups.", ""]
    if info.get("init_from"):
        lines += [f"The run {info['init_from']}.", ""]
    if ctx.shared_rows:
        lines += ["**Calibration on the same rows:** temperature scaling and the operating "
                  "point below were fitted on the rows they are reported on "
                  "(`calibration_on_same_rows: true` in metrics.json).", ""]
    for out in outputs:
        lines += out.section
    lines += [f"- {note}" for out in outputs for note in out.notes]
    return "\n".join(lines) + "\n"


def markdown_to_html(text: str, folder: str) -> str:
    """Just enough markdown (headings, tables, images, paragraphs) for our own reports."""
    out, table = [], []

    def flush_table():
        if table:
            cells = [[c.strip() for c in r.strip("|").split("|")] for r in table
                     if not re.match(r"^\|\s*-", r)]
            body = "".join("<tr>" + "".join(f"<{'th' if i == 0 else 'td'}>{_inline(c)}</"
                                            f"{'th' if i == 0 else 'td'}>" for c in row) + "</tr>"
                           for i, row in enumerate(cells))
            out.append(f"<table>{body}</table>")
            table.clear()

    def _inline(s):
        s = html.escape(s)
        s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", s)

    for line in text.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        image = re.match(r"!\[(.*)\]\((.+)\)", line.strip())
        if image:
            path = os.path.join(folder, image.group(2))
            if os.path.exists(path):
                with open(path, "rb") as f:
                    data = base64.b64encode(f.read()).decode()
                out.append(f'<p><img alt="{html.escape(image.group(1))}" '
                           f'src="data:image/png;base64,{data}"></p>')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
        elif line.startswith("- "):
            out.append(f"<li>{_inline(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    flush_table()
    style = ("body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
             "padding:3px 8px;font-size:13px}th{background:#eef}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Evaluation report</title>"
            f"<style>{style}</style></head><body>{''.join(out)}</body></html>")


def write_report(folder: str, markdown: str) -> tuple[str, str]:
    md_path, html_path = os.path.join(folder, "report.md"), os.path.join(folder, "report.html")
    with open(md_path, "w") as f:
        f.write(markdown)
    with open(html_path, "w") as f:
        f.write(markdown_to_html(markdown, folder))
    return md_path, html_path
