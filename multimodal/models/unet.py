"""U-Net (Ronneberger et al. 2015) for binary lesion segmentation, optionally on an
EfficientNet-Lite encoder.

- `unet`: the classic network. Encoder: `depth + 1` DoubleConv blocks (3x3 conv,
  BatchNorm, ReLU, twice) of `width * 2**i` channels with 2x2 max-pooling between them;
  decoder: per level an up-sampling (`up: transpose`, a 2x2 stride-2 transposed convolution
  halving the channels, or `bilinear` resizing) joined to the encoder's activation at that
  resolution (skip connection) and a DoubleConv.
- `unet_efficientnet_lite0|1|2`: the encoder is EfficientNet-Lite (efficientnet_lite.py);
  its last activation at each stride (2, 4, 8, 16, 32) is a skip, the decoder climbs them
  with the same Up blocks and one more to full resolution. `model.pretrained:
  efficientnet_lite0` (the variant's name) starts the encoder from ImageNet weights
  (`data.normalize: minus1_1` matches them).

Any input size works: an up-sampled map is padded or cropped to its skip's size. The
output is one logit per pixel, [B, H, W, 1] float32 (sigmoid > 0.5: lesion). Like the
encoders, a U-Net keeps its downsampling path in `encoder` (with `layer_order`), so
two-stage fine-tuning (`train.freeze_encoder_epochs`, `train.unfreeze_from`) applies.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from multimodal.errors import ConfigError
from multimodal.models.efficientnet_lite import VARIANTS, EfficientNetLite
from multimodal.models.layers import Conv, ConvReLU, host_init, max_pool
from multimodal.models.pretrained import load_pretrained_encoder
from multimodal.models.registry import DefaultCfg, Weights, register_family

UPSAMPLING = ("transpose", "bilinear")


class DoubleConv(nnx.Module):
    """(3x3 convolution, BatchNorm, ReLU) twice."""

    def __init__(self, cin: int, cout: int, *, dtype, rngs):
        self.first = ConvReLU(cin, cout, batch_norm=True, dtype=dtype, rngs=rngs)
        self.second = ConvReLU(cout, cout, batch_norm=True, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        return self.second(self.first(x))


def _fit_to(x, size: tuple[int, int]):
    """Zero-pad (bottom/right) or crop x's spatial axes to `size`."""
    h, w = x.shape[1], x.shape[2]
    x = x[:, :size[0], :size[1]]
    return jnp.pad(x, [(0, 0), (0, max(0, size[0] - h)), (0, max(0, size[1] - w)), (0, 0)])


