"""A checkpoint folder's video processor config -> :class:`Qwen2_5_VLVideoTransform`.

HF's ``AutoVideoProcessor.from_pretrained(folder)`` (transformers 5.24) reads the first of
``processor_config.json`` (its nested ``"video_processor"`` dict), ``video_preprocessor_config.json``,
``preprocessor_config.json`` (the image processor's, read as the video processor's: released
Qwen2.5-VL folders have no video file, so their image ``min_pixels``/``max_pixels`` bound the
video frames too) and builds ``Qwen2VLVideoProcessor`` from it. :func:`load_hf_video_transform`
reads the same file the same way. Every field is honoured, or accepted only at the one value the
transform implements (``do_resize`` true, ``rescale_factor`` 1/255, ``resample`` 3, ...), or
refused with its value; unknown fields are refused.
"""

import json
from pathlib import Path

__all__ = ["load_hf_video_transform"]

# Qwen2VLVideoProcessor's class defaults (5.24); size is {"shortest_edge", "longest_edge"}
_DEFAULTS = {
    "min_pixels": 128 * 28 * 28,
    "max_pixels": 768 * 28 * 28,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "do_sample_frames": False,
    "fps": None,
    "num_frames": None,
    "min_frames": 4,
    "max_frames": 768,
    "cap_pixels_per_frame": None,  # HF: None warns and behaves as False
    "max_video_tokens": 128000,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
}
# fields the transform implements at one value only (HF's default): any other value is refused
_FIXED = {
    "do_resize": (True,),
    "do_rescale": (True,),
    "rescale_factor": (1 / 255,),
    "do_normalize": (True,),
    "do_convert_rgb": (True, None),
    "resample": (3,),  # PIL.Image.Resampling.BICUBIC
    "do_center_crop": (False, None),
    "crop_size": (None,),
    "do_pad": (False, None),
    "default_to_square": (True, None),
    "data_format": ("channels_first", None),
    "input_data_format": (None,),
    "device": (None, "cpu"),
}
# fields that name things or ask for extra outputs, and change no number
_METADATA = {"video_processor_type", "image_processor_type", "processor_class", "return_metadata",
             "return_tensors", "video_metadata"}
_TYPES = (None, "Qwen2VLVideoProcessor")


def _read(folder: Path) -> tuple[dict, str]:
    """(the video processor dict, the file it came from), in HF's order of files."""
    nested = folder / "processor_config.json"
    if nested.is_file():
        data = json.loads(nested.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "video_processor" in data:
            return data["video_processor"], f"{nested.name}['video_processor']"
    for name in ("video_preprocessor_config.json", "preprocessor_config.json"):
        path = folder / name
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"{path} is not valid JSON: {e}") from None
            if not isinstance(data, dict):
                raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
            return data, name
    raise FileNotFoundError(f"no video_preprocessor_config.json or preprocessor_config.json in {folder} "
                            "(HF's AutoVideoProcessor needs one of them)")


def _is_bool(value) -> bool:
    return isinstance(value, bool)


def video_transform_kwargs(config: dict, source: str = "video_preprocessor_config.json") -> dict:
    """``Qwen2_5_VLVideoTransform`` kwargs from a video processor dict, with HF's precedence:
    top-level ``min_pixels``/``max_pixels`` override ``size`` (``shortest_edge``/``longest_edge``)."""
    known = set(_DEFAULTS) | set(_FIXED) | _METADATA | {"size"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{source}: fields the video transform does not implement: "
                         f"{ {k: config[k] for k in unknown} }; known fields: {sorted(known)}")
    kind = config.get("video_processor_type")
    if kind not in _TYPES:
        raise ValueError(f"{source}: video_processor_type {kind!r} is not Qwen2VLVideoProcessor")
    for name, allowed in _FIXED.items():
        value = config.get(name, allowed[0])
        if not any(value is a or (not _is_bool(value) and not _is_bool(a) and value == a) for a in allowed):
            raise ValueError(f"{source}: {name}={value!r} is not supported by Qwen2_5_VLVideoTransform; "
                             f"it implements {name} = {' or '.join(map(repr, allowed))} only")
    size = config.get("size") or {}
    if not isinstance(size, dict) or set(size) - {"shortest_edge", "longest_edge"}:
        raise ValueError(f"{source}: size must be a dict with 'shortest_edge' and 'longest_edge', got {size!r}")
    kwargs = {k: config.get(k, v) for k, v in _DEFAULTS.items()}
    for name, edge in (("min_pixels", "shortest_edge"), ("max_pixels", "longest_edge")):
        value = config.get(name)
        kwargs[name] = size.get(edge, _DEFAULTS[name]) if value is None else value
    for name in ("min_pixels", "max_pixels", "patch_size", "temporal_patch_size", "merge_size", "min_frames",
                 "max_frames", "max_video_tokens"):
        value = kwargs[name]
        if _is_bool(value) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{source}: {name} must be a positive integer, got {value!r}")
    for name in ("do_sample_frames", "cap_pixels_per_frame"):
        value = kwargs[name]
        if not (_is_bool(value) or (value is None and name == "cap_pixels_per_frame")):
            raise ValueError(f"{source}: {name} must be true or false, got {value!r}")
    kwargs["cap_pixels_per_frame"] = bool(kwargs["cap_pixels_per_frame"])
    if kwargs["min_pixels"] > kwargs["max_pixels"]:
        raise ValueError(f"{source}: min_pixels {kwargs['min_pixels']} > max_pixels {kwargs['max_pixels']}")
    return kwargs


def load_hf_video_transform(path):
    """The video transform HF's ``AutoVideoProcessor.from_pretrained(path)`` stands for.

    Args:
        path: a checkpoint folder (``video_preprocessor_config.json``, else
            ``preprocessor_config.json``, as HF reads them; see the module docstring).

    Returns:
        Qwen2_5_VLVideoTransform: bit-exact on CPU with the HF video processor from that folder.

    Raises:
        FileNotFoundError: no folder, or none of the files.
        ValueError: invalid JSON, unknown fields, values the transform does not implement.
    """
    from ._video_transform import Qwen2_5_VLVideoTransform

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist or is not a directory")
    config, source = _read(folder)
    return Qwen2_5_VLVideoTransform(**video_transform_kwargs(config, source))
