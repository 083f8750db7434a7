"""Reading an HF Qwen2.5-VL vision config into component-builder arguments, with checks.

The rules are the NumPy reference's (``reference.VisionConfig``; tests keep the two equal):
the five sizes that define a tower must be present - HF would silently take its class defaults,
among them ``hidden_size`` 3584 where every released tower has 1280 - every size is a positive
int, heads divide the width into head_dims divisible by 4 (2D rotary), the window is whole merge
blocks, full-attention indexes are non-negative ints (past ``depth``: a warning, as HF runs them).
Every error names the field and value.
"""

import warnings

from ._activations import ACTIVATIONS

__all__ = ["encoder_kwargs"]

REQUIRED = ("depth", "hidden_size", "num_heads", "intermediate_size", "out_hidden_size")
# HF's class defaults for the required fields, quoted by the error that refuses to guess them
HF_REQUIRED_DEFAULTS = {
    "depth": 32,
    "hidden_size": 3584,
    "num_heads": 16,
    "intermediate_size": 3420,
    "out_hidden_size": 3584,
}
# HF's class defaults for the other fields (the same values in every released config)
HF_OPTIONAL_DEFAULTS = {
    "patch_size": 14,
    "temporal_patch_size": 2,
    "spatial_merge_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "in_channels": 3,
    "hidden_act": "silu",
}
# other spellings: HF's attribute_map, and the released config.json's "in_chans"
ALIASES = {"num_hidden_layers": "depth", "num_attention_heads": "num_heads", "in_chans": "in_channels"}
_INTS = REQUIRED + ("patch_size", "temporal_patch_size", "spatial_merge_size", "window_size", "in_channels")


def encoder_kwargs(config) -> dict:
    """HF vision config -> ``qwen2_5_vision_encoder`` keyword arguments (HF's names + ``rope_base``).

    Args:
        config: ``Qwen2_5_VLVisionConfig(...).to_dict()``, a checkpoint's ``vision_config`` dict, or
            an HF config object. Fields the tower does not use are ignored.

    Raises:
        TypeError: ``config`` is not a dict.
        ValueError: a missing required field or an invalid value, named.
    """
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict (an HF vision config), got {type(config).__name__}")
    config = dict(config)
    for alias, name in ALIASES.items():
        if alias in config and name not in config:
            config[name] = config[alias]
    missing = [name for name in REQUIRED if name not in config]
    if missing:
        raise ValueError(
            f"vision config lacks {missing}; HF would silently use its defaults "
            f"{ {name: HF_REQUIRED_DEFAULTS[name] for name in missing} }, refusing to guess"
        )
    kwargs = {name: config[name] for name in REQUIRED}
    kwargs.update({name: config.get(name, default) for name, default in HF_OPTIONAL_DEFAULTS.items()})
    kwargs["fullatt_block_indexes"] = _block_indexes(kwargs["fullatt_block_indexes"])
    kwargs["rope_base"] = _rope_base(config)
    _check(kwargs)
    return kwargs


def _block_indexes(value) -> list[int]:
    # strings after a lossy JSON round trip are a known pitfall; HF tests `i in indexes`, which "7" never matches
    if isinstance(value, (str, int)):
        raise ValueError(f"fullatt_block_indexes must be a list of ints, got {value!r}")
    try:
        return [int(i) for i in value]
    except (TypeError, ValueError):
        raise ValueError(f"fullatt_block_indexes must be ints, got {value!r}") from None


def _rope_base(config: dict):
    rope = config.get("rope_parameters") or {}
    rope_type = rope.get("rope_type", "axial")
    if rope_type != "axial":
        raise ValueError(f"vision rope_parameters.rope_type={rope_type!r}: only 'axial' exists in HF")
    theta = rope.get("rope_theta", config.get("rope_theta"))
    return 10_000.0 if theta is None else theta


def _check(kw: dict) -> None:
    for name in _INTS:
        value = kw[name]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"vision config {name} must be a positive int, got {value!r}")
    if kw["hidden_size"] % kw["num_heads"]:
        raise ValueError(f"vision config hidden_size={kw['hidden_size']} is not divisible by num_heads={kw['num_heads']}")
    head_dim = kw["hidden_size"] // kw["num_heads"]
    if head_dim % 4:
        raise ValueError(
            f"vision config head_dim = hidden_size/num_heads = {head_dim} must be divisible by 4 "
            "(2D rotary splits each head into h and w halves, each rotated in pairs)"
        )
    unit = kw["patch_size"] * kw["spatial_merge_size"]
    if kw["window_size"] % unit:
        raise ValueError(
            f"vision config window_size={kw['window_size']} must be a multiple of patch_size*spatial_merge_size={unit}"
        )
    _check_fullatt_indexes(kw["fullatt_block_indexes"], kw["depth"])
    if not isinstance(kw["hidden_act"], str) or kw["hidden_act"] not in ACTIVATIONS:
        raise ValueError(f"vision config hidden_act={kw['hidden_act']!r} is not supported; use one of {tuple(ACTIVATIONS)}")
    if not (isinstance(kw["rope_base"], (int, float)) and kw["rope_base"] > 0):
        raise ValueError(f"vision config rope_theta must be a positive number, got {kw['rope_base']!r}")
    kw["rope_base"] = float(kw["rope_base"])


def _check_fullatt_indexes(indexes, depth):
    """As reference.vision_config.check_fullatt_indexes: indexes >= depth warn (HF runs them, they
    match no block), negative ones are refused (HF does not count from the end)."""
    negative = [i for i in indexes if i < 0]
    if negative:
        raise ValueError(f"vision config fullatt_block_indexes holds {negative[0]}, negative: HF does not count "
                         f"blocks from the end (`layer_num in fullatt_block_indexes` never matches it)")
    past = [i for i in indexes if i >= depth]
    if past:
        warnings.warn(f"vision config fullatt_block_indexes holds {past}, at or past depth={depth}: no block has "
                      f"those indexes, so they select nothing (as in HF)", UserWarning, stacklevel=3)
