"""The resized image size of Qwen2.5-VL's image processor (HF's ``smart_resize``).

Sides become multiples of ``factor = patch_size * merge_size`` (28), the area lands in
``[min_pixels, max_pixels]`` and the aspect ratio stays as close to the original as those allow.
"""

import math

__all__ = ["MAX_ASPECT_RATIO", "MAX_PIXELS", "MIN_PIXELS", "smart_resize"]

# The released checkpoints' preprocessor_config.json (HF's processor class defaults to
# max_pixels = 28 * 28 * 1280 instead).
MIN_PIXELS = 56 * 56  # 3136
MAX_PIXELS = 16384 * 28 * 28  # 12845056
MAX_ASPECT_RATIO = 200


def smart_resize(
    height: int, width: int, factor: int = 28, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS
) -> tuple[int, int]:
    """``(resized_height, resized_width)``, as HF computes them.

    Each side is rounded to the nearest multiple of ``factor`` (Python's ``round``: ties to even);
    too large an area shrinks both sides by ``sqrt(area / max_pixels)`` rounding down, too small
    an area grows them by ``sqrt(min_pixels / area)`` rounding up.

    Raises:
        ValueError: a non-integer or non-positive side (HF would divide by zero), or an aspect
            ratio above 200 (as HF).
    """
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, (bool, float)) or not _is_integer(value):
            raise ValueError(f"smart_resize: {name} must be an integer, got {value!r}")
        if value <= 0:
            raise ValueError(f"smart_resize: {name} must be positive, got {value}")
    height, width = int(height), int(width)
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(
            f"absolute aspect ratio must be smaller than {MAX_ASPECT_RATIO}, "
            f"got {max(height, width) / min(height, width)} (height={height}, width={width})"
        )
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def _is_integer(value) -> bool:
    """Python and NumPy integers (anything that converts to int without loss)."""
    try:
        return int(value) == value
    except (TypeError, ValueError):
        return False
