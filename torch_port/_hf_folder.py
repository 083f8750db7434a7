"""An HF Qwen2.5-VL folder -> builder arguments, transform arguments and a checked state dict.

The folder is what the hub holds: ``config.json``, the processor configs, the tokenizer files
(``vocab.json``, ``merges.txt``, ``tokenizer_config.json``, ``tokenizer.json`` when present) and
the weights as ``model.safetensors`` or ``model.safetensors.index.json`` + shards (released or
transformers-5 key layout). Every rule is written once here and used by every public loader:
``load_hf_vision`` / ``load_hf_checkpoint`` (the vision tower + image transform, no torchtune),
``load_hf_video_transform``, ``load_hf_model`` / ``load_hf_model_checkpoint`` (the fused model),
``qwen2_5_vl_from_hf_config`` / ``lora_qwen2_5_vl_from_hf_config`` and the torchtune checkpointer.
torchtune is imported only inside the functions that build the fused model.

Config rules (every error names the field or key and its value):

* vision: the reference's (``reference.VisionConfig``; tests keep them equal): the five sizes
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
* processors: HF's files in HF's order (``processor_config.json``'s nested dict first); every field
  Qwen2-VL's image / video processor reads is honoured, or accepted only at the value the
  transform implements, or refused with its value; unknown fields are refused. Load-time
  overrides (``load_hf_checkpoint(path, max_pixels=...)``) are merged as HF's ``from_dict`` merges
  ``from_pretrained``'s keywords: the keyword beats the file.
* weights: safetensors only (pickle files are refused, never unpickled); one error lists every
  missing, unexpected and misshaped key; non-finite tensors are refused by name; a tied model's
  ``lm_head.weight``, when present, must equal the embedding and is dropped.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path
from typing import List, Optional

import torch

from ._activations import ACTIVATIONS
from ._component_builders import qwen2_5_vision_encoder, qwen2_5_vl
from ._convert_weights import (
    _DECODER,
    _ENCODER,
    _LM_HEAD,
    _OUTPUT,
    _TEXT_TO_HF,
    _TO_HF,
    _hf_to_tune,
    _map_key,
    drop_tied_output,
    is_hf_vision_key,
    qwen2_5_vl_hf_to_tune_with_origin,
)
from ._encoder import Qwen2_5_VisionEncoder
from ._transform import BACKENDS, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, Qwen2_5_VLImageTransform

__all__ = [
    "default_backend",
    "load_hf_checkpoint",
    "load_hf_model",
    "load_hf_model_checkpoint",
    "load_hf_video_transform",
    "load_hf_vision",
    "lora_qwen2_5_vl_from_hf_config",
    "qwen2_5_vl_from_hf_config",
]

# ================================================================ files

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; a missing file, invalid JSON or a non-object is named."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path.name} not found in checkpoint folder {path.parent}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def checkpoint_folder(path) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist or is not a directory")
    return folder


def processor_config(folder: Path, kind: str) -> tuple[dict, str]:
    """(the ``kind`` ("image" / "video") processor's dict, where it came from), read as HF 5.24's
    ``AutoImageProcessor`` / ``AutoVideoProcessor`` read them: ``processor_config.json``'s nested
    ``"<kind>_processor"`` dict, else ``preprocessor_config.json`` (video: first
    ``video_preprocessor_config.json``; released folders have no video file, so the image file's
    pixel bounds bound the video frames too)."""
    nested = folder / "processor_config.json"
    if nested.is_file():
        data = read_json(nested)
        if isinstance(data.get(f"{kind}_processor"), dict):
            return data[f"{kind}_processor"], f"{nested.name}['{kind}_processor']"
    names = ("preprocessor_config.json",) if kind == "image" else (
        "video_preprocessor_config.json", "preprocessor_config.json")
    for name in names:
        if (folder / name).is_file():
            return read_json(folder / name), name
    if kind == "image":
        raise FileNotFoundError(f"preprocessor_config.json not found in checkpoint folder {folder}")
    raise FileNotFoundError(f"no video_preprocessor_config.json or preprocessor_config.json in {folder} "
                            "(HF's AutoVideoProcessor needs one of them)")


def weight_files(folder: Path, *, keep=None, what: str = "weights", any_name: bool = False) -> list[Path]:
    """The safetensors files of a checkpoint folder: the shards its ``model.safetensors.index.json``
    names (only those holding a key ``keep`` accepts), else ``model.safetensors``, else (with
    ``any_name``) every ``*.safetensors``. A folder of pickle files only is refused."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"{index} has no 'weight_map' (tensor name -> shard file)")
        names = sorted({name for key, name in weight_map.items() if keep is None or keep(key)})
        if not names:
            raise ValueError(f"{index} lists no {what}")
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(f"shards listed in {index.name} are missing from {folder}: {missing}")
        return [folder / n for n in names]
    if (folder / "model.safetensors").is_file():
        return [folder / "model.safetensors"]
    others = sorted(folder.glob("*.safetensors")) if any_name else []
    if others:
        return others
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(
            f"{folder} holds only pickle checkpoint files {pickles}; they are refused (unpickling can run "
            "arbitrary code). Convert the checkpoint to safetensors (model.safetensors or "
            "model.safetensors.index.json + shards)."
        )
    raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {folder}")


def read_tensors(files: list[Path], *, keep=None) -> dict[str, torch.Tensor]:
    """Every tensor (whose key ``keep`` accepts) of the safetensors ``files``; a key in two files,
    or a file safetensors cannot read, is a ValueError naming the file."""
    from safetensors import safe_open

    tensors: dict[str, torch.Tensor] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                for key in f.keys():
                    if keep is not None and not keep(key):
                        continue
                    if key in tensors:
                        raise ValueError(f"tensor {key!r} appears in two shards (the second: {path.name})")
                    tensors[key] = f.get_tensor(key)
        except ValueError:
            raise
        except Exception as e:  # safetensors raises its own SafetensorError (header, offsets, dtype)
            raise ValueError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from None
    return tensors


# ================================================================ vision config -> encoder builder arguments

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


# ================================================================ processor configs -> transform arguments

_CLIP = {"image_mean": list(OPENAI_CLIP_MEAN), "image_std": list(OPENAI_CLIP_STD)}
# Qwen2VLImageProcessor(Pil)'s class defaults (5.24) for the fields the transform takes
_IMAGE_DEFAULTS = {"min_pixels": 56 * 56, "max_pixels": 28 * 28 * 1280, "patch_size": 14, "merge_size": 2,
                   "temporal_patch_size": 2, **_CLIP, "do_resize": True, "do_rescale": True,
                   "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True,
                   "input_data_format": None}
# Qwen2VLVideoProcessor's class defaults (5.24)
_VIDEO_DEFAULTS = {"min_pixels": 128 * 28 * 28, "max_pixels": 768 * 28 * 28, "patch_size": 14,
                   "temporal_patch_size": 2, "merge_size": 2, "do_sample_frames": False, "fps": None,
                   "num_frames": None, "min_frames": 4, "max_frames": 768,
                   "cap_pixels_per_frame": None,  # HF: None warns and behaves as False
                   "max_video_tokens": 128000, **_CLIP}
_PIL_BICUBIC = 3  # PIL.Image.Resampling.BICUBIC, the only resample the transforms implement
# fields implemented at one value (HF's default; first listed) only: any other value is refused.
# HF's image processor reads do_pad / crop_size / ... for other models; Qwen2-VL's ignores them.
_IMAGE_FIXED = {
    "resample": (_PIL_BICUBIC,),
    "default_to_square": (False, None),  # used by HF for int sizes only, which are refused below
    "do_pad": (None, False),
    "pad_size": (None,),
    "do_center_crop": (None, False),
    "crop_size": (None,),
    "data_format": ("channels_first", None),
    "device": (None, "cpu"),
    "return_tensors": (None, "pt"),
    "disable_grouping": (None, False, True),  # batches same-shape images; the port takes them one by one
    "image_seq_length": (None,),
}
_VIDEO_FIXED = {
    "do_resize": (True,),
    "do_rescale": (True,),
    "rescale_factor": (1 / 255,),
    "do_normalize": (True,),
    "do_convert_rgb": (True, None),
    "resample": (_PIL_BICUBIC,),
    "do_center_crop": (False, None),
    "crop_size": (None,),
    "do_pad": (False, None),
    "default_to_square": (True, None),
    "data_format": ("channels_first", None),
    "input_data_format": (None,),
    "device": (None, "cpu"),
}
# fields that name things or ask for extra outputs, and change no number
_IMAGE_METADATA = {"image_processor_type", "processor_class", "feature_extractor_type"}
_VIDEO_METADATA = {"video_processor_type", "image_processor_type", "processor_class", "return_metadata",
                   "return_tensors", "video_metadata"}
# names AutoImageProcessor maps to the Qwen2-VL processor pair (the legacy "...Fast" included)
_QWEN2_VL_TYPES = (None, "Qwen2VLImageProcessor", "Qwen2VLImageProcessorPil", "Qwen2VLImageProcessorFast")
_VIDEO_TYPES = (None, "Qwen2VLVideoProcessor")
# every field a Qwen2-VL image processor config may hold: what load-time overrides may name
IMAGE_PROCESSOR_FIELDS = frozenset(_IMAGE_DEFAULTS) | frozenset(_IMAGE_FIXED) | _IMAGE_METADATA | {"size"}


def _is_one_of(value, allowed) -> bool:
    """``value`` equals one of ``allowed``, a bool only ever matching the same bool (1 is not True)."""
    return any(value is a or (not isinstance(value, bool) and not isinstance(a, bool) and value == a)
               for a in allowed)


def _refuse_unknown(fields: dict, known, source: str, what: str) -> None:
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise ValueError(f"{source}: fields {what} does not implement: { {k: fields[k] for k in unknown} }; "
                         f"known fields: {sorted(known)}")


def _check_fixed(fields: dict, fixed: dict, source: str, what: str) -> None:
    for name, allowed in fixed.items():
        value = fields.get(name, allowed[0])
        if not _is_one_of(value, allowed):
            raise ValueError(f"{source}: {name}={value!r} is not supported by {what}; "
                             f"it implements {name} = {' or '.join(map(repr, allowed))} only")


def _positive_int(value, name: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{source}: {name} must be a positive integer, got {value!r}")
    return value


def _pixel_bounds(fields: dict, defaults: dict, source: str) -> tuple[int, int]:
    """(min_pixels, max_pixels) as Qwen2-VL's processors' ``__init__`` sets them: ``size`` (the class
    default when absent), then top-level ``min_pixels`` / ``max_pixels`` overriding its
    ``shortest_edge`` / ``longest_edge``; the result must hold exactly those two edges (HF refuses
    other key sets, or fails at the first resize)."""
    size = fields.get("size")
    if size is None:
        size = {"shortest_edge": defaults["min_pixels"], "longest_edge": defaults["max_pixels"]}
    if not isinstance(size, dict):
        raise ValueError(f"{source}: size must be a dict with 'shortest_edge' and 'longest_edge', got {size!r}")
    size = dict(size)
    for name, edge in (("min_pixels", "shortest_edge"), ("max_pixels", "longest_edge")):
        if fields.get(name) is not None:
            size[edge] = fields[name]
            size.pop(name, None)
    if set(size) != {"shortest_edge", "longest_edge"}:
        raise ValueError(f"{source}: size must be a dict with 'shortest_edge' and 'longest_edge' (after the "
                         f"top-level min_pixels / max_pixels replace them, as HF does), got {size!r}")
    low = _positive_int(size["shortest_edge"], "min_pixels", source)
    high = _positive_int(size["longest_edge"], "max_pixels", source)
    if low > high:
        raise ValueError(f"{source}: min_pixels {low} > max_pixels {high}")
    return low, high


def _mean_std(value, name: str, source: str):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"{source}: {name} must be a number or a list of numbers, got {value!r}") from None


def image_transform_kwargs(fields: dict, source: str = "preprocessor_config.json") -> dict:
    """``Qwen2_5_VLImageTransform`` keyword arguments from an image processor dict (HF's meaning,
    HF's class defaults). Refused with the value: unknown fields, an ``image_processor_type`` that is
    not one of Qwen2-VL's (the type does not pick the backend: see :func:`default_backend`),
    ``resample`` other than 3 (BICUBIC), the fields of ``_IMAGE_FIXED`` at other values, and None
    for a field HF would then keep as None (``do_resize: null`` skips HF's resize)."""
    _refuse_unknown(fields, IMAGE_PROCESSOR_FIELDS, source, "the port")
    kind = fields.get("image_processor_type")
    if kind not in _QWEN2_VL_TYPES:
        raise ValueError(f"{source}: image_processor_type {kind!r} is not one of Qwen2-VL's "
                         f"{[t for t in _QWEN2_VL_TYPES if t]} (HF would build another processor)")
    _check_fixed(fields, _IMAGE_FIXED, source, "Qwen2_5_VLImageTransform")
    kwargs = {name: fields.get(name, default) for name, default in _IMAGE_DEFAULTS.items()}
    kwargs["min_pixels"], kwargs["max_pixels"] = _pixel_bounds(fields, _IMAGE_DEFAULTS, source)
    for name in ("patch_size", "merge_size", "temporal_patch_size"):
        kwargs[name] = _positive_int(kwargs[name], name, source)
    for name in ("image_mean", "image_std"):
        kwargs[name] = _mean_std(kwargs[name], name, source)
    for name in ("do_resize", "do_rescale", "do_normalize", "do_convert_rgb"):
        if not isinstance(kwargs[name], bool):
            raise ValueError(f"{source}: {name} must be true or false, got {kwargs[name]!r}")
    return kwargs


def video_transform_kwargs(fields: dict, source: str = "video_preprocessor_config.json") -> dict:
    """``Qwen2_5_VLVideoTransform`` keyword arguments from a video processor dict, with HF's rules (as
    :func:`image_transform_kwargs`; the video transform implements fewer fields)."""
    known = set(_VIDEO_DEFAULTS) | set(_VIDEO_FIXED) | _VIDEO_METADATA | {"size"}
    _refuse_unknown(fields, known, source, "the video transform")
    kind = fields.get("video_processor_type")
    if kind not in _VIDEO_TYPES:
        raise ValueError(f"{source}: video_processor_type {kind!r} is not Qwen2VLVideoProcessor")
    _check_fixed(fields, _VIDEO_FIXED, source, "Qwen2_5_VLVideoTransform")
    kwargs = {name: fields.get(name, default) for name, default in _VIDEO_DEFAULTS.items()}
    kwargs["min_pixels"], kwargs["max_pixels"] = _pixel_bounds(fields, _VIDEO_DEFAULTS, source)
    for name in ("patch_size", "temporal_patch_size", "merge_size", "min_frames", "max_frames", "max_video_tokens"):
        kwargs[name] = _positive_int(kwargs[name], name, source)
    for name in ("do_sample_frames", "cap_pixels_per_frame"):
        value = kwargs[name]
        if not (isinstance(value, bool) or (value is None and name == "cap_pixels_per_frame")):
            raise ValueError(f"{source}: {name} must be true or false, got {value!r}")
    kwargs["cap_pixels_per_frame"] = bool(kwargs["cap_pixels_per_frame"])
    return kwargs


def with_overrides(fields: dict, overrides: dict, caller: str) -> dict:
    """The processor dict with load-time keywords on top, as HF's ``from_dict`` merges
    ``from_pretrained(path, **kwargs)``: the keyword beats the file (so ``size=`` alone does not beat
    the file's top-level ``min_pixels`` / ``max_pixels``, in HF as here). A name that is no field of
    Qwen2-VL's image processor is a TypeError naming it (HF would drop it silently)."""
    unknown = sorted(set(overrides) - IMAGE_PROCESSOR_FIELDS)
    if unknown:
        raise TypeError(f"{caller}() got unexpected keyword argument(s) {unknown}: not fields of Qwen2-VL's image "
                        f"processor; the processor fields are {sorted(IMAGE_PROCESSOR_FIELDS)}")
    return {**fields, **overrides}


def default_backend() -> str:
    """What ``AutoImageProcessor.from_pretrained(folder)`` picks without a ``backend``: "torchvision"
    when torchvision is installed, else "pil" (HF 5.24's ``_resolve_backend``), whatever the folder's
    ``image_processor_type`` says: ``"Qwen2VLImageProcessorPil"`` and the legacy
    ``"Qwen2VLImageProcessorFast"`` name the same backend pair and get the default backend too.
    Looked up, not imported (as HF's ``is_torchvision_available``)."""
    try:
        found = importlib.util.find_spec("torchvision") is not None
    except (ImportError, ValueError):  # a blocked or broken install counts as absent
        found = False
    return "torchvision" if found else "pil"


def _backend(backend, caller: str) -> str:
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"{caller}: backend must be None or one of {BACKENDS}, got {backend!r}")
    return backend or default_backend()


