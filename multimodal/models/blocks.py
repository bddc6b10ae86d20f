"""Two-stage fine-tuning: which parameters train, and when.

Stage 1 (`train.freeze_encoder_epochs`): the image encoder is frozen and the
heads train. Stage 2: the encoder trains from the block named by
`train.unfreeze_from` on (e.g. "blocks.12": the 13th entry of the encoder's
`blocks` list and everything after it in forward order), at
`train.finetune_lr_scale` times the learning rate; earlier blocks stay frozen.
`unfreeze_from: none` keeps the whole encoder frozen (a linear probe, or heads
trained on cached features). Encoders declare their forward order in `layer_order`.
"""

from __future__ import annotations

import jax
from multimodal.errors import ConfigError


def _key(entry) -> str | int:
    return getattr(entry, "key", getattr(entry, "idx", getattr(entry, "name", entry)))


def position(path: tuple, layer_order) -> tuple:
    """(index of the top-level layer in forward order, list index or -1) of an encoder path."""
    top = str(path[0])
    if top not in layer_order:
        raise ValueError(f"encoder attribute {top!r} is missing from its layer_order {layer_order}")
    index = path[1] if len(path) > 1 and isinstance(path[1], int) else -1
    return layer_order.index(top), index


def parse_block(name: str, layer_order) -> tuple:
    if name == "none":  # past every layer: nothing in the encoder trains
        return len(layer_order), -1
    top, _, index = name.partition(".")
    if top not in layer_order:
        raise ConfigError(f"train.unfreeze_from {name!r}: {top!r} is not one of the encoder's layers "
                         f"{list(layer_order)}")
    return layer_order.index(top), int(index) if index else -1


def param_labels(params, layer_order, unfreeze_from: str | None):
    """A pytree like `params` of 'head' | 'encoder' | 'frozen'."""
    start = parse_block(unfreeze_from, layer_order) if unfreeze_from else None

    def label(path, _):
        keys = tuple(_key(p) for p in path)
        if keys[0] != "encoder":
            return "head"
        if start is None or position(keys[1:], layer_order) >= start:
            return "encoder"
        return "frozen"

    return jax.tree_util.tree_map_with_path(label, params)
