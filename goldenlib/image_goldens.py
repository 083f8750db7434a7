"""Image-pipeline goldens: run the reference with a trace, cross-check every stage with HF."""

import reference
from reference.preprocess import IMAGE_STAGES

from .tolerances import abs_errors

DEFAULTS = {"min_pixels": reference.MIN_PIXELS, "max_pixels": reference.MAX_PIXELS}


def case_params(case):
    return {**DEFAULTS, **case.params}


def image_stage_tensors(images, trace):
    """Flatten a preprocess trace into golden tensors: ``stage`` for one image, ``stage.{i}`` for several."""
    tensors = {}
    for stage in IMAGE_STAGES:
        values = [trace[stage]] if len(images) == 1 else trace[stage]
        for index, value in enumerate(values):
            tensors[stage if len(images) == 1 else f"{stage}.{index}"] = value
    tensors["pixel_values"] = trace["pixel_values"]
    tensors["image_grid_thw"] = trace["image_grid_thw"]
    return tensors


def run_reference(case):
    images = case.images()
    trace = {}
    reference.preprocess(images if len(images) > 1 else images[0], trace=trace, **case.params)
    return images, image_stage_tensors(images, trace)


def crosscheck(case, images, tensors):
    """Max abs difference of every stage against HF / Pillow; all must be exactly 0."""
    from .hf_image import hf_preprocess, hf_stages

    params = case_params(case)
    hf = hf_preprocess(images, params["min_pixels"], params["max_pixels"])
    diffs = {}
    for key in ("pixel_values", "image_grid_thw"):
        diffs[key] = _max_diff(tensors[key], hf[key])
    for index, image in enumerate(images):
        suffix = "" if len(images) == 1 else f".{index}"
        resized_hw = tensors["resized" + suffix].shape[:2]
        for stage, value in hf_stages(image, resized_hw, reference.OPENAI_CLIP_MEAN, reference.OPENAI_CLIP_STD).items():
            diffs[stage + suffix] = _max_diff(tensors[stage + suffix], value)
    return diffs


def _max_diff(actual, expected):
    return abs_errors(actual, expected)[0]  # max |a - b|; inf on a shape mismatch


def image_metadata(case):
    from .hf_image import versions

    return {
        "case": case.name,
        "kind": "image",
        "description": case.description,
        "params": case_params(case),
        "versions": versions(),
        "hf_crosscheck": "transformers.Qwen2VLImageProcessorPil (PIL backend) + PIL.Image.resize BICUBIC",
        "stages": list(IMAGE_STAGES) + ["pixel_values", "image_grid_thw"],
    }


__all__ = ["run_reference", "crosscheck", "image_metadata", "case_params"]