def _image_transform_kwargs(folder: Path, overrides: dict, caller: str, vision_config: dict) -> dict:
    """The folder's image processor config with ``overrides`` on top, as transform arguments; its
    patch geometry must be the tower's, or the patch rows would not fit the tower."""
    fields, source = processor_config(folder, "image")
    if overrides:
        source += f" + keywords {sorted(overrides)}"
    kwargs = image_transform_kwargs(with_overrides(fields, overrides, caller), source)
    vision = vision_fields(vision_config)
    mismatched = [f"{t}={kwargs[t]} vs vision_config {v}={vision[v]}"
                  for t, v in (("patch_size", "patch_size"), ("merge_size", "spatial_merge_size"),
                               ("temporal_patch_size", "temporal_patch_size"))
                  if kwargs[t] != vision[v]]
    if mismatched:
        raise ValueError(f"{source} disagrees with config.json: {mismatched}")
    return kwargs


# ================================================================ weights -> checked state dict

def _hf_name(tune_key: str) -> str:
    """The HF name (released layout) of a port key, whole-model or vision-encoder, for error messages."""
    if tune_key.startswith(_DECODER):
        rest = tune_key[len(_DECODER):]
        if rest == _OUTPUT:
            return _LM_HEAD
        hf = _map_key(rest, _TEXT_TO_HF)
        return tune_key if hf is None else "model." + hf
    if tune_key.startswith(_ENCODER):
        hf = _map_key(tune_key[len(_ENCODER):], _TO_HF)
        return tune_key if hf is None else "visual." + hf
    return _map_key(tune_key, _TO_HF) or tune_key


