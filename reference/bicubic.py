"""Pillow's uint8 BICUBIC resize, reproduced bit for bit.

HF's PIL image processor resizes the *uint8* image with ``PIL.Image.resize(...,
BICUBIC)``. Every later stage is a fixed float formula, so matching this one function
exactly is what makes ``pixel_values`` match exactly. A port that resizes in float
instead differs by up to ~2 uint8 steps per pixel.

What Pillow does (src/libImaging/Resample.c), per output axis:

* cubic convolution kernel with a = -0.5 and support 2;
* ``scale = in / out``; when shrinking the kernel is stretched by ``scale``
  (``filterscale = max(scale, 1)``), which is what makes it antialias;
* output sample ``i`` is centred at ``(i + 0.5) * scale`` in the source and reads the
  source samples ``xmin .. xmax-1`` around it; the weights are divided by their sum;
* the weights are turned into 22-bit fixed point integers, the sum is done in integers
  starting from 0.5 (``1 << 21``), shifted right by 22 and clamped to 0..255.

The two axes are separate passes with a uint8 image in between, so each pass rounds
and clamps and the *order* of the passes changes the result. A pass whose size does
not change is skipped. RGBA (and LA) images are resized premultiplied by alpha.

This is the plain form: each pass is Pillow's loop over taps. ``reference.fast.resize_bicubic``
gives the same bytes as banded matrix products.
"""

import math
from functools import lru_cache

import numpy as np

from .validate import check_resize

PRECISION_BITS = 22  # Pillow's fixed point for 8-bit images
_ONE = 1 << PRECISION_BITS
_HALF = 1 << (PRECISION_BITS - 1)
_SUPPORT = 2.0  # bicubic kernel support
_A = -0.5  # bicubic "a"


def bicubic_kernel(x):  # [...] -> [...]
    """Cubic convolution kernel (a = -0.5), evaluated with Pillow's exact operation order."""
    x = np.abs(x)
    near = ((_A + 2.0) * x - (_A + 3.0)) * x * x + 1  # |x| < 1
    far = (((x - 5) * x + 8) * x - 4) * _A  # 1 <= |x| < 2
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


@lru_cache(maxsize=256)
def resample_coefficients(in_size, out_size):  # -> [out] int64, [out, ksize] int64
    """Integer taps for one axis: ``(xmin [out], weights [out, ksize] int64)``.

    Output ``i`` = clip8((HALF + sum_k src[xmin[i] + k] * weights[i, k]) >> 22); taps past
    the window of output ``i`` have weight 0 (their index is kept in range).
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)  # > 1 when shrinking: the kernel widens (antialias)
    support = _SUPPORT * filterscale
    ksize = int(math.ceil(support)) * 2 + 1

    center = (np.arange(out_size) + 0.5) * scale  # [out] source position of each output
    xmin = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)  # C's (int) truncates
    xmax = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size)
    count = xmax - xmin  # [out] taps actually read

    k = np.arange(ksize)
    live = k[None, :] < count[:, None]  # [out, ksize]
    w = bicubic_kernel(((k[None, :] + xmin[:, None]) - center[:, None] + 0.5) * (1.0 / filterscale))
    w = np.where(live, w, 0.0)
    total = np.zeros(out_size)
    for j in range(ksize):  # Pillow sums the weights left to right; keep that order
        total = total + w[:, j]
    w = np.where(total[:, None] != 0.0, w / np.where(total == 0.0, 1.0, total)[:, None], w)

    # To fixed point, rounding half away from zero: (int)(w * 2^22 +/- 0.5).
    fixed = np.trunc(np.where(w < 0, w * _ONE - 0.5, w * _ONE + 0.5)).astype(np.int64)
    fixed[~live] = 0
    return xmin, fixed


def resample_axis(src, out_size, axis):  # uint8 [..., in, ...] -> uint8 [..., out_size, ...] along axis
    """One pass, written as Pillow's loop: for each tap, add ``pixel * weight``."""
    in_size = src.shape[axis]
    xmin, weights = resample_coefficients(in_size, out_size)
    moved = np.moveaxis(src, axis, -1).astype(np.int64)  # [..., in]
    acc = np.full(moved.shape[:-1] + (out_size,), _HALF, dtype=np.int64)  # [..., out]
    for k in range(weights.shape[1]):
        idx = np.minimum(xmin + k, in_size - 1)  # dead taps have weight 0
        acc += moved[..., idx] * weights[:, k]
    out = np.clip(acc >> PRECISION_BITS, 0, 255).astype(np.uint8)
    return np.moveaxis(out, -1, axis)


