"""Xception ImageNet weights from Keras files, read with h5py (no TensorFlow, no Keras).

Two layouts are understood:
- the keras-applications HDF5 file (`xception_weights_tf_dim_ordering_tf_kernels_notop.h5`):
  root attribute `layer_names`; each layer group has `weight_names` ("block1_conv1/kernel:0");
- a Keras 3 `.keras` zip: `config.json` + `model.weights.h5`, where a layer's variables sit
  at `layers/<snake_case(class)>[_<n>]/vars/<i>`, named by a per-class counter over the
  model's layer list, not by the layer's own name; config.json gives that list.

Either way we get {keras layer name: [arrays in Keras variable order]}, then map names to
our Xception. The four unnamed residual 1x1 convolutions (conv2d, conv2d_1, ... or
conv2d_1 ... conv2d_4 in older files) and their BatchNorms are taken in counter order.
"""

from __future__ import annotations

import io
import json
import re
import zipfile

import numpy as np

from multimodal.models.pretrained import WeightError

BN_VARS = ("scale", "bias", "mean", "var")  # Keras: gamma, beta, moving_mean, moving_variance


class _Layers(dict):
    """Layer arrays that remember which were read and name a missing layer clearly."""

    def __init__(self, layers, path):
        super().__init__(layers)
        self.path, self.read = path, set()

    def __getitem__(self, name):
        if name not in self:
            raise WeightError(f"{self.path} has no layer {name!r} (an Xception file with "
                              f"{len(self)} weighted layers)")
        self.read.add(name)
        return super().__getitem__(name)


def snake_case(name: str) -> str:
    """Keras' class-name -> storage-name rule (SeparableConv2D -> separable_conv2d)."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _read_h5(f) -> dict[str, list[np.ndarray]]:
    if "model_weights" in f:  # a whole-model .h5 save keeps weights one level down
        f = f["model_weights"]
    layers = {}
    for raw in f.attrs["layer_names"]:
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        group = f[name]
        names = [w.decode() if isinstance(w, bytes) else str(w)
                 for w in group.attrs.get("weight_names", [])]
        if names:
            layers[name] = [np.asarray(group[w]) for w in names]
    return layers


def _read_keras_zip(path: str) -> dict[str, list[np.ndarray]]:
    import h5py

    with zipfile.ZipFile(path) as z:
        config = json.loads(z.read("config.json"))
        weights = io.BytesIO(z.read("model.weights.h5"))
    layers, used = {}, {}
    with h5py.File(weights, "r") as f:
        for layer in config["config"]["layers"]:
            key = snake_case(layer["class_name"])
            used[key] = used.get(key, -1) + 1
            store = key if used[key] == 0 else f"{key}_{used[key]}"
            group = f.get(f"layers/{store}/vars")
            if group is not None and len(group):
                layers[layer["config"]["name"]] = [np.asarray(group[str(i)])
                                                   for i in range(len(group))]
    return layers


def read_keras_layers(path: str) -> dict[str, list[np.ndarray]]:
    """{layer name: arrays} from a Keras .h5 weight file or a Keras 3 .keras zip."""
    if zipfile.is_zipfile(path):
        return _read_keras_zip(path)
    import h5py

    with h5py.File(path, "r") as f:
        return _read_h5(f)


def _counter(name: str) -> int:
    match = re.search(r"_(\d+)$", name)
    return int(match.group(1)) if match else 0


def _sep(out, ours, layers, keras_name):
    depthwise, pointwise = layers[keras_name][:2]
    out[f"{ours}.sep.depthwise.kernel"] = np.transpose(depthwise, (0, 1, 3, 2))  # [k,k,C,1]->[k,k,1,C]
    out[f"{ours}.sep.pointwise.kernel"] = pointwise
    out.update({f"{ours}.bn.{v}": a for v, a in zip(BN_VARS, layers[keras_name + "_bn"])})


def xception_weights(path: str, middle_blocks: int = 8) -> dict[str, np.ndarray]:
    """Keras Xception weights as {our.param.path: array} (see `load_weights`)."""
    layers = _Layers(read_keras_layers(path), path)
    out = {"conv1.kernel": layers["block1_conv1"][0], "conv2.kernel": layers["block1_conv2"][0]}
    for i, name in ((1, "block1_conv1_bn"), (2, "block1_conv2_bn")):
        out.update({f"bn{i}.{v}": a for v, a in zip(BN_VARS, layers[name])})
    residual_convs = sorted((n for n in layers if re.fullmatch(r"conv2d(_\d+)?", n)),
                            key=_counter)
    residual_bns = sorted((n for n in layers if re.fullmatch(r"batch_normalization(_\d+)?", n)),
                          key=_counter)
    if len(residual_convs) != 4 or len(residual_bns) != 4:
        raise ValueError(f"{path}: expected 4 residual Conv2D/BatchNormalization layers, found "
                         f"{residual_convs} / {residual_bns}; is this an Xception file?")
    downs = [f"entry.{i}" for i in range(3)] + ["exit"]
    first_blocks = [2, 3, 4, 5 + middle_blocks]  # Keras numbers blocks from 1
    for ours, block, conv, bn in zip(downs, first_blocks, residual_convs, residual_bns):
        out[f"{ours}.res_conv.kernel"] = layers[conv][0]
        out.update({f"{ours}.res_bn.{v}": a for v, a in zip(BN_VARS, layers[bn])})
        for s in (1, 2):
            _sep(out, f"{ours}.sep{s}", layers, f"block{block}_sepconv{s}")
    for m in range(middle_blocks):
        for s in range(3):
            _sep(out, f"middle.{m}.seps.{s}", layers, f"block{5 + m}_sepconv{s + 1}")
    for s in (1, 2):
        _sep(out, f"sep{2 + s}", layers, f"block{6 + middle_blocks}_sepconv{s}")
    if "predictions" in layers:  # a file with the ImageNet classifier (include_top=True)
        out["classifier.kernel"], out["classifier.bias"] = layers["predictions"]
    left = sorted(set(layers) - layers.read)
    if left:
        raise WeightError(f"{path}: layers {left} map to nothing in Xception with "
                          f"{middle_blocks} middle blocks")
    return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}
