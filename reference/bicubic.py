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
"""

import math
from functools import lru_cache

import numpy as np

PRECISION_BITS = 22  # Pillow's fixed point for 8-bit images
_ONE = 1 << PRECISION_BITS
_HALF = 1 << (PRECISION_BITS - 1)
_SUPPORT = 2.0  # bicubic kernel support
_A = -0.5  # bicubic "a"


def bicubic_kernel(x):
    """Cubic convolution kernel (a = -0.5), evaluated with Pillow's exact operation order."""
    x = np.abs(x)
    near = ((_A + 2.0) * x - (_A + 3.0)) * x * x + 1  # |x| < 1
    far = (((x - 5) * x + 8) * x - 4) * _A  # 1 <= |x| < 2
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


@lru_cache(maxsize=256)
def resample_coefficients(in_size, out_size):
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


def resample_axis_obvious(src, out_size, axis):
    """One pass, written as Pillow's loop: for each tap, add ``pixel * weight``.

    ``src`` is a uint8 array; returns uint8 with ``src.shape[axis]`` replaced by ``out_size``.
    This is the readable form; :func:`resample_axis` is the fast one (a test keeps them equal).
    """
    in_size = src.shape[axis]
    xmin, weights = resample_coefficients(in_size, out_size)
    moved = np.moveaxis(src, axis, -1).astype(np.int64)  # [..., in]
    acc = np.full(moved.shape[:-1] + (out_size,), _HALF, dtype=np.int64)  # [..., out]
    for k in range(weights.shape[1]):
        idx = np.minimum(xmin + k, in_size - 1)  # dead taps have weight 0
        acc += moved[..., idx] * weights[:, k]
    out = np.clip(acc >> PRECISION_BITS, 0, 255).astype(np.uint8)
    return np.moveaxis(out, -1, axis)


def resample_axis(src, out_size, axis):
    """Same result as :func:`resample_axis_obvious`, as banded float64 matrix products.

    Every product ``pixel * weight`` is an integer below 2^31 and every partial sum below
    2^53, so float64 arithmetic (and BLAS, in any summation order, with or without FMA)
    is exact here.
    """
    rows = np.moveaxis(src, axis, 0)
    levels = np.ascontiguousarray(rows.reshape(rows.shape[0], 1, -1), dtype=np.float64)  # [in, 1, rest]
    out = _vertical(levels, _bands(rows.shape[0], out_size), 0, 0).astype(np.uint8)  # [out, 1, rest]
    return np.moveaxis(out.reshape((out_size,) + rows.shape[1:]), 0, axis)


def _band(xmin, weights, start, stop, in_size):
    """Dense [source range, out block] slice of the banded resampling matrix, and its first row."""
    ksize = weights.shape[1]
    lo = int(xmin[start])
    hi = min(int(xmin[stop - 1]) + ksize, in_size)
    band = np.zeros((hi - lo, stop - start))
    cols = np.arange(stop - start)
    for k in range(ksize):
        rows = xmin[start:stop] + k - lo
        live = rows < hi - lo
        band[rows[live], cols[live]] += weights[start:stop, k][live]
    return lo, hi, band


_BLOCK = 8  # outputs per band: measured fastest from small upscales to 4x downscales


@lru_cache(maxsize=64)
def _bands(in_size, out_size):
    """The resampling matrix of one axis, cut into dense blocks of outputs.

    Returns ``((start, stop, lo, hi, band), ...)``: outputs ``start:stop`` read sources
    ``lo:hi`` with weights ``band`` [hi - lo, stop - start], the integer weights times 2^-22.
    Scaling by a power of two is exact, so a product with ``band`` gives ``acc / 2^22``
    exactly, and Pillow's ``(2^21 + acc) >> 22`` is ``floor(0.5 + acc / 2^22)``, exact too.
    Outputs are taken a few at a time, so that each band is mostly taps (the work stays
    about proportional to the taps) and each block is one matrix product.
    """
    xmin, weights = resample_coefficients(in_size, out_size)
    block = _BLOCK
    blocks = []
    for start in range(0, out_size, block):
        stop = min(start + block, out_size)
        lo, hi, band = _band(xmin, weights, start, stop, in_size)
        band *= 1.0 / _ONE
        band.flags.writeable = False  # cached: shared by every call
        blocks.append((start, stop, lo, hi, band))
    return tuple(blocks)


def _round_to_levels(acc):
    """``acc / 2^22`` (float64, exact) -> Pillow's ``clip8((2^21 + acc) >> 22)``, in place, as float64."""
    acc += 0.5
    np.floor(acc, out=acc)
    return np.clip(acc, 0, 255, out=acc)


def _vertical(levels, blocks, r0, lo):
    """Vertical pass over float64 levels [rows, C, W] whose row 0 is source row ``lo``
    -> output rows ``r0:r1`` [r1 - r0, C, W], ``blocks`` being consecutive blocks of :func:`_bands`.

    Each block is one matrix product ``band.T @ levels[rows it reads]`` on rows of C*W values
    (a long, efficient BLAS shape); the result is rounded and clamped as Pillow's uint8 image is.
    """
    rows, c, w = levels.shape
    src = levels.reshape(rows, c * w)
    out = np.empty((blocks[-1][1] - r0, c * w))
    for start, stop, b_lo, b_hi, band in blocks:
        np.matmul(band.T, src[b_lo - lo:b_hi - lo], out=out[start - r0:stop - r0])
    return _round_to_levels(out).reshape(-1, c, w)


