"""Qwen2.5-VL image preprocessing: images -> ``pixel_values`` and ``image_grid_thw``.

Per image, as HF's ``Qwen2VLImageProcessorPil`` does (``backend="pil"``, the default):

    input  --to RGB-->  rgb  --smart_resize + PIL bicubic-->  resized (uint8)
           --x / 255 (float64, then float32)-->  rescaled [3, H, W]
           --(x - mean) / std (float32)-->  normalized [3, H, W]
           --patchify-->  rows of 3*2*14*14 = 1176 values, one row per 14x14 patch

and as HF's ``Qwen2VLImageProcessor`` does (``backend="torchvision"``, HF's default when
torchvision is installed): the resize is torch's uint8 antialiased bicubic
(``resize_bicubic_torch``), and rescale + normalize are ONE float32 step,
``(x - mean*255) / (std*255)`` with ``mean*255`` and ``std*255`` rounded to float32 first
(HF fuses ``1/rescale_factor`` into the mean and std). It rounds differently from rescaling
then normalizing, so it is traced under its own name, ``rescaled_normalized``.

Images are concatenated along rows; ``image_grid_thw`` holds ``[1, H/14, W/14]`` per image.
The input formats (PIL, NumPy HWC/CHW, tensors, lists, nested lists) are in ``image_inputs``.

This is the plain form. ``reference.fast.preprocess`` gives the same bits several times faster
(the resize as matrix products, rescale + normalize as a lookup in ``normalize_table``).
"""

import numpy as np

from .bicubic import resize_bicubic
from .image_inputs import prepare_images
from .smart_resize import MAX_PIXELS, MIN_PIXELS, smart_resize

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Stage names, in pipeline order; the goldens store each one. A stage switched off is not traced.
IMAGE_STAGES = ("input", "rgb", "resized", "rescaled", "normalized")
TORCHVISION_STAGES = ("input", "rgb", "resized", "rescaled", "rescaled_normalized", "normalized")
BACKENDS = ("pil", "torchvision")
RESCALE_FACTOR = 1 / 255


def rescale(image, factor=RESCALE_FACTOR):
    """uint8 [C, H, W] -> float32: HF (PIL) multiplies by the factor in float64, then casts to float32."""
    return (image.astype(np.float64) * factor).astype(np.float32)


def normalize(image, mean, std):
    """[C, H, W] -> float32: ``(x - mean) / std`` per channel, in float32 as HF does (uint8 cast first)."""
    mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)  # a scalar applies to every channel
    std = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
    return (image.astype(np.float32) - mean) / std


def rescale_torch(image, factor=RESCALE_FACTOR):
    """uint8 [C, H, W] -> float32: HF (torchvision) ``image * factor``, a float32 product."""
    return image.astype(np.float32) * np.float32(factor)


def rescale_normalize_torch(image, mean, std, factor=RESCALE_FACTOR):
    """uint8 [C, H, W] -> float32: HF (torchvision) fused step ``(x - mean/f) / (std/f)`` in float32.

    HF divides mean and std by the factor as float32 tensors times the float32 ``1/f``
    (``mean*255`` for the default), then normalizes the float32 image by them.
    """
    scale = np.float32(1.0 / factor)
    return normalize(image, np.float32(mean) * scale, np.float32(std) * scale)


def check_mean_std(mean, std, channels):
    """image_mean / image_std: one number, or one per channel (3 for RGB); std nonzero."""
    for name, value in (("image_mean", mean), ("image_std", std)):
        values = np.asarray(value, dtype=np.float64) if np.ndim(value) <= 1 else None
        if values is None or (values.ndim == 1 and len(values) != channels):
            raise ValueError(f"preprocess: {name} must hold {channels} values (one per channel of the "
                             f"{channels}-channel image) or one number, got {value!r}")
    if (np.asarray(std, dtype=np.float64) == 0).any():
        raise ValueError(f"preprocess: image_std must not contain 0 (division by zero), got {std!r}")