@lru_cache(maxsize=1)
def installed_pillow_version():
    """The installed Pillow's version as a tuple, read from package metadata (PIL is not imported)."""
    from importlib import metadata

    try:
        text = metadata.version("pillow")
    except metadata.PackageNotFoundError:
        return None
    return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())


def vertical_first(in_h, in_w, out_h, out_w, pillow_version=None):
    """Whether Pillow runs the vertical pass first (only matters when both passes run).

    * Pillow >= 13: vertical first exactly when the height shrinks by more than twice
      as many pixels as the width does: ``dh > 0 and dh > 2 * dw``.
    * Pillow 12.2: horizontal first unless the image is over 100x taller than wide and
      its height shrinks.
    * Pillow <= 12.1: always horizontal first.
    Unknown (None) means the installed Pillow, or the newest rule when none is installed.
    """
    version = pillow_version or installed_pillow_version() or (13, 0)
    if version >= (13, 0):
        dh, dw = in_h - out_h, in_w - out_w
        return dh > 0 and dh > 2 * dw
    if version >= (12, 2):
        return in_h > 100 * in_w and out_h < in_h
    return False


def premultiply_alpha(image):  # uint8 [..., C] -> uint8 [..., C] (alpha last)
    """RGBA -> RGBa as Pillow converts it: ``c * a / 255`` rounded (MULDIV255)."""
    color, alpha = image[..., :-1].astype(np.uint32), image[..., -1:].astype(np.uint32)
    tmp = color * alpha + 128
    color = ((tmp >> 8) + tmp) >> 8
    return np.concatenate([color.astype(np.uint8), image[..., -1:]], axis=-1)


def unpremultiply_alpha(image):  # uint8 [..., C] -> uint8 [..., C] (alpha last)
    """RGBa -> RGBA as Pillow converts it: ``255 * c // a`` clamped; a = 0 or 255 kept as is."""
    color, alpha = image[..., :-1].astype(np.int64), image[..., -1:].astype(np.int64)
    divided = np.clip((255 * color) // np.maximum(alpha, 1), 0, 255)
    color = np.where((alpha == 0) | (alpha == 255), color, divided)
    return np.concatenate([color.astype(np.uint8), image[..., -1:]], axis=-1)


def resize_bicubic(image, height, width, *, pillow_version=None):  # uint8 [H, W(, C)] -> [height, width(, C)]
    """``np.asarray(PIL.Image.fromarray(image).resize((width, height), Image.BICUBIC))``, in NumPy.

    image: uint8 [H, W] (mode L), [H, W, 3] (RGB), [H, W, 4] (RGBA) or [H, W, 2] (LA);
    returns uint8 [height, width(, C)]. ``pillow_version`` picks the pass-order rule;
    default: the installed Pillow.
    """
    image, height, width = check_resize(image, height, width)
    if (height, width) == image.shape[:2]:
        return image.copy()  # Pillow returns a copy, without the alpha round trip
    alpha = image.ndim == 3 and image.shape[2] in (2, 4)
    x = premultiply_alpha(image) if alpha else image  # RGBA and LA are resized premultiplied
    axes = (0, 1) if vertical_first(*image.shape[:2], height, width, pillow_version) else (1, 0)
    for axis in axes:  # two passes, each rounding to uint8 in between: their order matters
        size = (height, width)[axis]
        if x.shape[axis] != size:  # a pass whose size does not change is skipped
            x = resample_axis(x, size, axis)
    return unpremultiply_alpha(x) if alpha else x
