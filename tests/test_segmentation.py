"""Lesion segmentation: the U-Net, masks in the data path (checks, prepared records, joint
augmentation), Dice/IoU, and a U-Net trained end to end on the bundled sample and evaluated."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest
from flax import nnx
from PIL import Image

from conftest import HAM_HEADER, ham_rows, write_csv
from multimodal.config import load_config
from multimodal.run.files import load_run_config
from multimodal.data.pipeline import loaders as pipeline
from multimodal.data.records import prepare
from multimodal.data.split import grouped as splits
from multimodal.data.pipeline.metadata import MetadataEncoder
from multimodal.data.sources import ham10000, load_source
from multimodal.errors import ConfigError, DataError
from multimodal.evaluation.segmenter import bootstrap, per_image, summary
from multimodal.metrics import dice_iou, mask_counts, segmentation_metrics
from multimodal.models import ENCODERS, SEGMENTERS, create_segmenter
from multimodal.training.segmenter import SegLossSpec, mask_loss, per_example_loss
from scripts_helper import run_script

SAMPLE_UNET = ["--config", "configs/ham10000_sample_unet.yaml", "--no-progress"]


# -- the model ------------------------------------------------------------------------------
@pytest.mark.parametrize("name,options,shape", [
    ("unet", {"depth": 3, "width": 4}, (2, 32, 32, 3)),
    ("unet", {"depth": 2, "width": 4, "up": "bilinear"}, (1, 27, 41, 3)),  # odd sizes
    ("unet", {"depth": 3, "width": 4, "up": "transpose"}, (1, 30, 45, 3)),
    ("unet_efficientnet_lite0", {"width": 0.25, "depth": 0.5}, (2, 48, 64, 3)),
])
def test_unet_output_is_one_logit_per_pixel(name, options, shape):
    model = create_segmenter(name, rngs=nnx.Rngs(0), **options)
    model.eval()
    out = jax.eval_shape(lambda x: model(x), jax.ShapeDtypeStruct(shape, jnp.float32))
    assert out.shape == (*shape[:3], 1) and out.dtype == jnp.float32
    hash(nnx.graphdef(model))  # the trainer's jit takes it as a static argument
    assert model.encoder.layer_order  # two-stage fine-tuning finds the encoder's blocks


def test_segmenters_register_apart_from_the_encoders():
    assert {"unet", "unet_efficientnet_lite0"} <= set(SEGMENTERS)
    assert not set(SEGMENTERS) & set(ENCODERS)
    with pytest.raises(ConfigError, match="'small_cnn' is not a segmentation model"):
        create_segmenter("small_cnn", rngs=nnx.Rngs(0))
    with pytest.raises(ConfigError, match="up: 'nearest' is not one of"):
        create_segmenter("unet", rngs=nnx.Rngs(0), depth=1, width=2, up="nearest")


def test_unet_fits_a_tiny_batch():
    rng = np.random.default_rng(0)
    target = np.zeros((4, 16, 16, 1), np.float32)
    for i, (y, x) in enumerate(rng.integers(0, 9, (4, 2))):
        target[i, y:y + 7, x:x + 5] = 1
    images = jnp.asarray(target * 2 - 1 + rng.normal(0, 0.3, (4, 16, 16, 1)), jnp.float32)
    images = jnp.repeat(images, 3, axis=-1)
    model = create_segmenter("unet", rngs=nnx.Rngs(0), depth=2, width=4)
    opt = nnx.Optimizer(model, optax.adam(3e-2), wrt=nnx.Param)
    spec = SegLossSpec("bce_dice")

    @nnx.jit
    def step(model, opt):
        def loss(model):
            return mask_loss(spec, model(images), jnp.asarray(target))
        value, grads = nnx.value_and_grad(loss)(model)
        opt.update(model, grads)
        return value

    losses = [float(step(model, opt)) for _ in range(30)]
    # training mode: after 30 steps BatchNorm's running statistics are not settled yet, and
    # what is tested is that the network fits, not how fast its running averages converge
    pred = np.asarray(model(images))[..., 0] > 0
    assert np.isfinite(losses).all() and min(losses[-5:]) < 0.5 * losses[0], losses
    # an untrained or broken network scores about 0.2 here (14% of pixels are lesion)
    assert segmentation_metrics(pred, target[..., 0] > 0)["dice"] > 0.8


# -- metrics and losses ------------------------------------------------------------------
def test_dice_and_iou_match_hand_computed_values():
    target = np.zeros((3, 4, 4), bool)
    pred = np.zeros((3, 4, 4), bool)
    target[0, :2, :2] = True  # 4 true pixels
    pred[0, :2, :3] = True  # 6 predicted: TP 4, FP 2, FN 0
    target[1, :, :1] = True  # 4 true pixels, nothing predicted
    # image 2: both empty
    tp, fp, fn = mask_counts(pred, target)
    np.testing.assert_array_equal(np.stack([tp, fp, fn]), [[4, 0, 0], [2, 0, 0], [0, 4, 0]])
    dice, iou = dice_iou(tp, fp, fn)
    np.testing.assert_allclose(dice, [8 / 10, 0.0, 1.0])
    np.testing.assert_allclose(iou, [4 / 6, 0.0, 1.0])
    m = segmentation_metrics(pred, target)
    assert m["dice"] == pytest.approx((0.8 + 0 + 1) / 3)
    assert m["iou"] == pytest.approx((4 / 6 + 0 + 1) / 3)
    assert m["pooled_dice"] == pytest.approx(8 / (8 + 2 + 4))  # TP 4, FP 2, FN 4 overall
    assert m["pooled_iou"] == pytest.approx(4 / 10)


def test_evaluation_summary_and_lesion_bootstrap():
    target = np.zeros((4, 4, 4), bool)
    target[:, :2, :2] = True
    pred = target.copy()
    pred[1] = False  # image 1 missed entirely
    frame = pd.DataFrame({"image_id": list("abcd"), "group_id": ["g1", "g1", "g2", "g3"],
                          "label": ["nv"] * 4})
    rows = per_image(frame, pred, target)
    np.testing.assert_allclose(rows["dice"], [1, 0, 1, 1])
    s = summary(rows)
    assert s["dice"] == pytest.approx(0.75) and s["pooled_dice"] == pytest.approx(24 / 28)
    ci = bootstrap(rows, n_boot=300)
    assert ci["dice"][0] <= s["dice"] <= ci["dice"][1] and ci["dice"][1] == 1.0
    assert bootstrap(rows.iloc[2:], n_boot=50)["dice"] == [1.0, 1.0]


def test_losses_reward_the_right_mask():
    target = jnp.zeros((1, 8, 8, 1)).at[:, 2:6, 2:6].set(1.0)
    good, bad = (target * 2 - 1) * 8, -(target * 2 - 1) * 8
    for kind in ("bce", "dice", "bce_dice"):
        spec = SegLossSpec(kind)
        assert float(per_example_loss(spec, good, target)[0]) < 0.01
        assert float(per_example_loss(spec, bad, target)[0]) > 0.9
    # padding examples (mask 0) do not count
    both = jnp.concatenate([good, bad])
    targets = jnp.concatenate([target, target])
    assert float(mask_loss(SegLossSpec("dice"), both, targets, jnp.array([1.0, 0.0]))) < 0.01


# -- masks in the data path --------------------------------------------------------------
def _ham_with_masks(root, size=(16, 12), rows=None):
    """A HAM10000 folder whose images are white where their mask is (dark elsewhere)."""
    rows = rows or ham_rows()
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    w, h = size
    for row in rows:
        mask = np.zeros((h, w), np.uint8)
        y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
        mask[y:y + h // 2, x:x + w // 3] = 255  # an off-centre L: no flip maps it to itself
        mask[y + h // 2 - 2:y + h // 2, x:x + w // 2] = 255
        image = np.where(mask[..., None] > 0, 250, 30).astype(np.uint8).repeat(3, -1)
        Image.fromarray(image).save(root / "images" / f"{row[1]}.png")
        Image.fromarray(mask).save(root / "masks" / f"{row[1]}.png")
    write_csv(root / "HAM10000_metadata.csv", HAM_HEADER, rows)
    return rows


def _loader(root, ops, image_size, train=True):
    table = ham10000.load(str(root), masks=True)
    split = splits.train_val_test(table, seed=0)
    out = str(root / "prepared")
    manifest = prepare.prepare(table, split, out, image_size=image_size, encoding="png")
    source = prepare.open_split(out, "train")
    encoder = MetadataEncoder(manifest["metadata"]).fit(prepare.split_frame(source, manifest))
    return pipeline.ExampleLoader(source, manifest["classes"], encoder, manifest["metadata"],
                                  list(ops), image_size, pipeline.Normalizer(), train, seed=0,
                                  masks=True)


def test_a_flipped_image_and_its_mask_stay_aligned(tmp_path):
    """Lossless ops (flips, quarter turns, the random crop square) keep every pixel of the
    mask on the image's white region; colour jitter changes the image only."""
    _ham_with_masks(tmp_path / "ham", size=(40, 30))
    ops = ["flip_h", "flip_v", "rotate90", "color_jitter"]
    loader = _loader(tmp_path / "ham", ops, image_size=30)
    plain = pipeline.ExampleLoader(loader.source, loader.classes, loader.meta_encoder,
                                   loader.metadata_kinds, [], 30, pipeline.Normalizer(),
                                   train=False, seed=0, masks=True)
    moved = 0
    for position in range(40):
        example = loader((position, position % len(loader.source)))
        image, mask = example["image"], example["seg_mask"][..., 0]
        assert example["seg_mask"].shape == (30, 30, 1) and set(np.unique(mask)) <= {0.0, 1.0}
        np.testing.assert_array_equal(image.mean(-1) > 0, mask > 0.5)  # white (>127) = lesion
        still = plain((0, position % len(loader.source)))["seg_mask"][..., 0]
        moved += not np.array_equal(mask, still)
    assert moved > 20  # most examples were flipped, turned or cropped elsewhere


