"""Xception weights from Keras files: both layouts written here with h5py, read without Keras."""

import io
import json
import zipfile

import h5py
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from multimodal.models import create_encoder
from multimodal.models.pretrained import WeightError, load_pretrained_encoder

WIDTH, MIDDLE = 0.05, 2


def c(n):  # the Xception module's channel rule
    return max(8, int(n * WIDTH))


def keras_layers(old_names: bool):
    """(name, class, [shapes]) in keras-applications' creation order for a small Xception."""
    layers = [("input_1", "InputLayer", [])]

    def conv(name, cin, cout, k):
        layers.append((name, "Conv2D", [(k, k, cin, cout)]))

    def bn(name, ch):
        layers.append((name, "BatchNormalization", [(ch,)] * 4))

    def sep(name, cin, cout):
        layers.append((name + "_act", "Activation", []))
        layers.append((name, "SeparableConv2D", [(3, 3, cin, 1), (1, 1, cin, cout)]))
        bn(name + "_bn", cout)

    conv("block1_conv1", 3, c(32), 3), bn("block1_conv1_bn", c(32))
    conv("block1_conv2", c(32), c(64), 3), bn("block1_conv2_bn", c(64))
    downs = [(2, c(64), c(128), c(128)), (3, c(128), c(256), c(256)),
             (4, c(256), c(728), c(728)), (5 + MIDDLE, c(728), c(728), c(1024))]
    for n, (block, cin, c1, c2) in enumerate(downs):
        suffix = f"_{n + 1}" if old_names else (f"_{n}" if n else "")
        conv("conv2d" + suffix, cin, c2, 1), bn("batch_normalization" + suffix, c2)
        sep(f"block{block}_sepconv1", cin, c1), sep(f"block{block}_sepconv2", c1, c2)
        layers.append((f"block{block}_pool", "MaxPooling2D", []))
        if block == 4:
            for m in range(MIDDLE):
                for s in range(1, 4):
                    sep(f"block{5 + m}_sepconv{s}", c(728), c(728))
    sep(f"block{6 + MIDDLE}_sepconv1", c(1024), c(1536))
    sep(f"block{6 + MIDDLE}_sepconv2", c(1536), c(2048))
    rng = np.random.default_rng(0)
    out = [(name, cls, [rng.standard_normal(s).astype(np.float32) for s in shapes])
           for name, cls, shapes in layers]
    for _, cls, arrays in out:
        if cls == "BatchNormalization":  # a variance is positive
            arrays[3] = np.abs(arrays[3]) + 0.5
    return out


def write_h5(path, layers):
    """keras-applications layout: layer_names, per-layer weight_names."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name, _, _ in layers]
        for name, _, arrays in layers:
            group = f.create_group(name)
            names = [f"{name}/w{i}:0" for i in range(len(arrays))]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for n, a in zip(names, arrays):
                group.create_dataset(n, data=a)


def write_keras3(path, layers):
    """Keras 3 layout: config.json + model.weights.h5 with per-class counter names."""
    buffer, counts = io.BytesIO(), {}
    with h5py.File(buffer, "w") as f:
        for name, cls, arrays in layers:
            key = {"Conv2D": "conv2d", "SeparableConv2D": "separable_conv2d",
                   "BatchNormalization": "batch_normalization", "MaxPooling2D": "max_pooling2d",
                   "Activation": "activation", "InputLayer": "input_layer"}[cls]
            counts[key] = counts.get(key, -1) + 1
            group = f.create_group(f"layers/{key}{'_' + str(counts[key]) if counts[key] else ''}/vars")
            for i, a in enumerate(arrays):
                group.create_dataset(str(i), data=a)
    config = {"class_name": "Functional", "config": {"layers": [
        {"class_name": cls, "config": {"name": name}} for name, cls, _ in layers]}}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
        z.writestr("model.weights.h5", buffer.getvalue())


def _encoder():
    return create_encoder("xception", width=WIDTH, middle_blocks=MIDDLE, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("layout", ["h5", "keras"])
def test_every_xception_tensor_lands_where_keras_had_it(tmp_path, layout):
    layers = keras_layers(old_names=layout == "h5")
    path = str(tmp_path / f"xception.{layout}")
    (write_h5 if layout == "h5" else write_keras3)(path, layers)
    encoder = _encoder()
    assert load_pretrained_encoder(encoder, path) == []  # every tensor used, none left over
    arrays = {name: a for name, _, a in layers}
    np.testing.assert_array_equal(encoder.conv1.kernel[...], arrays["block1_conv1"][0])
    np.testing.assert_array_equal(encoder.bn2.var[...], arrays["block1_conv2_bn"][3])
    residual = "conv2d_4" if layout == "h5" else "conv2d_3"  # the exit flow's 1x1 convolution
    np.testing.assert_array_equal(encoder.exit.res_conv.kernel[...], arrays[residual][0])
    depthwise = arrays["block3_sepconv2"][0]  # Keras [3,3,C,1] -> grouped conv [3,3,1,C]
    np.testing.assert_array_equal(encoder.entry[1].sep2.sep.depthwise.kernel[...],
                                  depthwise.transpose(0, 1, 3, 2))
    np.testing.assert_array_equal(encoder.middle[1].seps[2].bn.scale[...],
                                  arrays[f"block{4 + MIDDLE}_sepconv3_bn"][0])
    np.testing.assert_array_equal(encoder.sep4.sep.pointwise.kernel[...],
                                  arrays[f"block{6 + MIDDLE}_sepconv2"][1])
    encoder.eval()
    out = encoder(jnp.zeros((1, 71, 71, 3)))
    assert out.shape == (1, c(2048)) and np.isfinite(np.asarray(out)).all()


def test_a_missing_layer_or_a_wrong_shape_is_named(tmp_path):
    layers = keras_layers(old_names=True)
    path = str(tmp_path / "partial.h5")
    write_h5(path, [layer for layer in layers if layer[0] != "block5_sepconv2"])
    with pytest.raises(WeightError, match="no layer 'block5_sepconv2'"):
        load_pretrained_encoder(_encoder(), path)
    bad = [(n, k, [a[:, :, :2] for a in arrays] if n == "block1_conv2" else arrays)
           for n, k, arrays in layers]
    write_h5(path, bad)
    with pytest.raises(WeightError, match=r"conv2.kernel has shape \(3, 3, 2, 8\), the model "):
        load_pretrained_encoder(_encoder(), path)
    with pytest.raises(ValueError, match="for the xception encoder only"):
        load_pretrained_encoder(create_encoder("small_cnn", rngs=nnx.Rngs(0)), path)
