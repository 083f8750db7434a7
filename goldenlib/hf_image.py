"""The HF side of the image goldens: what transformers and Pillow produce for each stage."""

import warnings

import numpy as np
import PIL.Image


def to_pil(image):
    """uint8 [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] -> the PIL image HF would be given."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    return PIL.Image.fromarray(np.ascontiguousarray(image))


def hf_processor(min_pixels, max_pixels, **kwargs):
    from .hf_compat import pil_image_processor_class

    processor = pil_image_processor_class()(min_pixels=min_pixels, max_pixels=max_pixels, **kwargs)
    # transformers#41955: settings passed some ways are silently dropped; make sure these took.
    size = processor.size
    got = (size["shortest_edge"], size["longest_edge"])
    if got != (min_pixels, max_pixels):
        raise RuntimeError(f"HF processor ignored min/max_pixels: asked {(min_pixels, max_pixels)}, has {got}")
    return processor


def hf_preprocess(images, min_pixels, max_pixels, **kwargs):
    """HF's PIL-path processor (``goldenlib.hf_compat.pil_image_processor_class``) ``(...)(images=<PIL images>, return_tensors="np")`` as a dict."""
    processor = hf_processor(min_pixels, max_pixels, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = processor(images=[to_pil(image) for image in images], return_tensors="np")
    return {"pixel_values": np.asarray(out["pixel_values"]), "image_grid_thw": np.asarray(out["image_grid_thw"])}


def hf_stages(image, resized_hw, image_mean, image_std):
    """Per-image stages as HF computes them: rgb, resized, rescaled, normalized."""
    from transformers.image_transforms import normalize, rescale

    from .hf_compat import convert_to_rgb_numpy

    rgb = convert_to_rgb_numpy(to_pil(image))
    height, width = resized_hw
    resized = np.asarray(PIL.Image.fromarray(rgb).resize((width, height), PIL.Image.Resampling.BICUBIC))
    chw = np.moveaxis(resized, -1, 0)
    rescaled = rescale(chw, 1 / 255, input_data_format="channels_first")
    normalized = normalize(rescaled, image_mean, image_std, input_data_format="channels_first")
    return {"rgb": rgb, "resized": resized, "rescaled": rescaled, "normalized": normalized}


def hf_torchvision_processor(min_pixels, max_pixels):
    from .hf_compat import size_bounds, torchvision_image_processor_class

    processor = torchvision_image_processor_class()(min_pixels=min_pixels, max_pixels=max_pixels)
    got = size_bounds(processor)
    if got != (min_pixels, max_pixels):  # transformers#41955, as for the PIL processor
        raise RuntimeError(f"HF processor ignored min/max_pixels: asked {(min_pixels, max_pixels)}, has {got}")
    return processor


def hf_preprocess_torchvision(images, min_pixels, max_pixels):
    """HF's torchvision-backend processor (``hf_compat.torchvision_image_processor_class``, CPU) on PIL images."""
    processor = hf_torchvision_processor(min_pixels, max_pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = processor(images=[to_pil(image) for image in images], return_tensors="pt")  # 4.49: "pt" only
    return {"pixel_values": out["pixel_values"].numpy(), "image_grid_thw": out["image_grid_thw"].numpy()}


def hf_stages_torchvision(image, min_pixels, max_pixels):
    """Per-image stages of the torchvision backend from the processor's own methods: rgb,
    resized (its smart resize on the uint8 [1, 3, H, W] tensor), rescaled_normalized (its fused step)."""
    import torch

    from .hf_compat import convert_to_rgb_numpy, torchvision_rescale_normalize, torchvision_resize

    processor = hf_torchvision_processor(min_pixels, max_pixels)
    rgb = convert_to_rgb_numpy(to_pil(image))
    chw = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]  # [1, 3, H, W] uint8
    resized = torchvision_resize(processor, chw)
    fused = torchvision_rescale_normalize(processor, resized)
    return {"rgb": rgb, "resized": resized[0].permute(1, 2, 0).numpy(), "rescaled_normalized": fused[0].numpy()}


def versions():
    from .blas import openblas_kernel
    from .machine import library_versions

    found = library_versions(("numpy", "pillow", "transformers", "torch", "safetensors"))
    return {**found, "openblas_kernel": openblas_kernel()}