def _near_edge(mask, width=2):
    """Pixels of a binary mask within `width` pixels (8-neighbourhood steps) of its border."""
    h, w = mask.shape
    m = np.pad(mask, width, mode="edge")
    shifts = range(-width, width + 1)
    return np.any([m[width + dy:width + dy + h, width + dx:width + dx + w] != mask
                   for dy in shifts for dx in shifts], axis=0)


def test_resampling_ops_move_the_mask_with_nearest_neighbour(tmp_path):
    """Rotation, zoom and resized crops resample the image bilinearly and the mask by
    nearest neighbour: the mask stays binary and differs from the image's white region
    only along the lesion border (a 2 px band: three resamplings in a row round apart)."""
    _ham_with_masks(tmp_path / "ham", size=(40, 30))
    loader = _loader(tmp_path / "ham", [{"rotate": {"degrees": 30}}, "zoom",
                                        "random_resized_crop"], image_size=30)
    for position in range(12):
        example = loader((position, position))
        mask = example["seg_mask"][..., 0] > 0.5
        assert set(np.unique(example["seg_mask"])) <= {0.0, 1.0}
        wrong = (example["image"].mean(-1) > 0) != mask
        assert not (wrong & ~_near_edge(mask)).any(), position
        assert mask.any() and wrong.mean() < 0.15


