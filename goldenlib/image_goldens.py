"""Image-pipeline goldens: run the reference with a trace, cross-check every stage with HF.

A case's ``params`` may name ``backend="torchvision"``: the stages are then
``reference.TORCHVISION_STAGES`` that ran, cross-checked against ``Qwen2VLImageProcessor``
(torchvision, CPU) and its own ``resize`` / ``rescale_and_normalize``.
"""

import reference
from reference.preprocess import IMAGE_STAGES, TORCHVISION_STAGES

from .tolerances import abs_errors

DEFAULTS = {"min_pixels": reference.MIN_PIXELS, "max_pixels": reference.MAX_PIXELS}


def case_params(case):
    return {**DEFAULTS, **case.params}


def backend_of(case):
    return case.params.get("backend", "pil")


def stages_of(case):
    """The image stages a case stores, in pipeline order (those its backend traces)."""
    if backend_of(case) == "pil":
        return IMAGE_STAGES
    return tuple(stage for stage in TORCHVISION_STAGES if stage not in ("rescaled", "normalized"))


def image_stage_tensors(images, trace, stages=IMAGE_STAGES):
    """Flatten a preprocess trace into golden tensors: ``stage`` for one image, ``stage.{i}`` for several."""
    tensors = {}
    for stage in stages:
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
    return images, image_stage_tensors(images, trace, stages_of(case))


def crosscheck(case, images, tensors):
    """Max abs difference of every stage against HF / Pillow; all must be exactly 0."""
    from .hf_image import hf_preprocess, hf_stages

    params = case_params(case)
    if backend_of(case) == "torchvision":
        return _crosscheck_torchvision(images, tensors, params)
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


def _crosscheck_torchvision(images, tensors, params):
    from .hf_image import hf_preprocess_torchvision, hf_stages_torchvision

    hf = hf_preprocess_torchvision(images, params["min_pixels"], params["max_pixels"])
    diffs = {key: _max_diff(tensors[key], hf[key]) for key in ("pixel_values", "image_grid_thw")}
    for index, image in enumerate(images):
        suffix = "" if len(images) == 1 else f".{index}"
        stages = hf_stages_torchvision(image, params["min_pixels"], params["max_pixels"])
        for stage, value in stages.items():
            diffs[stage + suffix] = _max_diff(tensors[stage + suffix], value)
    return diffs


def _max_diff(actual, expected):
    return abs_errors(actual, expected)[0]  # max |a - b|; inf on a shape mismatch


def image_metadata(case):
    import importlib.metadata as md

    from .hf_image import versions

    metadata = {
        "case": case.name,
        "kind": "image",
        "description": case.description,
        "params": case_params(case),
        "versions": versions(),
        "hf_crosscheck": "transformers.Qwen2VLImageProcessorPil (PIL backend) + PIL.Image.resize BICUBIC",
        "stages": list(stages_of(case)) + ["pixel_values", "image_grid_thw"],
    }
    if backend_of(case) == "torchvision":
        metadata["versions"]["torchvision"] = md.version("torchvision")
        metadata["hf_crosscheck"] = ("transformers.Qwen2VLImageProcessor (torchvision backend, CPU: its resize and "
                                     "rescale_and_normalize per stage)")
    return metadata


__all__ = ["run_reference", "crosscheck", "image_metadata", "case_params", "stages_of"]
