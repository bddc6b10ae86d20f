"""benchmarks/quality/transfer.py's target sets: drawn from the source run's held-out lesions
only, never sharing a lesion with the evaluation half, about the asked size, one evaluation
half for every draw; a source whose held-out rows share lesions with its training refused."""

import numpy as np
import pandas as pd
import pytest
from benchmarks_helper import import_benchmark


def _source(tmp_path, leak=False):
    rng = np.random.default_rng(0)
    rows = []
    for g in range(600):  # 600 lesions of 1-3 images, 3 classes
        part = "test" if g < 400 else ("val" if g < 450 else "train")
        for i in range(1 + g % 3):
            rows.append({"image_id": f"I{g}_{i}", "group_id": f"L{g}",
                         "label": "abc"[int(rng.integers(3))], "split": part})
    frame = pd.DataFrame(rows)
    if leak:  # lesion L1's second image in training, its first held out
        frame.loc[frame["image_id"] == "I1_1", "split"] = "train"
    frame.to_csv(tmp_path / "split.csv", index=False)
    return str(tmp_path)


def test_target_sets_come_from_held_out_lesions_apart_from_the_evaluation_half(tmp_path):
    transfer = import_benchmark("quality.transfer")
    source = _source(tmp_path)
    held = set(pd.read_csv(tmp_path / "split.csv").query("split == 'test'")["image_id"])
    sets = transfer.target_splits(source, 3, 150, seed=0)
    evaluations = [set(s.loc[s["split"] == "test", "image_id"]) for s in sets]
    assert evaluations[0] == evaluations[1] == evaluations[2]
    for s in sets:
        target, evaluation = s[s["split"] != "test"], s[s["split"] == "test"]
        assert set(s["image_id"]) <= held
        assert not set(target["group_id"]) & set(evaluation["group_id"])
        train, val = target[target["split"] == "train"], target[target["split"] == "val"]
        assert not set(train["group_id"]) & set(val["group_id"]) and len(val) > 0
        assert abs(len(target) - 150) <= 0.05 * len(held) / 2 + 3  # a twentieth of the pool
    assert len({frozenset(s.loc[s["split"] != "test", "image_id"]) for s in sets}) == 3


def test_a_source_whose_held_out_lesions_it_trained_on_is_refused(tmp_path):
    transfer = import_benchmark("quality.transfer")
    with pytest.raises(SystemExit, match="share lesions"):
        transfer.target_splits(_source(tmp_path, leak=True), 2, 100)


def test_the_baselines_table_names_the_transfer_results(tmp_path):
    """run_baselines --rewrite writes baselines.md from baselines.json without training, with
    the transfer figures read from their result files."""
    import json

    run_baselines = import_benchmark("quality.run_baselines")
    (tmp_path / "baselines.json").write_text(json.dumps({"rows": {}}))
    (tmp_path / "transfer_ham10000.json").write_text(json.dumps({"summary": {
        "ImageNet (Lite0)": {"mean": 0.4, "sd": 0.02}, "another run": {"mean": 0.6, "sd": 0.01}}}))
    (tmp_path / "transfer_chestxray.json").write_text(json.dumps({
        "scratch": {"workdir": "w", "metrics": {"balanced_accuracy": {"value": 0.55}}},
        "another run - scratch": {"balanced_accuracy": {}}}))
    assert run_baselines.main(["--rewrite", "--results", str(tmp_path)]) == 0
    text = (tmp_path / "baselines.md").read_text()
    assert "## Transfer between datasets" in text
    assert "another run 0.600 +- 0.010" in text and "scratch 0.550" in text