def test_masks_are_part_of_the_prepared_inputs_hash(tmp_path):
    rows = _ham_with_masks(tmp_path / "ham")
    table = ham10000.load(str(tmp_path / "ham"), masks=True)
    split = splits.train_val_test(table, seed=0)
    settings = prepare.prepared_settings(16)
    before = prepare.inputs_hash(table, split, "split", settings)
    without = prepare.inputs_hash(ham10000.load(str(tmp_path / "ham")), split, "split", settings)
    Image.fromarray(np.full((12, 16), 255, np.uint8)).save(
        tmp_path / "ham" / "masks" / f"{rows[0][1]}.png")
    after = prepare.inputs_hash(table, split, "split", settings)
    assert len({before, without, after}) == 3


@pytest.mark.parametrize("problem,match", [
    ("size", r"mask size 17x12 differs from its image's 16x12: .*ISIC_0000003.png"),
    ("grey", r"mask is not binary \(3 distinct values, e.g. \[128\]; expected 0 and 255\): "
             r".*ISIC_0000003.png"),
    ("missing", r"mask file not found: .*masks/ISIC_0000003.png"),
])
def test_bad_masks_are_refused_naming_the_file_or_dropped(tmp_path, problem, match):
    rows = _ham_with_masks(tmp_path / "ham")
    path = tmp_path / "ham" / "masks" / f"{rows[3][1]}.png"
    if problem == "size":
        Image.fromarray(np.zeros((12, 17), np.uint8)).save(path)
    elif problem == "grey":
        Image.fromarray(np.array([[0, 128, 255] * 5 + [0]] * 12, np.uint8)).save(path)
    else:
        os.remove(path)
    with pytest.raises(DataError, match=match) as err:
        ham10000.load(str(tmp_path / "ham"), masks=True)
    assert err.value.line == 5 and "HAM10000_metadata.csv" in str(err.value)
    assert "on_missing=drop" in str(err.value)
    with pytest.warns(UserWarning, match="dropped 1 row"):
        table = ham10000.load(str(tmp_path / "ham"), masks=True, on_missing="drop")
    assert len(table) == len(rows) - 1 and rows[3][1] not in set(table.frame["image_id"])
    assert len(ham10000.load(str(tmp_path / "ham"))) == len(rows)  # classification: no masks


