"""HF processor configs -> the image and video transforms' keyword arguments, with HF's meaning and defaults.

HF's files in HF's order (``processor_config.json``'s nested dict first, see
``_hf_files.processor_config``); every field Qwen2-VL's image / video processor reads is honoured,
or accepted only at the value the transform implements, or refused with its value; unknown fields
are refused. Load-time overrides (``load_hf_checkpoint(path, max_pixels=...)``) are merged as HF's
``from_dict`` merges ``from_pretrained``'s keywords: the keyword beats the file.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ._hf_config import vision_fields
from ._hf_files import processor_config
from ._transform import BACKENDS, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

__all__ = [
    "IMAGE_PROCESSOR_FIELDS",
    "default_backend",
    "folder_image_transform_kwargs",
    "folder_video_transform_kwargs",
    "image_transform_kwargs",
    "resolve_backend",
    "video_transform_kwargs",
    "with_overrides",
]

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


def resolve_backend(backend, caller: str) -> str:
    """``backend`` checked, or :func:`default_backend` for None."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"{caller}: backend must be None or one of {BACKENDS}, got {backend!r}")
    return backend or default_backend()


def folder_image_transform_kwargs(folder: Path, overrides: dict, caller: str, vision_config: dict) -> dict:
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


def folder_video_transform_kwargs(folder: Path) -> dict:
    """The folder's video processor config as ``Qwen2_5_VLVideoTransform`` arguments, read as HF's
    ``AutoVideoProcessor.from_pretrained(folder)`` reads it (see ``_hf_files.processor_config``)."""
    fields, source = processor_config(folder, "video")
    return video_transform_kwargs(fields, source)
