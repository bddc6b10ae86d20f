"""Feature caches: keyed reuse, heads trained on cached features, partial fine-tuning."""

import dataclasses
import os

import numpy as np
import pytest

from multimodal.config import load_config
from multimodal.run.features import FeatureCache, extract_features, weights_digest
from multimodal.run import load_run, predict_split, run_inputs
from multimodal.training.trainer import train

from scripts_helper import ROOT


def _cfg(*overrides):
    return load_config(os.path.join(ROOT, "configs", "ham10000_sample.yaml"), list(overrides),
                       smoke=True, modality="image+meta")


def _same_predictions(run_dir, cache):
    run = load_run(str(run_dir))
    inputs = run_inputs(run)
    from_images = predict_split(run, inputs, "val")
    from_cache = predict_split(run, inputs, "val", features=cache)
    assert list(from_images["image_id"]) == list(from_cache["image_id"])
    logits = [c for c in from_images.columns if c.startswith("logit_")]
    # the cache stores float16 features: ~1e-3 on logits up to ~6 (pooled), ~4e-5 on ~0.3 (block)
    np.testing.assert_allclose(from_cache[logits], from_images[logits], atol=5e-3, rtol=5e-3)
    return run


def test_same_key_reuses_a_changed_key_extracts_again(tmp_path):
    cfg = _cfg()
    path, status = extract_features(cfg, str(tmp_path), show_progress=False)
    assert status == "extracted"
    cache = FeatureCache.open(path)
    assert cache.features.shape == (503, 1, 256) and cache.features.dtype == np.float16
    assert extract_features(cfg, str(tmp_path), show_progress=False) == (path, "reused")
    flips, status = extract_features(cfg, str(tmp_path), tta=True, show_progress=False)
    assert status == "extracted" and flips != path
    assert FeatureCache.open(flips).features.shape == (503, 4, 256)
    bigger = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, image_size=40))
    assert extract_features(bigger, str(tmp_path), show_progress=False)[0] not in (path, flips)
    assert not [d for d in os.listdir(tmp_path / "features") if ".tmp" in d]


def test_heads_on_pooled_features_are_the_image_model(tmp_path):
    path, _ = extract_features(_cfg(), str(tmp_path / "cache"), tta=True, show_progress=False)
    cache = FeatureCache.open(path)
    train(_cfg(f"model.features={path}"), str(tmp_path / "run"), show_progress=False)
    # the run reuses the prepared data of the extraction: no copy of the images in the run
    from multimodal.data.records.store import read_reference

    assert not (tmp_path / "run" / "prepared").exists()
    assert read_reference(str(tmp_path / "run"))["path"] == \
        read_reference(str(tmp_path / "cache"))["path"]
    run = load_run(str(tmp_path / "run"))
    assert weights_digest(run.model.encoder) == cache.key["weights_sha256"]  # encoder frozen
    # the eval view of a pooled cache is the mean of the flips: compare with a 1-view cache
    single, _ = extract_features(_cfg(), str(tmp_path / "cache"), show_progress=False)
    _same_predictions(tmp_path / "run", FeatureCache.open(single))

    from multimodal.evaluation.evaluate import evaluate_run

    result = evaluate_run(str(tmp_path / "run"), str(tmp_path / "eval"), n_boot=10, n_saliency=1)
    assert result["n_images"] > 0 and (tmp_path / "eval" / "saliency_errors.png").exists()


def test_block_cache_fine_tunes_only_the_blocks_above(tmp_path):
    lite = ["model.encoder=efficientnet_lite0", "model.encoder_options={width: 0.25, depth: 0.3}",
            "data.normalize=minus1_1"]
    path, _ = extract_features(_cfg(*lite), str(tmp_path / "cache"), block=4,
                               show_progress=False)
    cache = FeatureCache.open(path)
    assert cache.features.shape[2:] == (2, 2, 24)  # 32 px / 16 (stem + 3 strided blocks)
    train(_cfg(*lite, f"model.features={path}", "train.finetune_lr_scale=1.0"),
          str(tmp_path / "run"), show_progress=False)
    run = _same_predictions(tmp_path / "run", cache)
    from multimodal.models import build_model

    start = build_model(run.cfg.model, "image+meta", 7, run.meta_encoder.dim).encoder
    trained = run.model.encoder
    below = [start.conv_stem, start.bn0, *start.blocks[:4]], \
        [trained.conv_stem, trained.bn0, *trained.blocks[:4]]
    assert [weights_digest(m) for m in below[0]] == [weights_digest(m) for m in below[1]]
    assert weights_digest(start.blocks[5]) != weights_digest(trained.blocks[5])


def test_a_changed_image_or_a_missing_one_is_refused(tmp_path):
    cfg = _cfg()
    path, _ = extract_features(cfg, str(tmp_path), show_progress=False)
    cache = FeatureCache.open(path)
    from multimodal.data.pipeline.inputs import build_inputs

    inputs = build_inputs(cfg, str(tmp_path))
    assert cache.for_split(inputs, "train", train=True).shape[1:] == (1, 256)
    some = inputs.frames["train"]["image_id"].iloc[0]
    inputs.image_hashes[some] = "0" * 64
    with pytest.raises(ValueError, match="changed since"):
        cache.for_split(inputs, "train", train=True)
    del cache.row[some]
    with pytest.raises(ValueError, match="not in the feature cache"):
        cache.for_split(inputs, "train", train=True)


def test_encoder_weights_other_than_the_cache_are_refused(tmp_path):
    path, _ = extract_features(_cfg(), str(tmp_path / "cache"), show_progress=False)
    with pytest.raises(ValueError, match="weights differ"):
        train(_cfg(f"model.features={path}", "train.seed=1"), str(tmp_path / "run"),
              show_progress=False)