class Up(nnx.Module):
    """Up-sample x2, join the skip (when given), DoubleConv."""

    def __init__(self, cin: int, skip: int, cout: int, mode: str, *, dtype, rngs):
        if mode not in UPSAMPLING:
            raise ConfigError(f"model.encoder_options.up: {mode!r} is not one of "
                              f"{list(UPSAMPLING)}")
        self.mode = mode
        self.up = (nnx.ConvTranspose(cin, cin // 2, (2, 2), strides=(2, 2), padding="VALID",
                                     kernel_init=partial(host_init, scale=2.0), dtype=dtype,
                                     rngs=rngs) if mode == "transpose" else None)
        self.conv = DoubleConv((cin // 2 if mode == "transpose" else cin) + skip, cout,
                               dtype=dtype, rngs=rngs)

    def __call__(self, x, skip=None, size=None):
        size = tuple(skip.shape[1:3]) if skip is not None else size
        if self.up is not None:
            x = _fit_to(self.up(x), size)
        else:
            x = jax.image.resize(x, (x.shape[0], *size, x.shape[3]), "bilinear")
        if skip is not None:
            x = jnp.concatenate([skip, x.astype(skip.dtype)], axis=-1)
        return self.conv(x)


class UNetEncoder(nnx.Module):
    """The classic contracting path: DoubleConv blocks, 2x2 max-pooling between them."""

    def __init__(self, channels: tuple[int, ...], *, dtype, rngs):
        chans = (3, *channels)
        self.blocks = nnx.List([DoubleConv(a, b, dtype=dtype, rngs=rngs)
                                for a, b in zip(chans[:-1], chans[1:])])
        self.layer_order = ("blocks",)

    def pyramid(self, x) -> list:
        """Each block's activation, full resolution first."""
        outs = []
        for i, block in enumerate(self.blocks):
            if i:
                x = max_pool(x, 2, 2)
            x = block(x)
            outs.append(x)
        return outs


def lite_taps(encoder: EfficientNetLite) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(block indices, channels) of the last block at each stride of an EfficientNet-Lite."""
    blocks = list(encoder.blocks)
    taps = tuple(i for i in range(len(blocks))
                 if i == len(blocks) - 1 or blocks[i + 1].depthwise_conv.stride == 2)
    return taps, tuple(blocks[i].bn2.num_features for i in taps)


def lite_pyramid(encoder: EfficientNetLite, taps: tuple[int, ...], x) -> list:
    """EfficientNet-Lite activations at strides 2, 4, 8, 16, 32 (the stem, then the blocks;
    its 1x1 head is not used)."""
    x = nnx.relu6(encoder.bn0(encoder.conv_stem(x)))
    outs = []
    for i, block in enumerate(encoder.blocks):
        x = block(x)
        if i in taps:
            outs.append(x)
    return outs


class UNet(nnx.Module):
    """Encoder pyramid -> Up blocks with skips -> 1x1 convolution to one logit per pixel.

    `encoder`: a `UNetEncoder` (skips from full resolution on) or an `EfficientNetLite`
    (skips from stride 2 on: one more Up block without a skip reaches full resolution).
    """

    def __init__(self, encoder, up: str = "transpose", *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.encoder = encoder
        if isinstance(encoder, EfficientNetLite):
            self.taps, skips = lite_taps(encoder)
            full_resolution = False
        else:
            self.taps, skips = (), tuple(b.second.conv.out_features for b in encoder.blocks)
            full_resolution = True
        ups, cin = [], skips[-1]
        for skip in reversed(skips[:-1]):
            ups.append(Up(cin, skip, skip, up, dtype=dtype, rngs=rngs))
            cin = skip
        if not full_resolution:
            ups.append(Up(cin, 0, max(16, cin // 2), up, dtype=dtype, rngs=rngs))
            cin = max(16, cin // 2)
        self.ups = nnx.List(ups)
        self.head = Conv(cin, 1, (1, 1), dtype=dtype, rngs=rngs)
        self.layer_order = ("encoder", "ups", "head")

    def __call__(self, x, *, rngs=None):
        size = tuple(x.shape[1:3])
        if isinstance(self.encoder, EfficientNetLite):
            pyramid = lite_pyramid(self.encoder, self.taps, x)
        else:
            pyramid = self.encoder.pyramid(x)
        y, skips = pyramid[-1], pyramid[:-1][::-1]
        for i, up in enumerate(self.ups):
            y = up(y, skips[i] if i < len(skips) else None, size=size)
        return self.head(y).astype(jnp.float32)


# -- pretrained encoders: ImageNet EfficientNet-Lite ------------------------------------
def _lite_name(name: str) -> bool:
    return name in {f"efficientnet_{v}" for v in VARIANTS}


def _check_lite(name: str, segmenter: str) -> None:
    if segmenter != f"unet_{name}":
        raise ConfigError(f"model.pretrained: {name} weights fit the encoder of "
                          f"model.segmenter=unet_{name}, not {segmenter}")


def _load_lite(model: UNet, name: str) -> list[str]:
    return load_pretrained_encoder(model.encoder, name)


# -- the family and its models ----------------------------------------------------------
UNET = register_family(
    "unet", modules=(UNet,), default_cfg=DefaultCfg(128), task="segmentation",
    weights=Weights(" | ".join(f"efficientnet_{v}" for v in VARIANTS) + " (the ImageNet "
                    "encoder of unet_efficientnet_lite0|1|2)", claims=_lite_name,
                    check=_check_lite, load=_load_lite))


@UNET.register
def unet(*, dtype=jnp.float32, rngs, depth: int = 4, width: int = 32, up: str = "transpose"):
    """The classic U-Net: `depth` poolings, `width` channels at full resolution."""
    if not 1 <= depth <= 7 or width < 1:
        raise ConfigError(f"model.encoder_options: U-Net depth {depth} (1-7) / width {width} "
                          "(>= 1) out of range")
    encoder = UNetEncoder(tuple(width * 2 ** i for i in range(depth + 1)), dtype=dtype,
                          rngs=rngs)
    return UNet(encoder, up, dtype=dtype, rngs=rngs)


def _lite_factory(variant: str):
    def build(*, dtype=jnp.float32, rngs, up: str = "transpose", width=None, depth=None,
              depthwise_impl="shift"):
        encoder = EfficientNetLite(variant, width=width, depth=depth, dropout=0.0,
                                   depthwise_impl=depthwise_impl, dtype=dtype, rngs=rngs)
        return UNet(encoder, up, dtype=dtype, rngs=rngs)
    build.__name__ = build.__qualname__ = f"unet_efficientnet_{variant}"
    return build


for _variant, (_, _, _resolution, _) in VARIANTS.items():
    UNET.register(_lite_factory(_variant), input_size=_resolution, normalize="minus1_1",
                  mean=(127.0,) * 3, std=(128.0,) * 3)
