"""BatchNorm statistics re-estimated on unlabelled target images (multimodal/evaluation/adapt.py,
scripts/evaluate.py --adapt-bn)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from flax import nnx

from multimodal.config import ModelConfig
from multimodal.errors import ConfigError
from multimodal.evaluation import adapt
from multimodal.metrics import softmax
from multimodal.models import build_model
from scripts_helper import refused, run_script


def model_with_bn():
    model = build_model(ModelConfig(encoder="small_cnn_bn"), "image+meta", 3, 4, 0)
    model.eval()
    return model


def images(n, seed, scale=1.0, offset=0.0):
    """Pictures of one distribution (per-image colour + pixel noise); `scale`/`offset`: the
    same pictures through another camera's intensity curve."""
    rng = np.random.default_rng(seed)
    x = 0.5 + 0.3 * rng.normal(size=(n, 1, 1, 3)) + 0.5 * rng.normal(size=(n, 16, 16, 3))
    return (x * scale + offset).astype(np.float32)


def batches(x, size=16):
    for i in range(0, len(x), size):
        part = x[i:i + size]
        yield {"image": part, "metadata": np.zeros((len(part), 4), np.float32),
               "metadata_mask": np.ones(len(part), np.float32)}


def probs(model, x):
    return softmax(np.asarray(model(x, np.zeros((len(x), 4), np.float32),
                                    np.ones(len(x), np.float32))))


def adapted(model, x, blend=1.0):
    stats, n = adapt.target_statistics(model, batches(x))
    adapt.set_statistics(model, stats, blend)
    return n


def arrays(state):
    """Copies of a state's arrays (a state may share its variables with the model)."""
    return [np.array(leaf) for leaf in jax.tree.leaves(state)]


def split_arrays(model):
    """(BatchNorm statistics, everything else) of a model, as copied arrays."""
    _, stats, rest = nnx.split(model, nnx.BatchStat, ...)
    return arrays(stats), arrays(rest)


def test_adaptation_changes_only_the_batchnorm_statistics():
    model = model_with_bn()
    stats_before, rest_before = split_arrays(model)
    assert adapted(model, images(40, 0)) == 40
    stats_after, rest_after = split_arrays(model)
    assert len(rest_before) > len(stats_before) == 6
    assert all(np.array_equal(a, b) for a, b in zip(rest_before, rest_after))
    assert not any(np.array_equal(a, b) for a, b in zip(stats_before, stats_after))
    assert all(bn.use_running_average and bn.momentum == 0.9 for _, bn in adapt.batchnorms(model))


def test_blend_zero_leaves_the_model_unchanged_bit_for_bit():
    model = model_with_bn()
    before = arrays(nnx.state(model))
    adapted(model, images(40, 0, scale=3.0, offset=2.0), blend=0.0)
    assert all(np.array_equal(a, b) for a, b in zip(before, arrays(nnx.state(model))))


def test_blend_weighs_the_target_statistics_linearly():
    model = model_with_bn()
    own = adapt._stats(adapt.batchnorms(model))
    stats, _ = adapt.target_statistics(model, batches(images(40, 0)))
    adapt.set_statistics(model, stats, 0.25)
    for (mean, var), (t_mean, t_var), (_, bn) in zip(own, stats, adapt.batchnorms(model)):
        np.testing.assert_allclose(np.asarray(bn.mean[...]), 0.75 * mean + 0.25 * t_mean,
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(bn.var[...]), 0.75 * var + 0.25 * t_var,
                                   rtol=1e-5, atol=1e-6)


