import json
import os

import numpy as np
import pandas as pd
import pytest

from conftest import write_csv
from multimodal.data.sample import SAMPLE_DIR
from multimodal.evaluation import calibration
from multimodal.evaluation.scoring import (bootstrap_intervals, evaluate_predictions,
                                           expected_calibration_error, point_metrics)
from multimodal.evaluation.report import markdown_to_html
from scripts_helper import run_script


def test_point_metrics_on_a_known_case():
    labels = np.array([0, 0, 0, 0, 1, 2])
    probs = np.eye(3)[[0, 0, 0, 1, 1, 1]] * 0.8 + 0.2 / 3
    m = point_metrics(labels, probs)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 1 + 0) / 3)  # mean class recall


def test_ece_is_zero_when_confidence_matches_accuracy():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert expected_calibration_error(labels, probs) == 0
    over = np.array([[0.9, 0.1]] * 4)
    assert expected_calibration_error(labels, over) == pytest.approx(0.4)


def test_group_bootstrap_interval_brackets_the_point_estimate():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    probs = np.eye(3)[labels] * 0.2 + rng.dirichlet(np.ones(3), 300) * 0.8
    groups = np.arange(300) // 3
    out = evaluate_predictions(labels, probs, groups, ["a", "b", "c"], n_boot=200)
    for key in ("balanced_accuracy", "macro_auc", "accuracy"):
        lo, hi = out["metrics"][key]["ci95"]
        assert lo <= out["metrics"][key]["value"] <= hi and hi - lo > 0
    assert out["n_groups"] == 100 and len(out["per_class"]) == 3
    # resampling by group: identical copies of a group do not shrink the interval
    wide = bootstrap_intervals(labels[::3], probs[::3], np.arange(100), 200)["accuracy"]
    tripled = bootstrap_intervals(np.repeat(labels[::3], 3), np.repeat(probs[::3], 3, 0),
                                  np.repeat(np.arange(100), 3), 200)["accuracy"]
    assert tripled == pytest.approx(wide, abs=1e-9)


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 4)) * 2
    labels = np.array([rng.choice(4, p=np.exp(z) / np.exp(z).sum()) for z in true_logits])
    assert calibration.fit_temperature(true_logits * 3, labels) == pytest.approx(3, rel=0.1)


def test_operating_point_reaches_the_target_sensitivity():
    rng = np.random.default_rng(1)
    truth = rng.random(500) < 0.2
    scores = np.where(truth, rng.beta(4, 2, 500), rng.beta(2, 4, 500))
    t = calibration.threshold_for_sensitivity(scores, truth, 0.9)
    point = calibration.operating_point(scores, truth, t)
    assert point["sensitivity"] >= 0.9 and point["specificity"] > 0.3


def test_html_report_embeds_images(tmp_path):
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp_path / "p.png")
    page = markdown_to_html("# T\n\n| a | b |\n| --- | --- |\n| 1 | **2** |\n\n![x](p.png)\n",
                            str(tmp_path))
    assert "<h1>T</h1>" in page and "<td><b>2</b></td>" in page
    assert "data:image/png;base64," in page


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    run_script("train.py", "--config", "configs/ham10000_sample.yaml", "--smoke", "--no-progress",
               "--set", "train.max_steps=6", "--workdir", str(workdir))
    return workdir


