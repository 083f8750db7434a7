"""Qwen2.5-VL image preprocessing: uint8 images -> ``pixel_values`` and ``image_grid_thw``.

Per image, as HF's ``Qwen2VLImageProcessorPil`` does:

    input  --to_rgb-->  rgb  --smart_resize + PIL bicubic-->  resized (uint8)
           --x / 255 (float64, then float32)-->  rescaled [3, H, W]
           --(x - mean) / std (float32)-->  normalized [3, H, W]
           --patchify-->  rows of 3*2*14*14 = 1176 values, one row per 14x14 patch

Images are concatenated along rows; ``image_grid_thw`` holds ``[1, H/14, W/14]`` per image.

This is the plain form. ``reference.fast.preprocess`` gives the same bits several times faster
(the resize as matrix products, rescale + normalize as a lookup in ``normalize_table``).
"""

import numpy as np

from .bicubic import resize_bicubic
from .color import to_rgb
from .smart_resize import MAX_PIXELS, MIN_PIXELS, smart_resize
from .validate import check_image, check_images  # noqa: F401  (check_image: public, used by callers)

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Stage names, in pipeline order; the goldens store each one.
IMAGE_STAGES = ("input", "rgb", "resized", "rescaled", "normalized")
OUTPUT_STAGES = ("pixel_values", "image_grid_thw")


def rescale(image):
    """uint8 [3, H, W] -> float32: HF multiplies by 1/255 in float64, then casts to float32."""
    return (image.astype(np.float64) * (1 / 255)).astype(np.float32)


def normalize(image, mean, std):
    """float32 [3, H, W] -> float32: ``(x - mean) / std`` per channel, in float32 as HF does."""
    mean = np.asarray(mean, dtype=np.float32)[:, None, None]
    std = np.asarray(std, dtype=np.float32)[:, None, None]
    return (image - mean) / std


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


def normalize_table(mean, std):
    """[C, 256] float32: what ``normalize(rescale(level))`` gives for every uint8 level, per channel.

    Rescale and normalize act on each value alone, so a value's result depends only on its
    channel and its uint8 level. The table is made by the very functions above, applied to an
    image [C, 1, 256] holding every level once, so a lookup in it is bit-equal to them.
    """
    levels = np.broadcast_to(np.arange(256, dtype=np.uint8), (len(mean), 1, 256))  # [C, 1, 256]
    return np.ascontiguousarray(normalize(rescale(levels), mean, std)[:, 0, :])


def preprocess(
    images,
    *,
    min_pixels=MIN_PIXELS,
    max_pixels=MAX_PIXELS,
    patch_size=14,
    merge_size=2,
    temporal_patch_size=2,
    image_mean=OPENAI_CLIP_MEAN,
    image_std=OPENAI_CLIP_STD,
    trace=None,
):
    """Preprocess one uint8 image or a list of them, bit-exact with ``Qwen2VLImageProcessorPil``.

    images: uint8 [H, W] (gray), [H, W, 1], [H, W, 3] (RGB) or [H, W, 4] (RGBA), or a list.
    Returns ``{"pixel_values": float32 [N, 3*tp*p*p], "image_grid_thw": int64 [n_images, 3]}``.

    The defaults are those of the released Qwen2.5-VL checkpoints' preprocessor_config.json
    (min_pixels 3136, max_pixels 12845056), NOT the HF class defaults (max_pixels 1003520).

    ``trace``: a dict to fill with every stage (``IMAGE_STAGES`` per image — an array for a
    single image, a list of arrays for several — then ``pixel_values``, ``image_grid_thw``).
    """
    images = check_images(images)
    stages = {name: [] for name in IMAGE_STAGES}
    rows, grids = [], []
    for image in images:
        rgb = to_rgb(image)  # [H, W, 3] uint8
        height, width = smart_resize(rgb.shape[0], rgb.shape[1], patch_size * merge_size, min_pixels, max_pixels)
        resized = resize_bicubic(rgb, height, width)  # [h, w, 3] uint8, exactly as PIL
        rescaled = rescale(resized.transpose(2, 0, 1))  # [3, h, w] float32
        normalized = normalize(rescaled, image_mean, image_std)  # [3, h, w] float32
        patches, gh, gw = patchify(normalized, patch_size, merge_size, temporal_patch_size)  # [gh*gw, 3*tp*p*p]
        rows.append(patches)
        grids.append([1, gh, gw])
        if trace is not None:
            for name, value in zip(IMAGE_STAGES, (image, rgb, resized, rescaled, normalized)):
                stages[name].append(value)

    out = {
        "pixel_values": rows[0] if len(rows) == 1 else np.concatenate(rows, axis=0),  # [sum(gh*gw), 1176]
        "image_grid_thw": np.array(grids, dtype=np.int64),  # [n_images, 3]
    }
    if trace is not None:
        for name, values in stages.items():
            trace[name] = values[0] if len(values) == 1 else values
        trace.update(out)
    return out