def _horizontal(levels, out_size):
    """Horizontal pass over float64 levels [rows, C, W] -> [rows, C, out_size].

    The levels are one matrix [rows*C, W]; each block of outputs is ``matrix[:, lo:hi] @ band``.
    """
    rows, c, in_size = levels.shape
    src = levels.reshape(rows * c, in_size)
    out = np.empty((rows * c, out_size))
    for start, stop, lo, hi, band in _bands(in_size, out_size):
        np.matmul(src[:, lo:hi], band, out=out[:, start:stop])
    return _round_to_levels(out).reshape(rows, c, out_size)


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


def premultiply_alpha(image):
    """RGBA -> RGBa as Pillow converts it: ``c * a / 255`` rounded (MULDIV255)."""
    color, alpha = image[..., :-1].astype(np.uint32), image[..., -1:].astype(np.uint32)
    tmp = color * alpha + 128
    color = ((tmp >> 8) + tmp) >> 8
    return np.concatenate([color.astype(np.uint8), image[..., -1:]], axis=-1)


def unpremultiply_alpha(image):
    """RGBa -> RGBA as Pillow converts it: ``255 * c // a`` clamped; a = 0 or 255 kept as is."""
    color, alpha = image[..., :-1].astype(np.int64), image[..., -1:].astype(np.int64)
    divided = np.clip((255 * color) // np.maximum(alpha, 1), 0, 255)
    color = np.where((alpha == 0) | (alpha == 255), color, divided)
    return np.concatenate([color.astype(np.uint8), image[..., -1:]], axis=-1)


_STRIP_VALUES = 1 << 18  # about this many float64 values (2 MiB) per strip: it stays in the CPU cache


def _resize_planes(image, height, width, pillow_version):
    """uint8 [H, W(, C)] -> uint8 [height, width(, C)]: the two passes, in Pillow's order.

    Levels are held as float64 [rows, C, columns], so that the vertical pass resamples
    axis 0 of a [rows, C*columns] matrix and the horizontal pass axis 1 of a
    [rows*C, columns] matrix: neither needs a transposed copy. Output rows are made a strip
    at a time, each from just the source rows its vertical taps read, so both passes and
    their rounding work on data that stays in the CPU cache. Strips change nothing: an
    output row is computed from the same source rows with the same weights whichever strip
    it is in (a source row shared by two strips simply has its horizontal pass done twice).
    """
    hwc = image[:, :, None] if image.ndim == 2 else image
    in_h, in_w, channels = hwc.shape
    horizontal_first = not vertical_first(in_h, in_w, height, width, pillow_version)
    out = np.empty((height, width, channels), np.uint8)
    for r0, r1, blocks in _strips(in_h, height, _STRIP_VALUES // (channels * max(in_w, width))):
        lo, hi = blocks[0][2], max(b[3] for b in blocks)  # the source rows this strip reads
        levels = np.empty((hi - lo, channels, in_w))  # [rows, C, in_w]
        for c in range(channels):  # channel by channel: long inner loops in both copies
            levels[:, c, :] = hwc[lo:hi, :, c]
        if horizontal_first and width != in_w:
            levels = _horizontal(levels, width)
        if height != in_h:
            levels = _vertical(levels, blocks, r0, lo)  # [r1 - r0, C, columns]
        if not horizontal_first and width != in_w:
            levels = _horizontal(levels, width)
        for c in range(channels):
            out[r0:r1, :, c] = levels[:, c, :]  # whole levels 0..255: the cast to uint8 is exact
    return out[:, :, 0] if image.ndim == 2 else out


def _strips(in_size, out_size, rows):
    """Strips of about ``rows`` output rows: ``(r0, r1, blocks)``, blocks as in :func:`_bands`.

    Without a vertical pass (same height) output row i is source row i: one block per strip,
    ``lo, hi = r0, r1``, and no band.
    """
    rows = max(rows, 1)
    if in_size == out_size:
        for r0 in range(0, out_size, rows):
            r1 = min(r0 + rows, out_size)
            yield r0, r1, ((r0, r1, r0, r1, None),)
        return
    strip = []
    for block in _bands(in_size, out_size):
        strip.append(block)
        if block[1] - strip[0][0] >= rows or block[1] == out_size:
            yield strip[0][0], block[1], tuple(strip)
            strip = []


def resize_bicubic(image, height, width, *, pillow_version=None):
    """``np.asarray(PIL.Image.fromarray(image).resize((width, height), Image.BICUBIC))``, in NumPy.

    image: uint8 [H, W] (mode L), [H, W, 3] (RGB), [H, W, 4] (RGBA) or [H, W, 2] (LA);
    returns uint8 [height, width(, C)]. Images with alpha are resized premultiplied, as
    Pillow does. ``pillow_version`` picks the pass-order rule; default: the installed Pillow.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"resize_bicubic: image must be uint8, got dtype {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(
            f"resize_bicubic: image must be [H, W] or [H, W, C] with C in 1..4, got shape {image.shape}"
        )
    for name, value in (("height", height), ("width", width)):
        if int(value) != value or value < 1:
            raise ValueError(f"resize_bicubic: {name} must be a positive integer, got {value!r}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"resize_bicubic: image must not be empty, got shape {image.shape}")
    height, width = int(height), int(width)
    if (height, width) == image.shape[:2]:
        return image.copy()  # Pillow returns a copy, without the alpha round trip
    if image.ndim == 3 and image.shape[2] in (2, 4):
        premultiplied = _resize_planes(premultiply_alpha(image), height, width, pillow_version)
        return unpremultiply_alpha(premultiplied)
    return _resize_planes(image, height, width, pillow_version)
