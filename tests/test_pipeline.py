"""Prepared ArrayRecord datasets and the Grain pipeline over them (bundled sample, 32 px)."""

import numpy as np
import pytest

from multimodal.data.pipeline import loaders as pipeline
from multimodal.data.records import prepare
from multimodal.data.split import grouped as splits
from multimodal.data.pipeline.metadata import MetadataEncoder
from multimodal.data.sample import SAMPLE_DIR
from multimodal.data.sources import ham10000


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    table = ham10000.load(SAMPLE_DIR)
    split = splits.train_val_test(table, seed=0)
    out = str(tmp_path_factory.mktemp("prepared"))
    manifest = prepare.prepare(table, split, out, image_size=32)
    return table, split, out, manifest


def _loader(out, manifest, split="train", ops=(), train=True, **kw):
    source = prepare.open_split(out, split)
    frame = prepare.split_frame(source, manifest)
    enc = MetadataEncoder(manifest["metadata"]).fit(frame)
    loader = pipeline.ExampleLoader(source, manifest["classes"], enc, manifest["metadata"],
                                    list(ops), 32, pipeline.Normalizer(), train, seed=0, **kw)
    labels = frame["label"].map({c: i for i, c in enumerate(manifest["classes"])}).to_numpy()
    return loader, labels


def test_prepared_splits_read_back_every_example_once(prepared):
    table, split, out, manifest = prepared
    assert manifest["status"] == "prepared"
    seen = []
    for name, count in manifest["splits"].items():
        frame = prepare.split_frame(prepare.open_split(out, name), manifest)
        assert len(frame) == count
        expected = split[split["split"] == name]
        assert sorted(frame["image_id"]) == sorted(expected["image_id"])
        seen += list(frame["image_id"])
    assert sorted(seen) == sorted(table.frame["image_id"])
    record = prepare.open_split(out, "val")[0]
    assert isinstance(record["image"], bytes) and pipeline.decode(record["image"]).shape[0] == 32


def test_prepare_is_idempotent_and_refuses_other_inputs(prepared):
    table, split, out, _ = prepared
    assert prepare.prepare(table, split, out, image_size=32)["status"] == "unchanged"
    other = split.copy()
    other.loc[other.index[other["split"] == "test"][:5], "split"] = "train"
    with pytest.raises(prepare.PreparedMismatch, match="other inputs"):
        prepare.prepare(table, other, out, image_size=32)


def test_each_epoch_reads_every_training_example_exactly_once(prepared):
    _, _, out, manifest = prepared
    loader, labels = _loader(out, manifest)
    plan, steps = pipeline.training_plan(labels, 7, epochs=2, global_batch=1, seed=0)
    ids = []
    for batch in pipeline.train_dataset(loader, plan, 1):
        ids.append(batch["image_id"][0])
    n = len(labels)
    assert steps == n and len(ids) == 2 * n
    assert len(set(ids[:n])) == n and len(set(ids[n:])) == n and ids[:n] != ids[n:]


def test_balanced_sampling_is_near_uniform(prepared):
    _, _, out, manifest = prepared
    _, labels = _loader(out, manifest)
    counts = np.zeros(7)
    for epoch in range(20):
        counts += np.bincount(labels[pipeline.epoch_order(labels, 7, epoch, 0, alpha=1.0)], minlength=7)
    share = counts / counts.sum()
    assert np.abs(share - 1 / 7).max() < 0.02
    natural = np.bincount(labels, minlength=7) / len(labels)
    half = np.bincount(labels[pipeline.epoch_order(labels, 7, 0, 0, alpha=0.5)], minlength=7)
    assert natural.max() > 0.45 and half.max() / half.sum() < natural.max()


def test_oversampling_factor_raises_a_class(prepared):
    _, _, out, manifest = prepared
    _, labels = _loader(out, manifest)
    w = pipeline.sampling_weights(labels, 7, alpha=0.0, factors={3: 4.0})
    df = labels == 3
    assert np.isclose(w[df].sum() / w[~df].sum(), 4 * df.sum() / (~df).sum())


def test_resume_from_iterator_state_replays_the_same_batches(prepared):
    _, _, out, manifest = prepared
    loader, labels = _loader(out, manifest, ops=["flip_h", "rotate90", "color_jitter"])
    plan, _ = pipeline.training_plan(labels, 7, epochs=2, global_batch=8, seed=1, alpha=0.5)
    data = pipeline.train_dataset(loader, plan, 8)
    it = iter(data)
    for _ in range(7):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(4)]
    resumed = iter(pipeline.train_dataset(loader, plan, 8, threads=1))  # other thread count
    resumed.set_state(state)
    for want in expected:
        got = next(resumed)
        np.testing.assert_array_equal(got["image"], want["image"])
        assert list(got["image_id"]) == list(want["image_id"])


def test_hosts_split_each_global_batch(prepared):
    _, _, out, manifest = prepared
    _, labels = _loader(out, manifest)
    full, _ = pipeline.training_plan(labels, 7, 1, 8, seed=0)
    parts = [pipeline.training_plan(labels, 7, 1, 8, seed=0, process_index=i, process_count=2)[0]
             for i in range(2)]
    steps = len(full) // 8
    for s in range(steps):
        merged = np.concatenate([p[s * 4:(s + 1) * 4] for p in parts])
        np.testing.assert_array_equal(merged, full[s * 8:(s + 1) * 8])