def patchify(image, patch_size=14, merge_size=2, temporal_patch_size=2):
    """float32 [C, H, W] -> ([gh*gw, C*tp*p*p], gh, gw), rows in 2x2 merge-block order.

    The grid of 14x14 patches is walked merge block by merge block (each run of
    ``merge_size**2`` consecutive rows is one 2x2 block, which the patch merger later
    fuses into one token). Each row holds (channel, time, y, x); a still image is
    repeated ``temporal_patch_size`` times along time, to match video's 2-frame patches.
    """
    channels, height, width = image.shape
    gh, gw = height // patch_size, width // patch_size
    m, p = merge_size, patch_size
    patches = image.reshape(channels, gh // m, m, p, gw // m, m, p)
    patches = patches.transpose(1, 4, 2, 5, 0, 3, 6)  # [gh/m, gw/m, m, m, C, p, p]
    patches = np.broadcast_to(
        patches[:, :, :, :, :, None], patches.shape[:5] + (temporal_patch_size,) + patches.shape[5:]
    )  # [gh/m, gw/m, m, m, C, tp, p, p]: the frame repeated in time
    return patches.reshape(gh * gw, channels * temporal_patch_size * p * p), gh, gw


def level_table_of(step, channels):
    """[C, 256]: what ``step`` gives for every uint8 level, per channel (the reference's one table builder).

    Rescale and normalize act on each value alone, so a value's result depends only on its
    channel and its uint8 level. ``step`` (uint8 [C, H, W] -> [C, H, W]) is applied to an image
    [C, 1, 256] holding every level once, so a lookup in the table is bit-equal to ``step`` itself.
    """
    levels = np.broadcast_to(np.arange(256, dtype=np.uint8), (channels, 1, 256))  # [C, 1, 256]
    return np.ascontiguousarray(step(levels)[:, 0, :])


def normalize_table(mean, std):
    """[C, 256] float32: what ``normalize(rescale(level))`` gives for every uint8 level, per channel."""
    return level_table_of(lambda levels: normalize(rescale(levels), mean, std), len(mean))


def torch_normalize_table(mean, std, factor=RESCALE_FACTOR):
    """[C, 256] float32: the torchvision backend's fused ``rescale_normalize_torch`` of every uint8 level."""
    return level_table_of(lambda levels: rescale_normalize_torch(levels, mean, std, factor), len(mean))


def preprocess(
    images,
    *,
    backend="pil",
    do_resize=True,
    min_pixels=MIN_PIXELS,
    max_pixels=MAX_PIXELS,
    patch_size=14,
    merge_size=2,
    temporal_patch_size=2,
    do_rescale=True,
    rescale_factor=RESCALE_FACTOR,
    do_normalize=True,
    image_mean=OPENAI_CLIP_MEAN,
    image_std=OPENAI_CLIP_STD,
    do_convert_rgb=True,
    input_data_format=None,
    trace=None,
):
    """Preprocess images, bit-exact with ``Qwen2VLImageProcessorPil`` (``backend="pil"``) or
    ``Qwen2VLImageProcessor`` on CPU (``backend="torchvision"``).

    images: one image or a list / nested list / 4-D batch of them; an image is a uint8 array
    [H, W], [H, W, C] or [C, H, W] with C in (1, 3, 4) (the layout inferred as HF does, or given
    by ``input_data_format``: "channels_first" / "channels_last"), a CPU torch tensor of the same,
    or a PIL image. The options are HF's, with HF's defaults except min/max_pixels.
    Returns ``{"pixel_values": [N, C*tp*p*p], "image_grid_thw": int64 [n_images, 3]}``;
    pixel_values are float32, except uint8 on the torchvision backend when neither rescale nor
    normalize runs (as HF).

    The pixel defaults are those of the released Qwen2.5-VL checkpoints' preprocessor_config.json
    (min_pixels 3136, max_pixels 12845056), NOT the HF class defaults (max_pixels 1003520).

    ``trace``: a dict to fill with every stage that ran (``IMAGE_STAGES`` or ``TORCHVISION_STAGES``
    per image — an array for a single image, a list of arrays for several — then
    ``pixel_values``, ``image_grid_thw``). ``rgb`` and ``resized`` are [H, W, C] uint8, later stages
    [C, H, W].
    """
    if backend not in BACKENDS:
        raise ValueError(f"preprocess: backend must be one of {BACKENDS}, got {backend!r}")
    if do_rescale and (isinstance(rescale_factor, bool) or not isinstance(rescale_factor, (int, float))):
        raise ValueError(f"preprocess: rescale_factor must be a number, got {rescale_factor!r}")
    resize = resize_bicubic
    if backend == "torchvision":
        from .bicubic_torch import resize_bicubic_torch as resize
    images, inputs = prepare_images(images, backend=backend, do_convert_rgb=do_convert_rgb,
                                    input_data_format=input_data_format)  # uint8 [C, H, W] each
    factor = patch_size * merge_size
    stages = {}
    rows, grids = [], []
    for index, (image, chw) in enumerate(zip(inputs, images)):
        record = {"input": image, "rgb": np.ascontiguousarray(chw.transpose(1, 2, 0))}  # stages it went through
        if do_resize:
            height, width = smart_resize(chw.shape[1], chw.shape[2], factor, min_pixels, max_pixels)
            record["resized"] = resize(record["rgb"], height, width)  # [h, w, C] uint8
            chw = record["resized"].transpose(2, 0, 1)
        elif chw.shape[1] % factor or chw.shape[2] % factor:
            raise ValueError(f"preprocess: with do_resize=False image {index} must have sides that are multiples "
                             f"of patch_size * merge_size = {factor}, got {chw.shape[1]}x{chw.shape[2]}")
        x = chw  # [C, h, w]
        if do_normalize:
            check_mean_std(image_mean, image_std, chw.shape[0])
        if backend == "pil":
            if do_rescale:
                x = record["rescaled"] = rescale(x, rescale_factor)
            if do_normalize:
                x = record["normalized"] = normalize(x, image_mean, image_std)
            x = x.astype(np.float32, copy=False)  # HF's patchify casts (a uint8 image too)
        elif do_rescale and do_normalize:
            x = record["rescaled_normalized"] = rescale_normalize_torch(x, image_mean, image_std, rescale_factor)
        elif do_rescale:
            x = record["rescaled"] = rescale_torch(x, rescale_factor)
        elif do_normalize:
            x = record["normalized"] = normalize(x, image_mean, image_std)
        patches, gh, gw = patchify(x, patch_size, merge_size, temporal_patch_size)  # [gh*gw, C*tp*p*p]
        rows.append(patches)
        grids.append([1, gh, gw])
        for name, value in record.items():
            stages.setdefault(name, []).append(value)

    out = {
        "pixel_values": rows[0] if len(rows) == 1 else np.concatenate(rows, axis=0),  # [sum(gh*gw), 1176]
        "image_grid_thw": np.array(grids, dtype=np.int64),  # [n_images, 3]
    }
    if trace is not None:
        for name, values in stages.items():
            trace[name] = values[0] if len(values) == 1 else values
        trace.update(out)
    return out
