"""Conversion to RGB, as HF's ``convert_to_rgb`` does for PIL images."""

import numpy as np


def composite_over_white(rgba):
    """Alpha-composite a uint8 RGBA image over opaque white and drop alpha.

    HF does ``PIL.Image.alpha_composite(white, image).convert("RGB")``. Pillow blends in
    fixed point (7 extra bits) with its divide-by-255 shortcut; this repeats that integer
    arithmetic, so the result matches Pillow exactly (checked over all 256 x 256
    colour/alpha pairs in the tests).
    """
    color = rgba[..., :3].astype(np.int64)  # [H, W, 3]
    alpha = rgba[..., 3:4].astype(np.int64)  # [H, W, 1]
    bits = 7  # Pillow's PRECISION_BITS in AlphaComposite.c
    out_alpha_255 = alpha * 255 + 255 * (255 - alpha)  # background alpha is 255
    coef_src = alpha * 255 * 255 * (1 << bits) // out_alpha_255
    coef_dst = 255 * (1 << bits) - coef_src
    blended = color * coef_src + 255 * coef_dst + (0x80 << bits)
    blended = (((blended >> 8) + blended) >> 8) >> bits  # / 255, then drop the extra bits
    return blended.astype(np.uint8)


def to_rgb(image):
    """uint8 [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] -> uint8 [H, W, 3].

    Gray is repeated over three channels (PIL's L -> RGB); RGBA is composited over white,
    exactly as HF's ``convert_to_rgb`` does for an RGBA PIL image. (For a *numpy* RGBA
    input HF uses a float blend with ``np.round`` instead; the PIL path is the one matched.)
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"to_rgb: image must be uint8, got dtype {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"to_rgb: image must be [H, W] or [H, W, C] with C in (1, 3, 4), got shape {image.shape}"
        )
    channels = image.shape[2]
    if channels == 1:
        return np.repeat(image, 3, axis=2)
    if channels == 4:
        return composite_over_white(image)
    return image.copy()