def test_masks_need_a_source_that_has_them(tmp_path):
    with pytest.raises(ConfigError, match="isic2018 has no segmentation masks"):
        load_source("isic2018", masks=True, root=str(tmp_path))
    (tmp_path / "ham").mkdir()
    write_csv(tmp_path / "ham" / "HAM10000_metadata.csv", HAM_HEADER, ham_rows(n_lesions=1))
    with pytest.raises(DataError, match="no mask folder"):
        ham10000.load(str(tmp_path / "ham"), masks=True, verify="none")


def test_lesion_crop_boxes_map_back_to_the_source_picture():
    from multimodal.data.images.geometry import to_source
    from multimodal.data.images.lesion_crop import lesion_box, mask_box

    mask = np.zeros((64, 64), bool)
    mask[16:32, 8:40] = True  # 32 wide, 16 high in the model's square
    assert mask_box(mask) == (8, 16, 40, 32)
    # squash of a 200x150 picture: x * 200/64, y * 150/64
    assert to_source((8, 16, 40, 32), 64, (200, 150), "squash") == (25.0, 37.5, 125.0, 75.0)
    # crop: the central 64-square of the 85x64 short-side resize (offset 10 px)
    assert to_source((0, 0, 64, 64), 64, (200, 150), "crop") == pytest.approx(
        (10 * 200 / 85, 0, 74 * 200 / 85, 150))
    # pad: 64x48 picture centred (8 px bars top and bottom)
    assert to_source((0, 8, 64, 56), 64, (200, 150), "pad") == (0, 0, 200, 150)
    box = lesion_box(mask, (200, 150), "squash", margin=0.1)  # square, 120 px side, centred
    assert box == (15, 0, 135, 120)
    assert lesion_box(np.zeros((64, 64), bool), (200, 150), "squash") == (0, 0, 200, 150)