def test_evaluation_batches_pad_and_mask(prepared):
    _, _, out, manifest = prepared
    loader, labels = _loader(out, manifest, split="val", train=False)
    ids, masks = [], []
    for batch in pipeline.eval_dataset(loader, 16):
        assert batch["image"].shape == (16, 32, 32, 3)
        ids += list(batch["image_id"])
        masks += list(batch["mask"])
    real = [i for i, m in zip(ids, masks) if m]
    assert len(real) == len(set(real)) == len(labels)
    assert len(ids) % 16 == 0 and sum(masks) == len(labels)


def test_batch_contents_and_metadata_mask(prepared):
    _, _, out, manifest = prepared
    loader, labels = _loader(out, manifest)
    example = loader((0, 0))
    assert example["image"].dtype == np.float32 and example["metadata"].shape == (loader.meta_encoder.dim,)
    assert example["metadata_mask"] == 1.0 and example["mask"] == 1.0
    assert np.abs(example["image"]).max() <= 1.0  # minus1_1 normalisation


def test_metadata_only_loader_skips_pixels(prepared, monkeypatch):
    _, _, out, manifest = prepared
    with_images, _ = _loader(out, manifest)
    meta_only, _ = _loader(out, manifest, images=False)

    def no_decoding(data):
        raise AssertionError("a metadata-only loader decoded an image")

    monkeypatch.setattr(pipeline, "decode", no_decoding)
    b = meta_only((0, 3))
    assert b["image"].shape == (1, 1, 3)
    np.testing.assert_array_equal(b["metadata"], with_images.metadata[3])
    assert b["image_id"] == prepare.split_frame(meta_only.source, manifest)["image_id"].iloc[3]


def test_class_conditional_augmentation(prepared):
    _, _, out, manifest = prepared
    loader, labels = _loader(out, manifest, ops=[{"flip_h": {"p": 1.0}}], augment_classes=["df"])
    plain, _ = _loader(out, manifest)
    nv, df = int(np.flatnonzero(labels == 5)[0]), int(np.flatnonzero(labels == 3)[0])
    for index, augmented in ((nv, False), (df, True)):
        a, b = loader((11, index))["image"], plain((11, index))["image"]
        assert np.allclose(a, b) != augmented


def test_dataset_normaliser_centres_the_training_images(prepared):
    _, _, out, manifest = prepared
    source = prepare.open_split(out, "train")
    norm = pipeline.fit_normalizer(source, [], 32, "dataset")
    pixels = np.stack([norm(pipeline.crop(pipeline.decode(source[i]["image"]), 32, None))
                       for i in range(len(source))])
    assert np.abs(pixels.reshape(-1, 3).mean(0)).max() < 1e-3
    assert np.abs(pixels.reshape(-1, 3).std(0) - 1).max() < 1e-3
    assert pipeline.Normalizer.from_dict(norm.to_dict()) == norm


@pytest.mark.parametrize("method", ["random", "smote", "adasyn"])
def test_oversampling_small_images_balances_the_training_split(prepared, method):
    from multimodal.data.pipeline.resample import oversampled_source

    _, _, out, manifest = prepared
    source = prepare.open_split(out, "train")
    before = np.bincount([source[i]["label"] for i in range(len(source))], minlength=7)
    resampled = oversampled_source(source, manifest["metadata"], 16, method, seed=0)
    after = np.bincount([resampled[i]["label"] for i in range(len(resampled))], minlength=7)
    assert after.min() >= 0.8 * after.max() and before.min() < 0.3 * before.max()
    frame = prepare.split_frame(resampled, manifest)
    synthetic = frame["image_id"].str.startswith("synthetic_")
    assert synthetic.sum() == len(resampled) - len(source)
    assert frame.loc[synthetic, "age"].isna().all()  # no patient behind a synthetic image
    assert pipeline.decode(resampled[len(resampled) - 1]["image"]).shape == (16, 16, 3)


def test_worker_processes_deliver_the_same_batches(prepared):
    _, _, out, manifest = prepared
    loader, labels = _loader(out, manifest, ops=["flip_h", "rotate"])
    plan, _ = pipeline.training_plan(labels, 7, epochs=1, global_batch=8, seed=2)
    plan = plan[:48]
    inline = list(pipeline.train_dataset(loader, plan, 8, workers=0))
    parallel = list(pipeline.train_dataset(loader, plan, 8, workers=2))
    assert len(inline) == len(parallel) == 6
    for a, b in zip(inline, parallel):
        np.testing.assert_array_equal(a["image"], b["image"])
        assert list(a["image_id"]) == list(b["image_id"])


def test_one_process_can_prepare_several_datasets(prepared, tmp_path):
    table, split, _, _ = prepared
    for name in ("a", "b"):
        manifest = prepare.prepare(table, split, str(tmp_path / name), image_size=16)
        assert manifest["status"] == "prepared"
        assert len(prepare.open_split(str(tmp_path / name), "val")) == manifest["splits"]["val"]


def test_preparing_and_reading_leave_nothing_in_the_temp_dir(prepared, tmp_path, monkeypatch):
    """TFDS's builder made an empty tmp*tfds folder in the system temp dir per new dataset."""
    import os
    import tempfile

    table, split, _, _ = prepared
    private = tmp_path / "system_tmp"  # a temp dir of our own: no other process writes here
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    assert tempfile.gettempdir() == str(private)
    out = str(tmp_path / "out")
    assert prepare.prepare(table, split, out, image_size=16)["status"] == "prepared"
    assert prepare.prepare(table, split, out, image_size=16)["status"] == "unchanged"
    assert len(prepare.open_split(out, "val")) > 0
    assert sorted(os.listdir(private)) == []