def test_evaluate_writes_every_output(trained_run, tmp_path):
    out = run_script("evaluate.py", "--checkpoint", str(trained_run), "--out", str(tmp_path),
                     "--bootstrap", "50", "--saliency", "2")
    assert "balanced accuracy" in out.stdout
    for name in ("metrics.json", "predictions.csv", "confusion.png", "roc.png", "reliability.png",
                 "saliency_errors.png", "curves.png", "report.md", "report.html"):
        assert (tmp_path / name).stat().st_size > 0, name
    result = json.loads((tmp_path / "metrics.json").read_text())
    split = pd.read_csv(trained_run / "split.csv")
    preds = pd.read_csv(tmp_path / "predictions.csv")
    assert sorted(preds["image_id"]) == sorted(split[split["split"] == "test"]["image_id"])
    assert result["n_images"] == len(preds)
    assert {"temperature_scaling", "operating_point", "subgroups"} <= set(result)
    assert {"sex", "age_band", "localization"} <= set(result["subgroups"])
    probs = preds[[c for c in preds.columns if c.startswith("prob_")]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert "Balanced accuracy" in (tmp_path / "report.md").read_text()


def test_evaluate_on_another_dataset_without_metadata(trained_run, tmp_path):
    """An ISIC 2018-format test set (one-hot CSV, no metadata) mapped to the model's classes."""
    images = sorted(os.listdir(os.path.join(SAMPLE_DIR, "images")))[:12]
    cols = ["image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    rows = [[name[:-4]] + list(np.eye(7, dtype=int)[i % 7]) for i, name in enumerate(images)]
    gt = write_csv(tmp_path / "gt.csv", cols, rows)
    config = tmp_path / "isic.yaml"
    config.write_text(f"data:\n  source: isic2018\n  options:\n    ground_truth_csv: {gt}\n"
                      f"    image_dir: {os.path.join(SAMPLE_DIR, 'images')}\n")
    run_script("evaluate.py", "--checkpoint", str(trained_run), "--data", str(config),
               "--out", str(tmp_path / "eval"), "--bootstrap", "20", "--saliency", "0", "--tta")
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert result["n_images"] == 12 and result["tta"] is True
    preds = pd.read_csv(tmp_path / "eval" / "predictions.csv")
    assert set(preds["label"]) == {"mel", "nv", "bcc", "akiec", "bkl", "df", "vasc"}


def test_calibration_rows_are_named_and_same_rows_flagged(trained_run, tmp_path):
    """--split val fits temperature and operating point on the rows it reports on: said in
    metrics.json, the report and on stdout; the test split is calibrated on other rows."""
    run_script("evaluate.py", "--checkpoint", str(trained_run), "--out", str(tmp_path / "test"),
               "--bootstrap", "20", "--saliency", "0")
    held = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert held["calibration_on_same_rows"] is False and "validation" in held["calibration_rows"]
    assert "none of them among those" in (tmp_path / "test" / "report.md").read_text()

    out = run_script("evaluate.py", "--checkpoint", str(trained_run), "--split", "val",
                     "--out", str(tmp_path / "val"), "--bootstrap", "20", "--saliency", "0")
    same = json.loads((tmp_path / "val" / "metrics.json").read_text())
    assert same["calibration_on_same_rows"] is True and same["split"] == "val"
    assert "in-sample" in out.stdout
    report = (tmp_path / "val" / "report.md").read_text()
    assert "Calibration on the same rows" in report and "in-sample, optimistic" in report


CLASSES = ["mel", "nv", "bcc"]


def _predictions(ids, rng):
    labels = rng.integers(0, 3, len(ids))
    logits = rng.normal(size=(len(ids), 3)) + 2 * np.eye(3)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    frame = pd.DataFrame({"image_id": ids, "group_id": [f"g{i // 2}" for i in range(len(ids))],
                          "label": [CLASSES[k] for k in labels]})
    for c, name in enumerate(CLASSES):
        frame[f"prob_{name}"] = probs[:, c]
    for c, name in enumerate(CLASSES):
        frame[f"logit_{name}"] = logits[:, c]
    return frame


def _context(out_dir):
    """Predictions of a made-up model on 60 test and 40 calibration rows, with a table."""
    from multimodal.evaluation.context import Context, Options

    rng = np.random.default_rng(0)
    test, val = _predictions([f"t{i}" for i in range(60)], rng), \
        _predictions([f"v{i}" for i in range(40)], rng)
    table = pd.DataFrame({"image_id": [*test["image_id"], *val["image_id"]],
                          "sex": rng.choice(["male", "female"], 100)})
    info = {"checkpoint": "/runs/x", "step": 3, "split": "test", "data": "made up",
            "tta": False, "modality": "image", "calibration_rows": "the validation split"}
    return Context(test, val, CLASSES, table, str(out_dir), info, Options(n_boot=20),
                   notes=["a caller's note"])


def _run(out_dir, evaluators):
    from multimodal.evaluation.evaluate import run_evaluators

    result = run_evaluators(_context(out_dir), evaluators)
    return json.loads(json.dumps(result, default=float)), (out_dir / "report.md").read_text()


def test_an_added_evaluator_shows_up_without_changing_the_others(tmp_path):
    from multimodal.evaluation.context import Output
    from multimodal.evaluation.evaluators import EVALUATORS

    def top_class_share(ctx):
        share = float((ctx.probs.argmax(1) == 0).mean())
        return Output({"top_class_share": share}, ["## Top class", "", f"share {share:.2f}", ""],
                      ["a note of the new evaluator"])

    base, base_report = _run(tmp_path / "base", EVALUATORS)
    more, more_report = _run(tmp_path / "more", (*EVALUATORS, top_class_share))
    assert {"temperature_scaling", "operating_point", "subgroups", "metrics"} <= set(base)
    assert more == {**base, "top_class_share": more["top_class_share"]}
    assert json.loads((tmp_path / "more" / "metrics.json").read_text())["top_class_share"] \
        == more["top_class_share"]
    # the report: the same sections, then the new one; the same notes, then the new one
    sections, notes = base_report.split("\n- ", 1)
    assert notes.startswith("Temperature scaling and the operating point were fitted on 40")
    assert more_report == (f"{sections}\n## Top class\n\nshare {more['top_class_share']:.2f}"
                           f"\n\n- {notes}- a note of the new evaluator\n")


def test_removing_an_evaluator_removes_only_its_results(tmp_path):
    from multimodal.evaluation import evaluators

    full, full_report = _run(tmp_path / "full", evaluators.EVALUATORS)
    fewer = tuple(e for e in evaluators.EVALUATORS if e is not evaluators.operating_point)
    less, less_report = _run(tmp_path / "less", fewer)
    assert set(full) - set(less) == {"operating_point"}
    assert less == {k: v for k, v in full.items() if k != "operating_point"}
    section = "\n".join(evaluators.operating_point(_context(tmp_path / "x")).section) + "\n"
    assert "## Operating point" in section and section in full_report
    assert less_report == full_report.replace(section, "")


def test_two_evaluators_may_not_give_one_name(tmp_path):
    from multimodal.evaluation.context import Output
    from multimodal.evaluation.evaluators import EVALUATORS

    def subgroups_again(ctx):
        return Output({"subgroups": {}})

    with pytest.raises(ValueError, match="subgroups and subgroups_again both give 'subgroups'"):
        _run(tmp_path, (*EVALUATORS, subgroups_again))


def test_balanced_offsets_undo_a_bias_toward_one_class_on_new_rows():
    from multimodal.evaluation.calibration import balanced_offsets

    def draw(seed, n=900):
        rng = np.random.default_rng(seed)
        labels = rng.choice(3, n, p=[0.7, 0.2, 0.1])
        logits = 2.0 * np.eye(3)[labels] + rng.normal(0, 1.0, (n, 3)) + [2.5, 0.0, 0.0]
        return logits, labels

    def balanced(logits, labels):
        pred = logits.argmax(1)
        return np.mean([(pred[labels == c] == c).mean() for c in range(3)])

    val_logits, val_labels = draw(0)
    offsets = balanced_offsets(val_logits, val_labels)
    assert balanced(val_logits + offsets, val_labels) > balanced(val_logits, val_labels) + 0.1
    test_logits, test_labels = draw(1)  # fitted on one sample, better on another
    assert balanced(test_logits + offsets, test_labels) > balanced(test_logits, test_labels) + 0.1
    assert offsets[0] - offsets[1:].max() < -1.0  # the favoured class is pushed down
    absent = balanced_offsets(val_logits[val_labels < 2][:, :], val_labels[val_labels < 2])
    assert absent[2] == 0.0  # a class with no validation rows is left alone
