"""Qwen2.5-VL image preprocessing: uint8 images -> ``pixel_values`` and ``image_grid_thw``.

Per image, as HF's ``Qwen2VLImageProcessorPil`` does:

    input  --to_rgb-->  rgb  --smart_resize + PIL bicubic-->  resized (uint8)
           --x / 255 (float64, then float32)-->  rescaled [3, H, W]
           --(x - mean) / std (float32)-->  normalized [3, H, W]
           --patchify-->  rows of 3*2*14*14 = 1176 values, one row per 14x14 patch

Images are concatenated along rows; ``image_grid_thw`` holds ``[1, H/14, W/14]`` per image.

Without a ``trace`` the last three steps run as one (``patchify_levels``): rescale and normalize
depend only on a value's channel and uint8 level, so the patches are gathered as uint8 and each
value is looked up in a [3, 256] table made by ``rescale`` and ``normalize`` themselves
(``normalize_table``). Same bits (tests/test_fast_paths.py), several times faster.
"""

import numpy as np

from .bicubic import resize_bicubic
from .color import to_rgb
from .smart_resize import MAX_PIXELS, MIN_PIXELS, smart_resize

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


def patchify_levels(image, table, patch_size=14, merge_size=2, temporal_patch_size=2):
    """uint8 [H, W, C] -> ([gh*gw, C*tp*p*p] float32, gh, gw), equal to
    ``patchify(normalize(rescale(image.transpose(2, 0, 1)), mean, std), ...)`` with ``table =
    normalize_table(mean, std)`` (tests/test_fast_paths.py checks it), and several times faster.

    Same rows as :func:`patchify`, made another way: the patches are gathered while still
    uint8 (4x less data to move than float32), then each value is looked up in ``table`` once
    and the frame copied for the time axis. The work goes one row of merge blocks at a time,
    so every temporary stays in the CPU cache.
    """
    height, width, channels = image.shape
    gh, gw = height // patch_size, width // patch_size
    m, p, tp = merge_size, patch_size, temporal_patch_size
    out = np.empty((gh // m, gw // m, m, m, channels, tp, p, p), np.float32)
    levels = np.empty((gw // m, m, m, channels, p, p), np.uint8)  # one row of merge blocks
    for row in range(gh // m):
        pixels = image[row * m * p:(row + 1) * m * p].reshape(m, p, gw // m, m, p, channels)
        levels[...] = pixels.transpose(2, 0, 3, 5, 1, 4)  # [gw/m, m, m, C, p, p], as in patchify
        for c in range(channels):  # rescale + normalize: one lookup per value
            np.take(table[c], levels[:, :, :, c], out=out[row, :, :, :, c, 0], mode="clip")
        out[row, :, :, :, :, 1:] = out[row, :, :, :, :, :1]  # the frame repeated in time
    return out.reshape(gh * gw, channels * tp * p * p), gh, gw


def _describe_values(image):
    """A short summary of an array's values for error messages: range, NaN/Inf."""
    if image.size == 0:
        return "no values"
    if np.issubdtype(image.dtype, np.floating):
        finite = np.isfinite(image)
        notes = []
        if np.isnan(image).any():
            notes.append("contains NaN")
        if np.isinf(image).any():
            notes.append("contains Inf")
        if finite.any():
            notes.insert(0, f"finite values in [{image[finite].min():g}, {image[finite].max():g}]")
        return ", ".join(notes)
    if image.dtype == np.bool_:
        return "boolean values"
    return f"values in [{image.min()}, {image.max()}]"


def check_image(image, where="image"):
    """Refuse anything but a non-empty uint8 [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] array.

    HF's processor would guess at float or integer inputs (rescaling floats in [0, 1], refusing
    others); the reference takes the decoded uint8 image only, and says what it got instead.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"preprocess: {where} must be a numpy uint8 array, got {type(image).__name__}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(
            f"preprocess: {where} must be [H, W] or [H, W, C] with C in (1, 3, 4) channels, got shape {image.shape}"
        )
    if image.dtype != np.uint8:
        hint = " (scale floats in [0, 1] by 255 and round first)" if np.issubdtype(image.dtype, np.floating) else ""
        raise ValueError(f"preprocess: {where} must have dtype uint8, got {image.dtype} "
                         f"({_describe_values(image)}){hint}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"preprocess: {where} is empty, shape {image.shape}")


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
    single = isinstance(images, np.ndarray)
    images = [images] if single else list(images)
    if not images:
        raise ValueError("preprocess: no images given")
    for index, image in enumerate(images):
        check_image(image, f"image {index}")

    stages = {name: [] for name in IMAGE_STAGES}
    rows, grids = [], []
    factor = patch_size * merge_size
    for image in images:
        rgb = to_rgb(image)  # [H, W, 3] uint8
        height, width = smart_resize(rgb.shape[0], rgb.shape[1], factor, min_pixels, max_pixels)
        resized = resize_bicubic(rgb, height, width)  # [h, w, 3] uint8, exactly as PIL
        if trace is None:  # the same rows as below, by lookup (see patchify_levels)
            table = normalize_table(image_mean, image_std)  # [3, 256] float32
            patches, gh, gw = patchify_levels(resized, table, patch_size, merge_size, temporal_patch_size)
        else:
            rescaled = rescale(resized.transpose(2, 0, 1))  # [3, h, w] float32
            normalized = normalize(rescaled, image_mean, image_std)  # [3, h, w] float32
            patches, gh, gw = patchify(normalized, patch_size, merge_size, temporal_patch_size)
            for name, value in zip(IMAGE_STAGES, (image, rgb, resized, rescaled, normalized)):
                stages[name].append(value)
        rows.append(patches)
        grids.append([1, gh, gw])

    out = {
        "pixel_values": rows[0] if len(rows) == 1 else np.concatenate(rows, axis=0),  # [sum(gh*gw), 1176]
        "image_grid_thw": np.array(grids, dtype=np.int64),  # [n_images, 3]
    }
    if trace is not None:
        for name, values in stages.items():
            trace[name] = values[0] if len(values) == 1 else values
        trace.update(out)
    return out