# -- config ------------------------------------------------------------------------------
def test_the_task_chooses_its_losses_and_metrics():
    cfg = load_config("configs/ham10000_sample_unet.yaml", smoke=True)
    assert (cfg.task, cfg.modality, cfg.train.loss) == ("segmentation", "image", "bce_dice")
    assert load_config("configs/ham10000_sample.yaml").task == "classification"
    with pytest.raises(ConfigError, match="train.loss: 'cross_entropy' is not a segmentation"):
        load_config("configs/ham10000_sample.yaml", task="segmentation")
    with pytest.raises(ConfigError, match="train.loss: 'dice' is not a classification"):
        load_config("configs/ham10000_sample.yaml", ["train.loss=dice"])
    with pytest.raises(ConfigError, match="task: 'detection' is not one of"):
        load_config("configs/ham10000_sample.yaml", ["task=detection"])


# -- end to end --------------------------------------------------------------------------
def test_unet_trains_end_to_end_on_the_sample_and_is_evaluated(tmp_path):
    run = tmp_path / "unet"
    out = run_script("train.py", *SAMPLE_UNET, "--task", "segmentation", "--smoke",
                     "--workdir", str(run))
    assert "val Dice" in out.stdout
    assert load_run_config(str(run)).task == "segmentation"
    assert os.listdir(run / "checkpoints" / "latest") == ["3"] and (run / "curves.png").exists()
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"train_dice", "val_dice", "val_iou", "val_loss"} <= set(history[-1])
    assert 0 <= history[-1]["val_dice"] <= 1

    out = run_script("evaluate.py", "--checkpoint", str(run), "--bootstrap", "50")
    assert "Dice" in out.stdout
    result = json.loads((run / "eval" / "metrics.json").read_text())
    assert result["task"] == "segmentation" and result["split"] == "test"
    dice = result["metrics"]["dice"]
    assert 0 <= dice["ci95"][0] <= dice["value"] <= dice["ci95"][1] <= 1
    test_rows = pd.read_csv(run / "split.csv").query("split == 'test'")
    per_image_rows = pd.read_csv(run / "eval" / "per_image.csv")
    assert sorted(per_image_rows["image_id"]) == sorted(test_rows["image_id"])
    for name in ("overlays_best.png", "overlays_worst.png", "report.md", "report.html"):
        assert (run / "eval" / name).exists(), name


def test_a_classification_encoder_is_refused_before_any_work(tmp_path):
    from multimodal.run.mesh import make_mesh
    from multimodal.training.trainer import check_before_work

    # the older spelling (model.encoder: unet, as runs before model.segmenter saved it) loads;
    # an encoder beside a segmenter would be ignored, so it is refused
    old = load_config(None, ["task=segmentation", "model.encoder=unet", "train.loss=bce_dice",
                             "train.early_stop_metric=dice"])
    assert old.model.segmenter == "unet"
    cfg = load_config("configs/ham10000_sample_unet.yaml", ["model.encoder=resnet18"])
    with pytest.raises(ConfigError, match="names its model in model.segmenter"):
        check_before_work(cfg, str(tmp_path / "run"), False, make_mesh())
    cfg = load_config("configs/ham10000_sample_unet.yaml", ["model.segmenter=small_cnn"])
    with pytest.raises(ConfigError, match="'small_cnn' is not a segmentation model"):
        check_before_work(cfg, str(tmp_path / "run"), False, make_mesh())
    cfg = load_config("configs/ham10000_sample_unet.yaml", ["model.pretrained=efficientnet_lite0"])
    with pytest.raises(ConfigError, match="fit the encoder of model.segmenter=unet_efficientnet_lite0"):
        check_before_work(cfg, str(tmp_path / "run"), False, make_mesh())
    assert not (tmp_path / "run").exists()
