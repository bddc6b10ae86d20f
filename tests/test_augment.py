import numpy as np
import pytest

from multimodal.data.images import augment
from multimodal.data.images.augment import OPS, apply_ops, parse_ops


def _image(seed=0, h=32, w=40):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _blob():
    """A bright square off-centre on a dark background."""
    image = np.full((40, 40, 3), 20, np.uint8)
    image[8:16, 24:32] = 230
    return image


def _centroid(image):
    ys, xs = np.nonzero(image[..., 0] > 128)
    return ys.mean(), xs.mean()


def test_flips_really_flip():
    image = _image()
    np.testing.assert_array_equal(augment.flip_h(image, _rng(), p=1.0), image[:, ::-1])
    np.testing.assert_array_equal(augment.flip_v(image, _rng(), p=1.0), image[::-1])
    np.testing.assert_array_equal(augment.flip_h(image, _rng(), p=0.0), image)


def test_rotate90_is_a_quarter_turn():
    image = _image(h=20, w=20)
    out = augment.rotate90(image, _rng(1))
    assert any(np.array_equal(out, np.rot90(image, k)) for k in range(4))


def test_rotate_moves_an_off_centre_blob_around_the_centre():
    image = _blob()
    y0, x0 = _centroid(image)
    y1, x1 = _centroid(augment._affine(image, angle=90))
    # a quarter turn about (20, 20) keeps the distance to the centre and moves the blob
    assert abs(np.hypot(y0 - 20, x0 - 20) - np.hypot(y1 - 20, x1 - 20)) < 1.5
    assert np.hypot(y1 - y0, x1 - x0) > 10


def test_zoom_translate_shear():
    image = _blob()
    area = (image[..., 0] > 128).sum()
    assert (augment._affine(image, scale=1.5)[..., 0] > 128).sum() > 1.8 * area
    y, x = _centroid(augment._affine(image, translate=(0.1, 0.0)))
    assert abs(x - (_centroid(image)[1] + 4)) < 0.6 and abs(y - _centroid(image)[0]) < 0.6
    sheared = augment._affine(image, shear=30)
    assert not np.array_equal(sheared, image)
    for name in ("zoom", "translate", "shear", "rotate"):
        assert OPS[name].fn(image, _rng()).shape == image.shape


def test_random_resized_crop_keeps_size_and_changes_content():
    image = _image()
    out = augment.random_resized_crop(image, _rng(), scale=(0.3, 0.5))
    assert out.shape == image.shape and not np.array_equal(out, image)


def test_colour_jitters_move_the_right_statistic():
    image = _image()
    grey = image.mean(-1)
    assert augment._enhance("Brightness", image, 1.3).mean() > image.mean() + 10
    assert augment._enhance("Contrast", image, 1.5).std() > image.std()
    sat = augment._enhance("Color", image, 0.0)
    assert np.abs(sat.astype(int) - sat.mean(-1, keepdims=True)).max() <= 2  # desaturated
    shifted = augment.hue(image, _rng(3), amount=0.5)
    assert shifted.shape == image.shape and not np.array_equal(shifted, image)
    assert abs(shifted.mean(-1).mean() - grey.mean()) < 30


def test_equalize_spreads_the_histogram():
    narrow = np.random.default_rng(0).integers(100, 130, (32, 32, 3), dtype=np.uint8)
    out = augment.equalize(narrow)
    assert out.max() - out.min() > 200 and narrow.max() - narrow.min() < 30


def test_clahe_raises_local_contrast_and_returns_three_equal_channels():
    narrow = np.random.default_rng(0).integers(100, 130, (64, 64, 3), dtype=np.uint8)
    out = augment.clahe(narrow)
    assert out.std() > 2 * narrow.std()
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_shades_of_gray_equalises_channel_norms():
    image = _image().astype(float)
    image[..., 0] *= 0.5  # a colour cast
    out = augment.shades_of_gray(image.astype(np.uint8), p=6).astype(float)
    norms = np.power(np.mean(np.power(out, 6), axis=(0, 1)), 1 / 6)
    before = np.power(np.mean(np.power(image, 6), axis=(0, 1)), 1 / 6)
    assert np.ptp(norms) / norms.mean() < 0.05 < np.ptp(before) / before.mean()
    gw = augment.gray_world(image.astype(np.uint8)).reshape(-1, 3).mean(0)
    assert np.ptp(gw) < 3


def test_grayscale_gives_three_equal_channels():
    out = augment.grayscale(_image())
    assert out.shape[-1] == 3 and (out[..., 0] == out[..., 2]).all()


def test_apply_ops_is_deterministic_and_skips_random_ops_in_evaluation():
    ops = parse_ops(["flip_h", {"rotate": {"degrees": 30}}, "color_jitter", "gray_world"])
    image = _image()
    a = apply_ops(image, ops, _rng(5), train=True)
    b = apply_ops(image, ops, _rng(5), train=True)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(apply_ops(image, ops, None, train=False),
                                  augment.gray_world(image))


def test_parse_ops_errors():
    with pytest.raises(ValueError, match="unknown augmentation 'blur'"):
        parse_ops(["blur"])
    with pytest.raises(ValueError, match="unknown option"):
        parse_ops([{"rotate": {"angle": 3}}])
    with pytest.raises(ValueError, match="expected a name"):
        parse_ops([{"rotate": {}, "flip_h": {}}])


def test_squash_shows_the_whole_picture_stretched_to_its_short_side():
    image = _blob()[:, :, :]  # 40x40: squash is the identity on a square
    np.testing.assert_array_equal(augment.squash(image, _rng(), p=1.0), image)
    wide = _image(h=30, w=40)
    assert augment.squash(wide, _rng(), p=1.0).shape == (30, 30, 3)
    np.testing.assert_array_equal(augment.squash(wide, _rng(), p=0.0), wide)
    mask = (wide[..., 0] > 128).astype(np.uint8)
    out, moved = augment.apply_ops_with_mask(wide, mask, parse_ops([{"squash": {"p": 1.0}}]),
                                             _rng(), train=True)
    assert out.shape[:2] == moved.shape == (30, 30) and set(np.unique(moved)) <= {0, 1}


def test_camera_ops_change_tone_colour_and_compression_as_documented():
    grey = np.full((16, 16, 3), 128, np.uint8)
    darker = augment.gamma(grey, _rng(), powers=(1.5, 1.5))  # 0.502 ** 1.5 * 255 = 91
    assert abs(int(darker[0, 0, 0]) - 91) <= 1
    cast = augment.white_balance(grey, _rng(1), amount=0.2).reshape(-1, 3).mean(0)
    assert np.ptp(cast) > 3 and abs(cast.mean() - 128) < 1.5  # a cast, brightness kept
    image = _image(h=64, w=64)
    lossy = augment.jpeg(image, _rng(), quality=(10, 10), p=1.0)
    assert lossy.shape == image.shape and np.abs(lossy.astype(int) - image).mean() > 5
    np.testing.assert_array_equal(augment.jpeg(image, _rng(), p=0.0), image)
    for name in ("gamma", "white_balance", "jpeg", "squash"):
        assert OPS[name].random  # augmentation: never at evaluation
