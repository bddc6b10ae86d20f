"""The model card of an export: every number of its evaluation section is one of the run's
metrics.json values, the not-a-diagnosis statement is there, what has no file says "not
evaluated", and the web demo serves the card."""

from __future__ import annotations

import json
import math
import os
import re
import shutil

import pandas as pd
import pytest
from scripts_helper import run_script

from multimodal.serving.model_card import CARD, NOT_EVALUATED, model_card
from multimodal.serving.predictor import DISCLAIMER

NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


@pytest.fixture(scope="module")
def evaluated(smoke_run, tmp_path_factory):
    """A copy of the smoke run (the fixture is shared), evaluated into its eval folder; with
    the card the run gave before any evaluation."""
    run = str(tmp_path_factory.mktemp("card") / "run")
    shutil.copytree(smoke_run, run, ignore=shutil.ignore_patterns("eval*", CARD))
    before = model_card(run)
    run_script("evaluate.py", "--checkpoint", run, "--bootstrap", "20", "--saliency", "0")
    return run, before


@pytest.fixture(scope="module")
def exported(evaluated, tmp_path_factory):
    from multimodal.serving.export import export_model

    out = str(tmp_path_factory.mktemp("card_export") / "model")
    export_model(evaluated[0], out)
    return out


def _section(card: str, title: str) -> str:
    start = card.index(f"\n## {title}\n")
    end = card.find("\n## ", start + 1)
    return card[start:end if end > 0 else None]


def _table_numbers(text: str) -> list[str]:
    """Number tokens of every table data row, the row's label (first cell) left out."""
    lines = text.splitlines()
    found = []
    for i, line in enumerate(lines):
        separator = re.fullmatch(r"\|[-:| ]+\|", line)
        header = i + 1 < len(lines) and re.fullmatch(r"\|[-:| ]+\|", lines[i + 1])
        if not line.startswith("|") or separator or header:
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        found += [tok for cell in cells[1:] for tok in NUMBER.findall(cell)]
    return found


