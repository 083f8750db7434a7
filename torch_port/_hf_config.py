"""An HF Qwen2.5-VL ``config.json`` -> the component builders' keyword arguments, every field checked once.

* vision: the reference's rules (``reference.VisionConfig``; tests keep them equal): the five sizes
  ``depth``, ``hidden_size``, ``num_heads``, ``intermediate_size``, ``out_hidden_size`` must be
  given (HF would take its class defaults, among them ``hidden_size`` 3584 where every released
  tower has 1280), each a positive int; heads give head_dims divisible by 4 (2D rotary); the
  window is whole merge blocks; full-attention indexes are non-negative ints (past ``depth``: a
  warning, as HF runs them). HF's names are translated to the builders' (torchtune's) here, once.
* text (released layout with the text fields at the top level, or transformers-5 ``text_config``):
  the six sizes must be given (HF's defaults are the 72B's); refused because the port does not
  implement them: a rope type other than default/mrope, sliding-window attention,
  ``attention_dropout`` != 0, ``hidden_act`` other than silu, a ``head_dim`` other than
  hidden_size / num_attention_heads. Other fields take HF's class defaults.

Every error names the field and its value. Plain dicts in, plain dicts out: nothing is built here.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

from ._activations import ACTIVATIONS
from ._hf_files import read_json

__all__ = [
    "HF_OPTIONAL_DEFAULTS",
    "HF_REQUIRED_DEFAULTS",
    "IMAGE_TOKEN_ID",
    "VIDEO_TOKEN_ID",
    "model_kwargs",
    "read_config",
    "text_kwargs",
    "tied_embeddings",
    "vision_encoder_kwargs",
    "vision_fields",
]

REQUIRED = ("depth", "hidden_size", "num_heads", "intermediate_size", "out_hidden_size")
# HF's class defaults for the required fields, quoted by the error that refuses to guess them
HF_REQUIRED_DEFAULTS = {"depth": 32, "hidden_size": 3584, "num_heads": 16, "intermediate_size": 3420,
                        "out_hidden_size": 3584}
# HF's class defaults for the other fields (the same values in every released config)
HF_OPTIONAL_DEFAULTS = {"patch_size": 14, "temporal_patch_size": 2, "spatial_merge_size": 2, "window_size": 112,
                        "fullatt_block_indexes": [7, 15, 23, 31], "in_channels": 3, "hidden_act": "silu"}
# other spellings: HF's attribute_map, and the released config.json's "in_chans"
ALIASES = {"num_hidden_layers": "depth", "num_attention_heads": "num_heads", "in_chans": "in_channels"}
_VISION_INTS = REQUIRED + ("patch_size", "temporal_patch_size", "spatial_merge_size", "window_size", "in_channels")
# HF name -> qwen2_5_vision_encoder's (torchtune's) name; the others are spelled alike
_VISION_TUNE_NAMES = {"hidden_size": "embed_dim", "depth": "num_layers", "intermediate_size": "intermediate_dim",
                      "out_hidden_size": "out_dim", "hidden_act": "activation"}


def _as_dict(config, what: str) -> dict:
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict ({what}), got {type(config).__name__}")
    return dict(config)


def vision_fields(config) -> dict:
    """An HF vision config, checked: its fields under HF's names, defaults filled in, plus
    ``rope_base`` (the rotary's theta).

    Args:
        config: ``Qwen2_5_VLVisionConfig(...).to_dict()``, a checkpoint's ``vision_config`` dict, or
            an HF config object. Fields the tower does not use are ignored.

    Raises:
        TypeError: ``config`` is not a dict.
        ValueError: a missing required field or an invalid value, named.
    """
    config = _as_dict(config, "an HF vision config")
    for alias, name in ALIASES.items():
        if alias in config and name not in config:
            config[name] = config[alias]
    missing = [name for name in REQUIRED if name not in config]
    if missing:
        raise ValueError(f"vision config lacks {missing}; HF would silently use its defaults "
                         f"{ {name: HF_REQUIRED_DEFAULTS[name] for name in missing} }, refusing to guess")
    fields = {name: config[name] for name in REQUIRED}
    fields.update({name: config.get(name, default) for name, default in HF_OPTIONAL_DEFAULTS.items()})
    fields["fullatt_block_indexes"] = _block_indexes(fields["fullatt_block_indexes"])
    fields["rope_base"] = _vision_rope_base(config)
    _check_vision(fields)
    return fields


def vision_encoder_kwargs(config) -> dict:
    """``qwen2_5_vision_encoder`` keyword arguments (torchtune's names) from an HF vision config."""
    return {_VISION_TUNE_NAMES.get(name, name): value for name, value in vision_fields(config).items()}


def _block_indexes(value) -> list[int]:
    # strings after a lossy JSON round trip are a known pitfall; HF tests `i in indexes`, which "7" never matches
    if isinstance(value, (str, int)):
        raise ValueError(f"fullatt_block_indexes must be a list of ints, got {value!r}")
    try:
        return [int(i) for i in value]
    except (TypeError, ValueError):
        raise ValueError(f"fullatt_block_indexes must be ints, got {value!r}") from None


def _vision_rope_base(config: dict):
    rope = config.get("rope_parameters") or {}
    rope_type = rope.get("rope_type", "axial")
    if rope_type != "axial":
        raise ValueError(f"vision rope_parameters.rope_type={rope_type!r}: only 'axial' exists in HF")
    theta = rope.get("rope_theta", config.get("rope_theta"))
    return 10_000.0 if theta is None else theta


def _check_vision(kw: dict) -> None:
    for name in _VISION_INTS:
        value = kw[name]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"vision config {name} must be a positive int, got {value!r}")
    if kw["hidden_size"] % kw["num_heads"]:
        raise ValueError(f"vision config hidden_size={kw['hidden_size']} is not divisible by "
                         f"num_heads={kw['num_heads']}")
    head_dim = kw["hidden_size"] // kw["num_heads"]
    if head_dim % 4:
        raise ValueError(f"vision config head_dim = hidden_size/num_heads = {head_dim} must be divisible by 4 "
                         "(2D rotary splits each head into h and w halves, each rotated in pairs)")
    unit = kw["patch_size"] * kw["spatial_merge_size"]
    if kw["window_size"] % unit:
        raise ValueError(f"vision config window_size={kw['window_size']} must be a multiple of "
                         f"patch_size*spatial_merge_size={unit}")
    negative = [i for i in kw["fullatt_block_indexes"] if i < 0]
    if negative:  # as reference.vision_config.check_fullatt_indexes
        raise ValueError(f"vision config fullatt_block_indexes holds {negative[0]}, negative: HF does not count "
                         f"blocks from the end (`layer_num in fullatt_block_indexes` never matches it)")
    past = [i for i in kw["fullatt_block_indexes"] if i >= kw["depth"]]
    if past:
        warnings.warn(f"vision config fullatt_block_indexes holds {past}, at or past depth={kw['depth']}: no block "
                      f"has those indexes, so they select nothing (as in HF)", UserWarning, stacklevel=3)
    if not isinstance(kw["hidden_act"], str) or kw["hidden_act"] not in ACTIVATIONS:
        raise ValueError(f"vision config hidden_act={kw['hidden_act']!r} is not supported; "
                         f"use one of {tuple(ACTIVATIONS)}")
    if not (isinstance(kw["rope_base"], (int, float)) and kw["rope_base"] > 0):
        raise ValueError(f"vision config rope_theta must be a positive number, got {kw['rope_base']!r}")
    kw["rope_base"] = float(kw["rope_base"])


# ================================================================ text config -> decoder builder arguments

TEXT_REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads")
# HF Qwen2_5_VLTextConfig class defaults, quoted when a required field is missing
HF_TEXT_DEFAULTS = {"vocab_size": 152064, "hidden_size": 8192, "intermediate_size": 29568, "num_hidden_layers": 80,
                    "num_attention_heads": 64, "num_key_value_heads": 8}
_ROPE_TYPES = ("default", "mrope")
IMAGE_TOKEN_ID, VIDEO_TOKEN_ID = 151655, 151656  # HF's class defaults (Qwen's released ids)


def _text_config(config: dict) -> dict:
    text = config.get("text_config")
    if text is None:
        return config  # released layout: text fields at the top level
    if hasattr(text, "to_dict"):
        text = text.to_dict()
    if not isinstance(text, dict):
        raise ValueError(f"text_config must be a dict, got {type(text).__name__}")
    return text


def tied_embeddings(config: dict) -> bool:
    """``tie_word_embeddings``: the outer value or, HF's backward-compatibility rule, the text config's."""
    return bool(config.get("tie_word_embeddings") or _text_config(config).get("tie_word_embeddings"))


def text_kwargs(config) -> dict:
    """HF ``Qwen2_5_VLConfig`` (either layout) -> ``qwen2_5_vl`` keyword arguments, without the encoder.

    Raises:
        ValueError: a missing size or a field the port does not honour, named with its value.
    """
    config = _as_dict(config, "an HF Qwen2_5_VLConfig")
    text = _text_config(config)
    missing = [name for name in TEXT_REQUIRED if text.get(name) is None]
    if missing:
        raise ValueError(f"text config lacks {missing}; HF would silently use its defaults "
                         f"{ {name: HF_TEXT_DEFAULTS[name] for name in missing} }, refusing to guess")
    for name in TEXT_REQUIRED:
        value = text[name]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"text config {name} must be a positive int, got {value!r}")
    rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in _ROPE_TYPES:
        raise ValueError(f"text config rope type {rope_type!r} is not supported; only {list(_ROPE_TYPES)}")
    if text.get("use_sliding_window") or "sliding_attention" in (text.get("layer_types") or []):
        raise ValueError(f"text config use_sliding_window={text.get('use_sliding_window')!r} / layer_types with "
                         "sliding_attention: sliding-window attention is not implemented by the port")
    if text.get("attention_dropout", 0.0) not in (0, 0.0, None):
        raise ValueError(f"text config attention_dropout={text['attention_dropout']!r}: only 0 is supported")
    if text.get("hidden_act", "silu") != "silu":
        raise ValueError(f"text config hidden_act={text['hidden_act']!r}: only 'silu' is supported")
    hidden, heads = text["hidden_size"], text["num_attention_heads"]
    if hidden % heads:
        raise ValueError(f"text config hidden_size={hidden} is not divisible by num_attention_heads={heads}")
    if text.get("head_dim") not in (None, hidden // heads):
        raise ValueError(f"text config head_dim={text['head_dim']!r} differs from hidden_size / "
                         f"num_attention_heads = {hidden // heads}, which HF's text attention uses")
    return {
        "vocab_size": text["vocab_size"],
        "num_layers": text["num_hidden_layers"],
        "num_heads": heads,
        "num_kv_heads": text["num_key_value_heads"],
        "embed_dim": hidden,
        "intermediate_dim": text["intermediate_size"],
        "max_seq_len": int(text.get("max_position_embeddings") or 32768),
        "norm_eps": float(text.get("rms_norm_eps", 1e-5)),
        "rope_base": float(rope.get("rope_theta", text.get("rope_theta", 1_000_000.0))),
        "mrope_section": list(rope.get("mrope_section", (16, 24, 24))),
        "tie_word_embeddings": tied_embeddings(config),
        "image_token_id": int(config.get("image_token_id", IMAGE_TOKEN_ID)),
        "video_token_id": int(config.get("video_token_id", VIDEO_TOKEN_ID)),
    }


def model_kwargs(config, max_seq_len: Optional[int] = None) -> tuple[dict, dict]:
    """(``qwen2_5_vl`` keyword arguments without the encoder, ``qwen2_5_vision_encoder``'s) of a whole
    HF config (either layout); ``max_seq_len`` replaces the config's ``max_position_embeddings``."""
    config = _as_dict(config, "an HF Qwen2_5_VLConfig")
    kwargs = text_kwargs(config)
    if max_seq_len is not None:
        kwargs["max_seq_len"] = max_seq_len
    if not isinstance(config.get("vision_config"), dict):
        raise ValueError("config has no vision_config dict")
    return kwargs, vision_encoder_kwargs(config["vision_config"])


def read_config(config) -> dict:
    """A config dict as given, or read from a ``config.json`` path or its folder."""
    if isinstance(config, dict):
        return config
    path = Path(config)
    return read_json(path / "config.json" if path.is_dir() else path)
