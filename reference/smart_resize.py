"""Choosing the resized image size: ``smart_resize``.

Qwen2.5-VL never crops or pads. It resizes every image to a size whose sides are
multiples of ``factor = patch_size * merge_size = 28`` (so the patch grid can be merged
2x2), whose area lies in ``[min_pixels, max_pixels]``, and whose aspect ratio is as close
to the original as those two rules allow.
"""

import math

# Released Qwen2.5-VL checkpoints (preprocessor_config.json). The HF processor *class*
# defaults to max_pixels = 28*28*1280 = 1003520 instead; we follow the checkpoints.
MIN_PIXELS = 56 * 56  # 3136
MAX_PIXELS = 16384 * 28 * 28  # 12845056
MAX_ASPECT_RATIO = 200


def smart_resize(height, width, factor=28, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS):
    """Return ``(resized_height, resized_width)`` exactly as HF's ``smart_resize``.

    1. Round each side to the nearest multiple of ``factor`` (Python ``round``: ties go to
       the even multiple, so 70 / 28 = 2.5 -> 2 -> 56, not 84).
    2. Too many pixels: shrink both sides by ``beta = sqrt(h*w / max_pixels)`` and round
       *down* to a multiple of ``factor`` (never below ``factor``).
    3. Too few pixels: grow by ``beta = sqrt(min_pixels / (h*w))`` and round *up*.

    Raises ValueError, as HF does, when the aspect ratio exceeds 200 — and also for
    non-positive sizes, where HF would fail with a ZeroDivisionError.
    """
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int,)) and not _is_integral(value):
            raise ValueError(f"smart_resize: {name} must be an integer, got {value!r}")
        if value <= 0:
            raise ValueError(f"smart_resize: {name} must be positive, got {value}")
    height, width = int(height), int(width)
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(
            f"absolute aspect ratio must be smaller than {MAX_ASPECT_RATIO}, "
            f"got {max(height, width) / min(height, width)} (height={height}, width={width})"
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def _is_integral(value):
    # numpy integers and the like: anything that converts to int without loss.
    try:
        return int(value) == value and not isinstance(value, float)
    except (TypeError, ValueError):
        return False