def check_finite(state_dict: dict[str, torch.Tensor]) -> None:
    """Refuse weights holding NaN or Inf, naming every such tensor (they would poison every output)."""
    bad = []
    for key, value in state_dict.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            nan, inf = int(torch.isnan(value).sum()), int(torch.isinf(value).sum())
            bad.append(f"{key!r} ({nan} NaN, {inf} Inf)")
    if bad:
        raise ValueError(f"non-finite values in {len(bad)} weight tensor(s): " + ", ".join(bad))


def load_checked(module, converted: dict, origin: dict, problems: list, *, what: str,
                 dtype: torch.dtype, device, copy: bool) -> None:
    """Load ``converted`` (port keys -> tensors) into ``module`` (built on meta) after checking it.

    Every missing, misshaped and unexpected key (plus the caller's ``problems``) goes into one
    ValueError, non-finite tensors into another (:func:`check_finite`), each named by the key it
    came from (``origin``: port key -> source key; missing keys by their HF name). Parameters are
    cast to ``dtype`` on ``device`` and assigned; meta buffers with a ``rope_init`` (mRoPE's
    frequencies) are rebuilt there.
    """
    expected = module.state_dict()
    for key, value in expected.items():
        if key not in converted:
            problems.append(f"missing key {key!r} (HF {_hf_name(key)!r})")
        elif tuple(converted[key].shape) != tuple(value.shape):
            problems.append(f"shape mismatch for {origin[key]!r}: got {tuple(converted[key].shape)}, "
                            f"expected {tuple(value.shape)} (as {key!r})")
    problems += [f"unexpected key {origin[k]!r} (as {k!r})" for k in converted if k not in expected]
    if problems:
        raise ValueError(f"{what} does not fit the config ({len(problems)} problems):\n  " + "\n  ".join(problems))
    check_finite({origin[k]: v for k, v in converted.items()})
    params = {k: v.detach().to(device=device, dtype=dtype, copy=copy) for k, v in converted.items()}
    module.load_state_dict(params, strict=True, assign=True)
    # non-persistent buffers (mRoPE's frequencies) were built on meta: rebuild them where the weights are
    for sub in module.modules():
        if hasattr(sub, "rope_init") and any(b.is_meta for b in sub.buffers(recurse=False)):
            sub.rope_init(device=torch.device(device))
    leftover = [name for name, t in list(module.named_parameters()) + list(module.named_buffers()) if t.is_meta]
    if leftover:
        raise RuntimeError(f"tensors left on the meta device after loading: {leftover}")


