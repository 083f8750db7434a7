"""Every processor setting a golden case was made with, for its metadata: what a porter needs to
configure their own processor from the golden alone (min/max pixels, patch, merge and temporal sizes,
mean, std, rescale factor, resample, backend; a video's sampling).

The values are the reference's own defaults (``reference.preprocess`` / ``reference.preprocess_video``,
HF's) overlaid with the case's ``params``: one source, so the metadata cannot drift from what ran.
"""

from __future__ import annotations

import inspect

import reference
from reference.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, RESCALE_FACTOR

# Arguments that say how to call, not what the processor computes.
NOT_SETTINGS = ("images", "videos", "trace", "input_data_format")
RESAMPLE = {"pil": "bicubic: PIL.Image.BICUBIC (3) on uint8, Pillow's two passes (Qwen2VLImageProcessorPil)",
            "torchvision": "bicubic: torchvision InterpolationMode.BICUBIC, antialias, uint8 (Qwen2VLImageProcessor)"}


def _defaults(function):
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if name not in NOT_SETTINGS and p.default is not inspect.Parameter.empty}


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def processor_settings(kind, params):
    """{setting: value} of an image (``kind`` "image" or "tower") or video case run with ``params``."""
    function = reference.preprocess_video if kind == "video" else reference.preprocess
    settings = {**_defaults(function), **params}
    if kind == "video":  # the video processor normalizes with the image processor's constants
        settings.setdefault("image_mean", OPENAI_CLIP_MEAN)
        settings.setdefault("image_std", OPENAI_CLIP_STD)
        settings.setdefault("rescale_factor", RESCALE_FACTOR)
    settings["resample"] = RESAMPLE[settings.get("backend", "pil")]
    return {name: _plain(value) for name, value in sorted(settings.items())}