def test_statistics_pooled_over_batches_equal_one_batch_of_all_images():
    """The first BatchNorm sees the same inputs whatever the batching: pooling (law of total
    variance) must give the statistics of all images at once; the order is deterministic."""
    model, x = model_with_bn(), images(50, 0)
    pooled, _ = adapt.target_statistics(model, batches(x, 16))  # 16, 16, 16, 2
    whole, _ = adapt.target_statistics(model, batches(x, 50))
    np.testing.assert_allclose(pooled[0][0], whole[0][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(pooled[0][1], whole[0][1], rtol=1e-4, atol=1e-5)
    again, _ = adapt.target_statistics(model, batches(x, 16))
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
               for a, b in zip(pooled, again))


def test_on_the_training_distribution_predictions_stay_close_and_a_shift_is_undone_in_part():
    model = model_with_bn()
    adapted(model, images(1024, 0))  # statistics as training would have left them
    target = images(64, 1)
    before = probs(model, target)
    adapted(model, target)  # target images of the training distribution
    assert np.abs(probs(model, target) - before).max() < 0.05
    adapted(model, images(1024, 0))
    camera = images(64, 1, scale=0.5, offset=0.8)  # the same pictures, another camera
    plain = np.abs(probs(model, camera) - before).mean()
    adapted(model, camera)
    assert np.abs(probs(model, camera) - before).mean() < 0.8 * plain


@pytest.fixture(scope="module")
def bn_run(tmp_path_factory) -> str:
    """A smoke run of the sample config with a BatchNorm encoder."""
    work = tmp_path_factory.mktemp("bn_smoke") / "run"
    run_script("train.py", "--config", "configs/ham10000_sample.yaml", "--smoke", "--no-progress",
               "--set", "model.encoder=small_cnn_bn", "--workdir", str(work))
    return str(work)


def test_a_runs_adaptation_touches_only_batchnorm_and_refuses_too_few_images(bn_run):
    from multimodal.run import load_run, run_inputs

    run = load_run(bn_run)
    inputs = run_inputs(run)
    stats_before, rest_before = split_arrays(run.model)
    with pytest.raises(ConfigError, match="at least 76 target images; the test split has 75: "
                                          "below 76 the BatchNorm statistics estimate is too noisy"):
        adapt.adapt_batchnorm(run, inputs, "test", min_images=76, what="the test split")
    info = adapt.adapt_batchnorm(run, inputs, "test", blend=1.0)
    assert info["target_images"] == 75 and info["layers"] == 3 and "class mix" in info["note"]
    stats_after, rest_after = split_arrays(run.model)
    assert all(np.array_equal(a, b) for a, b in zip(rest_before, rest_after))
    assert not any(np.array_equal(a, b) for a, b in zip(stats_before, stats_after))


def test_evaluate_adapt_bn_reports_beside_the_plain_evaluation(bn_run, tmp_path):
    out = run_script("evaluate.py", "--checkpoint", bn_run, "--out", str(tmp_path / "eval"),
                     "--adapt-bn", "--bootstrap", "10", "--saliency", "0")
    assert "adapted BatchNorm on 75 target images" in out.stdout
    assert "adapted - as trained:" in out.stdout
    plain = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    result = json.loads((tmp_path / "eval_adapted" / "metrics.json").read_text())
    assert "adapted_batchnorm" not in plain
    assert result["adapted_batchnorm"]["target_images"] == 75
    assert "class mix" in result["adapted_batchnorm"]["note"]
    assert "class mix" in (tmp_path / "eval_adapted" / "report.md").read_text()


def test_evaluate_adapt_bn_refusals(bn_run, smoke_run, tmp_path):
    from multimodal.run.files import load_run_config
    from multimodal.data.split.build import load_table
    from multimodal.data.images.shift import write_shifted_copy

    table = load_table(load_run_config(bn_run).data)
    few = write_shifted_copy(table, table.frame["image_id"][:10], str(tmp_path / "few"),
                             ["contrast"], progress=False)
    line = refused(run_script("evaluate.py", "--checkpoint", bn_run, "--data", few,
                              "--adapt-bn", "--out", str(tmp_path / "e"), check=False),
                   "at least 32", "has 10", "too noisy")
    assert "--adapt-bn" in line and not (tmp_path / "e").exists()
    assert not (tmp_path / "e_adapted").exists()
    refused(run_script("evaluate.py", "--checkpoint", bn_run, "--adapt-bn",
                       "--adapt-bn-blend", "1.5", check=False), "[0, 1]")
    refused(run_script("evaluate.py", "--checkpoint", bn_run, "--adapt-bn-blend", "0.5",
                       check=False), "--adapt-bn")
    refused(run_script("evaluate.py", "--checkpoint", smoke_run, "--adapt-bn",
                       "--out", str(tmp_path / "n"), check=False), "no BatchNorm layers")


def test_the_corruption_benchmark_scores_each_copy_adapted_beside_plain(bn_run, tmp_path):
    """benchmarks.quality.shift_severity --adapt-bn: each cell also scored with BatchNorm
    re-estimated on its own images, its drop against clean and its gain against the same
    images as trained, both paired; a mean row per severity."""
    import shutil

    from benchmarks.quality import shift_severity

    run, results = tmp_path / "run", tmp_path / "results"
    shutil.copytree(bn_run, run)
    assert shift_severity.main(["--checkpoint", str(run), "--smoke", "--bootstrap", "10",
                                "--adapt-bn", "--results", str(results)]) == 0
    data = json.loads((results / "shift_severity_smoke.json").read_text())
    cell = data["cells"]["blur-s3"]
    assert data["adapt_bn"] is True
    for key in ("drop", "gain"):
        assert set(cell["adapted"][key]) >= {"difference", "ci95"}
    adapted = json.loads((run / "shift_severity-seed0" / "blur-s3_adapted" / "metrics.json")
                         .read_text())
    plain = json.loads((run / "shift_severity-seed0" / "blur-s3" / "metrics.json").read_text())
    assert adapted["adapted_batchnorm"]["target_images"] == 75
    assert "adapted_batchnorm" not in plain
    table = (results / "shift_severity_smoke.md").read_text()
    assert "adaptation gain" in table and "| **mean of 1** | 3 |" in table
    # the gain is the adapted minus the plain evaluation of the same copy
    gain = adapted["metrics"]["balanced_accuracy"]["value"] - \
        plain["metrics"]["balanced_accuracy"]["value"]
    assert abs(cell["adapted"]["gain"]["difference"] - gain) < 1e-9


def _picture_folder(tmp_path, n: int) -> str:
    """A folder of n of the bundled sample's pictures (a new clinic's images, unlabelled)."""
    import os
    import shutil

    from multimodal.config import SAMPLE_DIR

    folder = tmp_path / f"clinic_{n}"
    folder.mkdir()
    names = sorted(os.listdir(os.path.join(SAMPLE_DIR, "images")))[:n]
    for name in names:
        shutil.copy(os.path.join(SAMPLE_DIR, "images", name), folder / name)
    return str(folder)


def _predict(checkpoint, folder, *extra):
    out = run_script("predict.py", "--checkpoint", checkpoint, folder, "--format", "json",
                     "--no-progress", *extra)
    return out, {r["image"]: r["probabilities"] for r in json.loads(out.stdout)}


def test_predict_adapt_bn_re_estimates_on_the_given_images_and_leaves_the_run(bn_run, tmp_path):
    """predict.py --adapt-bn: blend 0 gives the plain predictions exactly, blend 1 others;
    the run's files are untouched."""
    import hashlib
    import pathlib

    def digest():
        h = hashlib.sha256()
        for p in sorted(pathlib.Path(bn_run).rglob("*")):  # names, folders and bytes
            h.update(str(p.relative_to(bn_run)).encode() + b"\0")
            if p.is_file():
                h.update(p.read_bytes())
        return h.hexdigest()

    before = digest()
    folder = _picture_folder(tmp_path, 40)
    _, plain = _predict(bn_run, folder)
    out, unchanged = _predict(bn_run, folder, "--adapt-bn", "--adapt-bn-blend", "0")
    assert unchanged == plain
    out, moved = _predict(bn_run, folder, "--adapt-bn")
    assert "adapted BatchNorm on 40 target images (3 layers, blend 1)" in out.stderr
    assert "class mix" in out.stderr
    assert set(moved) == set(plain) and moved != plain
    assert digest() == before


def test_predict_adapt_bn_refusals(bn_run, smoke_run, tmp_path):
    few = _picture_folder(tmp_path, 10)
    many = _picture_folder(tmp_path, 33)
    refused(run_script("predict.py", "--checkpoint", bn_run, few, "--adapt-bn", check=False),
            "at least 32", "10 given")
    refused(run_script("predict.py", "--checkpoint", bn_run, many, "--adapt-bn-blend", "0.5",
                       check=False), "needs --adapt-bn")
    refused(run_script("predict.py", "--checkpoint", bn_run, many, "--adapt-bn",
                       "--adapt-bn-blend", "2", check=False), "[0, 1]")
    refused(run_script("predict.py", "--checkpoint", smoke_run, many, "--adapt-bn",
                       check=False), "no BatchNorm layers")
    refused(run_script("predict.py", "--model", str(tmp_path), many, "--adapt-bn",
                       check=False), "adapts a run")
    # 33 files of which 2 cannot be read: --skip-bad leaves 31, too few to adapt on
    import pathlib

    for name in sorted(pathlib.Path(many).iterdir())[:2]:
        name.write_bytes(b"not a picture")
    refused(run_script("predict.py", "--checkpoint", bn_run, many, "--adapt-bn", "--skip-bad",
                       check=False), "31 could be read")