def _vision_encoder(vision_config, state_dict: dict, *, dtype, device, copy: bool) -> Qwen2_5_VisionEncoder:
    kwargs = vision_encoder_kwargs(vision_config)
    with torch.device("meta"):  # no memory, no init: every parameter comes from the state dict
        encoder = qwen2_5_vision_encoder(**kwargs)
    converted, origin, problems = _hf_to_tune(state_dict)
    load_checked(encoder, converted, origin, problems, what="HF vision state dict", dtype=dtype, device=device,
                 copy=copy)
    return encoder.eval()


# ================================================================ public loaders

def load_hf_vision(
    config,
    state_dict: dict[str, torch.Tensor],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Qwen2_5_VisionEncoder:
    """Build the encoder from an HF vision config and load HF vision weights into it.

    Args:
        config (dict): HF vision config, e.g. ``Qwen2_5_VLVisionConfig(...).to_dict()`` or a
            checkpoint's ``vision_config`` (an HF config object works too). Unused fields are
            ignored; the five sizes are required (see the module docstring), other missing fields
            take HF's class defaults.
        state_dict (dict[str, torch.Tensor]): HF keys with or without ``visual.`` /
            ``model.visual.``; non-vision keys are ignored.
        dtype (torch.dtype): parameter dtype, float32 by default whatever the state dict's; the
            parameters are copies (the caller's tensors are never shared).
        device: where the parameters go (CPU by default).

    Returns:
        Qwen2_5_VisionEncoder: in eval mode.

    Raises:
        ValueError: one error listing every missing, unexpected and misshaped key.
    """
    return _vision_encoder(config, state_dict, dtype=dtype, device=device, copy=True)


def load_hf_checkpoint(
    path: str | Path,
    dtype: torch.dtype = torch.bfloat16,
    device: torch.device | str = "cpu",
    backend: str | None = None,
    **processor_overrides,
):
    """Read an HF Qwen2.5-VL checkpoint folder: its vision tower and its image transform.

    Reads ``config.json`` (its ``vision_config``; a bare vision config works too), the image
    processor config (``processor_config.json``'s ``image_processor``, else
    ``preprocessor_config.json``) and ``model.safetensors`` or ``model.safetensors.index.json`` +
    shards (only the shards and tensors of the vision tower are read).

    Args:
        path: the checkpoint folder.
        dtype (torch.dtype): parameter dtype (the released weights are bfloat16).
        device: parameter device.
        backend (str | None): the transform's backend. None: what HF's
            ``AutoImageProcessor.from_pretrained(path)`` picks, "torchvision" when torchvision is
            installed, else "pil" (:func:`default_backend`; the folder's ``image_processor_type``
            does not change it, as in HF). "pil" / "torchvision": that backend.
        **processor_overrides: image processor fields (``min_pixels``, ``max_pixels``, ``size``,
            ``image_mean``, ``do_resize``, ...) that replace the file's, as
            ``AutoProcessor.from_pretrained(path, **processor_overrides)`` replaces them.

    Returns:
        tuple: ``(Qwen2_5_VisionEncoder, Qwen2_5_VLImageTransform)``.

    Raises:
        FileNotFoundError: missing folder, config or weight files.
        TypeError: an override that is no image processor field.
        ValueError: pickle-only checkpoints, inconsistent configs, weights that do not fit, a field
            value the transform does not implement.
    """
    backend = _backend(backend, "load_hf_checkpoint")
    folder = checkpoint_folder(path)
    config = read_json(folder / "config.json")
    vision_config = config.get("vision_config")
    if vision_config is None:
        if config.get("model_type") != "qwen2_5_vl_vision":
            raise ValueError(f"{folder / 'config.json'} has no 'vision_config' "
                             f"(model_type {config.get('model_type')!r})")
        vision_config = config
    transform_kwargs = _image_transform_kwargs(folder, processor_overrides, "load_hf_checkpoint", vision_config)
    files = weight_files(folder, keep=is_hf_vision_key, any_name=True,
                         what="vision weights (keys under 'visual.' or 'model.visual.')")
    encoder = _vision_encoder(vision_config, read_tensors(files, keep=is_hf_vision_key), dtype=dtype,
                              device=device, copy=False)
    return encoder, Qwen2_5_VLImageTransform(backend=backend, **transform_kwargs)


def load_hf_video_transform(path):
    """The video transform HF's ``AutoVideoProcessor.from_pretrained(path)`` stands for.

    Args:
        path: a checkpoint folder (``processor_config.json``'s ``video_processor``, else
            ``video_preprocessor_config.json``, else ``preprocessor_config.json``, as HF reads them).

    Returns:
        Qwen2_5_VLVideoTransform: bit-exact on CPU with the HF video processor from that folder.

    Raises:
        FileNotFoundError: no folder, or none of the files.
        ValueError: invalid JSON, unknown fields, values the transform does not implement.
    """
    from ._video_transform import Qwen2_5_VLVideoTransform

    fields, source = processor_config(checkpoint_folder(path), "video")
    return Qwen2_5_VLVideoTransform(**video_transform_kwargs(fields, source))


def load_hf_model(
    config_dict,
    state_dict: dict[str, torch.Tensor],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    max_seq_len: int | None = None,
):
    """Build ``Qwen2_5_VLEarlyFusionModel`` from an HF config dict and load an HF state dict into it.

    Args:
        config_dict (dict): HF ``Qwen2_5_VLConfig`` as a dict, released or transformers-5 layout.
        state_dict (dict[str, torch.Tensor]): HF weights, released or transformers-5 key layout
            (``qwen2_5_vl_hf_to_tune``); a tied checkpoint may lack ``lm_head.weight``.
        dtype (torch.dtype): parameter dtype (float32 by default, whatever the checkpoint's); the
            parameters are copies, never the caller's tensors.
        device: where the parameters go.
        max_seq_len (int | None): KV-cache / rotary-table length; default the config's
            ``max_position_embeddings``.

    Returns:
        Qwen2_5_VLEarlyFusionModel: in eval mode, every parameter trainable.

    Raises:
        ValueError: config fields (see the module docstring), or weights: every missing, unexpected
            and misshaped key in one error, non-finite values by key.
    """
    kwargs, vision = model_kwargs(config_dict, max_seq_len)
    with torch.device("meta"):  # no memory, no init: every parameter comes from the state dict
        model = qwen2_5_vl(encoder=qwen2_5_vision_encoder(**vision), **kwargs)
    converted, origin = qwen2_5_vl_hf_to_tune_with_origin(state_dict)
    problems = []
    if kwargs["tie_word_embeddings"] and not drop_tied_output(converted):
        problems.append(f"{origin[_DECODER + _OUTPUT]!r} differs from the token embedding in a tied model "
                        "(tie_word_embeddings is true)")
    load_checked(model, converted, origin, problems, what="HF state dict", dtype=dtype, device=device, copy=True)
    return model.eval()


def _special_tokens_path(folder: Path) -> str | None:
    """tokenizer.json when present; else None (torchtune's Qwen2.5 ids) after checking that
    tokenizer_config.json's added tokens agree with them."""
    if (folder / "tokenizer.json").is_file():
        return str(folder / "tokenizer.json")
    from torchtune.models.qwen2_5._tokenizer import QWEN2_5_SPECIAL_TOKENS

    added = read_json(folder / "tokenizer_config.json").get("added_tokens_decoder") or {}
    differ = [f"{entry.get('content')!r}: {int(i)} vs {QWEN2_5_SPECIAL_TOKENS[entry.get('content')]}"
              for i, entry in added.items()
              if entry.get("content") in QWEN2_5_SPECIAL_TOKENS and QWEN2_5_SPECIAL_TOKENS[entry["content"]] != int(i)]
    if differ:
        raise ValueError(f"tokenizer_config.json gives special tokens other ids than Qwen2.5's and there is no "
                         f"tokenizer.json to read them from: {differ}")
    return None


def load_hf_model_checkpoint(path, dtype: torch.dtype = torch.bfloat16, device="cpu", *,
                             backend: str | None = None, **processor_overrides):
    """An HF Qwen2.5-VL folder -> ``(Qwen2_5_VLEarlyFusionModel, Qwen2_5_VLTransform)``.

    Args:
        path: the checkpoint folder (see the module docstring for its files).
        dtype (torch.dtype): parameter dtype (bfloat16, the released weights' dtype); the transform
            returns pixel values in this dtype too.
        device: parameter device.
        backend (str | None): the image transform's backend. None: what HF's
            ``AutoImageProcessor.from_pretrained(folder)`` picks, "torchvision" when it is
            installed, else "pil" (``default_backend``). "pil" / "torchvision": that backend.
        **processor_overrides: image processor fields that replace the file's, as
            ``AutoProcessor.from_pretrained(path, **processor_overrides)`` replaces them (see
            :func:`load_hf_checkpoint`); they apply to images (videos take the transform's
            ``video_options`` defaults, as before).

    Returns:
        tuple: the model (eval mode) and the transform (images with the folder's image processor
        settings, every field HF's image processor reads, and the vision config's
        ``tokens_per_second``).

    Raises:
        FileNotFoundError: a missing folder, config, tokenizer file or shard.
        TypeError: an override that is no image processor field.
        ValueError: pickle-only weights, unreadable shards, configs the port refuses, weights that do
            not fit (every missing / unexpected / misshaped key, non-finite tensors), token ids that
            disagree between config.json and the tokenizer.
    """
    from ._model_transform import Qwen2_5_VLTransform

    backend = _backend(backend, "load_hf_model_checkpoint")
    folder = checkpoint_folder(path)
    config = read_json(folder / "config.json")
    vision = config.get("vision_config")
    if not isinstance(vision, dict):
        raise ValueError(f"{folder / 'config.json'} has no vision_config dict")
    processor = _image_transform_kwargs(folder, processor_overrides, "load_hf_model_checkpoint", vision)
    data_format = processor.pop("input_data_format")
    if data_format is not None:
        raise ValueError(f"load_hf_model_checkpoint: input_data_format={data_format!r} is not supported by "
                         "Qwen2_5_VLTransform, which infers each image's layout as HF does with None")
    missing = [name for name in TOKENIZER_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"tokenizer files {missing} not found in checkpoint folder {folder}")

    transform = Qwen2_5_VLTransform(
        str(folder / "vocab.json"), str(folder / "merges.txt"), _special_tokens_path(folder),
        tokens_per_second=vision.get("tokens_per_second", 2), dtype=dtype, backend=backend, **processor,
    )
    for kind, field, default in (("image", "image_token_id", IMAGE_TOKEN_ID),
                                 ("video", "video_token_id", VIDEO_TOKEN_ID)):
        model_id = int(config.get(field, default))
        token_id = getattr(transform, field)
        if model_id != token_id:
            raise ValueError(f"config.json {field}={model_id} but the tokenizer's <|{kind}_pad|> is {token_id}")

    model = load_hf_model(config, read_tensors(weight_files(folder)), dtype=dtype, device=device)
    return model, transform


# ================================================================ builders sized by an HF config.json

def read_config(config) -> dict:
    """A config dict as given, or read from a ``config.json`` path or its folder."""
    if isinstance(config, dict):
        return config
    path = Path(config)
    return read_json(path / "config.json" if path.is_dir() else path)


def qwen2_5_vl_from_hf_config(config, *, max_seq_len: Optional[int] = None, **kwargs):
    """``qwen2_5_vl`` with the sizes of an HF config, for configs of any size. A torchtune config
    names it with the folder it trains::

        model:
          _component_: torch_port.qwen2_5_vl_from_hf_config
          config: /tmp/my-qwen2.5-vl/config.json

    Args:
        config (str | dict): ``config.json`` path, its folder, or the dict (either HF layout).
        max_seq_len (int | None): KV-cache / rotary-table length; default the config's.
        **kwargs: ``decoder_trainable``, ``encoder_trainable``.
    """
    sizes, vision = model_kwargs(read_config(config), max_seq_len)
    return qwen2_5_vl(encoder=qwen2_5_vision_encoder(**vision), **sizes, **kwargs)


def lora_qwen2_5_vl_from_hf_config(
    config,
    lora_attn_modules: List[str],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    *,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
    max_seq_len: Optional[int] = None,
    encoder_trainable: bool = False,
):
    """``lora_qwen2_5_vl`` with the sizes of an HF config (``config`` as in ``qwen2_5_vl_from_hf_config``);
    ``use_dora`` and ``quantize_base`` go to ``lora_qwen2_5_vl``, which decides what it supports."""
    from ._lora import lora_qwen2_5_vl

    sizes, vision = model_kwargs(read_config(config), max_seq_len)
    return lora_qwen2_5_vl(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, encoder=qwen2_5_vision_encoder(**vision),
        **sizes, lora_rank=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
        quantize_base=quantize_base, encoder_trainable=encoder_trainable,
    )