def _shown(value) -> set[str]:
    """How the card may show a file's value: integers whole, other numbers to 3 decimals."""
    if isinstance(value, bool):
        return set()
    if isinstance(value, int):
        return {str(value), f"{value:.3f}"}
    if isinstance(value, float) and not math.isnan(value):
        return {f"{value:.3f}"}
    if isinstance(value, dict):
        return set().union(*map(_shown, value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*map(_shown, value)) if value else set()
    return set()


def _as_shown(token: str) -> str:
    return f"{float(token):.3f}" if "." in token else str(int(token))


def test_every_evaluation_number_is_read_from_the_metrics_files(evaluated, exported):
    run, _ = evaluated
    with open(os.path.join(exported, CARD)) as f:
        card = f.read()
    with open(os.path.join(run, "eval", "metrics.json")) as f:
        metrics = json.load(f)
    section = _section(card, "Quantitative analyses")
    tokens = _table_numbers(section)
    assert len(tokens) > 40, section  # metrics, recalls, decision rule, operating point, subgroups
    allowed = _shown(metrics)
    stray = [t for t in tokens if _as_shown(t) not in allowed]
    assert stray == [], f"numbers in the card that no metrics.json holds: {stray}"
    ba = metrics["metrics"]["balanced_accuracy"]
    assert (f"| balanced accuracy | {ba['value']:.3f} | [{ba['ci95'][0]:.3f}, "
            f"{ba['ci95'][1]:.3f}] |") in section
    assert "Subgroups by sex" in section and "Operating point" in section
    assert f"threshold on p({metrics['operating_point']['class']})" in section


def test_training_data_and_details_come_from_the_run(evaluated, exported):
    run, _ = evaluated
    with open(os.path.join(exported, CARD)) as f:
        card = f.read()
    split = pd.read_csv(os.path.join(run, "split.csv"))
    section = _section(card, "Training data")
    for name, rows in split.groupby("split"):
        assert f"| {name} | {len(rows)} | {rows['group_id'].nunique()} |" in section
    assert "CC BY-NC 4.0" in section and "stratified by label" in section
    assert "no Fitzpatrick column" in section
    details = _section(card, "Model details")
    assert "small_cnn" in details and "image+meta" in details and "concat" in details
    assert re.search(r"Code commit: ([0-9a-f]{40}|unknown)", details)
    assert DISCLAIMER in _section(card, "Intended use")


def test_what_has_no_file_says_not_evaluated(evaluated, exported):
    _, before = evaluated
    assert f"## Quantitative analyses\n\n{NOT_EVALUATED}" in before
    assert f"## Caveats and known failure modes\n\n{NOT_EVALUATED}" in before
    with open(os.path.join(exported, CARD)) as f:
        card = f.read()
    assert f"Shifted copy (another camera's look): {NOT_EVALUATED}" in card
    assert f"Cross-validation: {NOT_EVALUATED}" in card
    assert f"Drop on a shifted copy (another camera's look): {NOT_EVALUATED}" in card


def test_a_shifted_copy_and_cross_validation_are_read_too(evaluated, tmp_path):
    """Files only (no evaluation run): a shifted evaluation and an oof/metrics.json appear,
    and the drop is the difference of the two files' balanced accuracies."""
    run, _ = evaluated
    fake = tmp_path / "run"
    fake.mkdir()
    for name in ("config.yaml", "classes.json", "split.csv", "run.json"):
        shutil.copy(os.path.join(run, name), fake / name)
    shutil.copytree(os.path.join(run, "eval"), fake / "eval")
    with open(os.path.join(run, "eval", "metrics.json")) as f:
        metrics = json.load(f)
    base = metrics["metrics"]["balanced_accuracy"]["value"]
    shifted = json.loads(json.dumps(metrics))
    shifted["metrics"]["balanced_accuracy"]["value"] = base - 0.125
    shifted["data"] = str(fake / "shifted" / "all-seed0" / "dataset.yaml")
    (fake / "eval_shifted_all-seed0").mkdir()
    (fake / "eval_shifted_all-seed0" / "metrics.json").write_text(json.dumps(shifted))
    (fake / "oof").mkdir()
    (fake / "oof" / "metrics.json").write_text(json.dumps({**metrics, "kind": "cross_validation"}))
    card = model_card(str(fake))
    assert "### eval_shifted_all-seed0 (shifted)" in card and "### oof (cross-validation)" in card
    assert "(drop +0.125)" in card
    assert f"Cross-validation: {NOT_EVALUATED}" not in card
    staged = tmp_path / ".eval_shifted_all-seed0.partial-x"  # an evaluation being written
    shutil.copytree(fake / "eval_shifted_all-seed0", staged)
    shifted["metrics"]["balanced_accuracy"]["value"] = base - 0.25
    (staged / "metrics.json").write_text(json.dumps(shifted))
    card = model_card(str(fake), pending=(str(staged), "eval_shifted_all-seed0"))
    assert "(drop +0.250)" in card and card.count("### eval_shifted_all-seed0") == 1


def test_the_web_demo_serves_and_links_the_card(evaluated, exported):
    from fastapi.testclient import TestClient

    from multimodal.serving.app import create_app
    from multimodal.serving.predictor import Predictor

    with open(os.path.join(exported, CARD)) as f:
        card = f.read()
    with TestClient(create_app(Predictor.open(exported))) as client:
        answer = client.get("/model-card")
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/markdown")
        assert answer.text == card
        assert '"model_card": "model-card"' in client.get("/").text
    with TestClient(create_app(Predictor.open(evaluated[0]))) as client:  # a run: no card
        answer = client.get("/model-card")
        assert answer.status_code == 404 and "export" in answer.json()["error"]
        assert '"model_card": null' in client.get("/").text
