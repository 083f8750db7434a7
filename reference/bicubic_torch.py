"""torch's native uint8 antialiased BICUBIC resize, reproduced bit for bit.

HF's default image processor (``Qwen2VLImageProcessor``, torchvision backend) resizes the
*uint8* [C, H, W] tensor with ``torchvision.transforms.v2.functional.resize(image, [h, w],
InterpolationMode.BICUBIC, antialias=True)``. On CPU torchvision 0.29 hands uint8 BICUBIC to
torch's own uint8 kernel (``_do_native_uint8_resize_on_cpu``), which is Pillow-SIMD's
algorithm. Read from torch 2.15's ATen (``native/cpu/UpSampleKernel.cpp``,
``UpSampleKernelAVXAntialias.h``, ``UpSample.h``), per output axis:

* ``scale = in / out`` (double; no scale factor is passed, align_corners=False);
  ``support = 2 * scale`` when shrinking (``scale >= 1``), else 2; at most
  ``ksize = ceil(support) * 2 + 1`` taps per output;
* output ``i`` is centred at ``scale * (i + 0.5)``; its taps are the source samples
  ``xmin .. xmin + xsize - 1`` with ``xmin = max(int(center - support + 0.5), 0)`` and
  ``xsize = min(int(center + support + 0.5), in) - xmin`` (clamped to 0..ksize);
* tap ``j`` weighs ``cubic((xmin + j - center + 0.5) * invscale)`` (Keys, a = -0.5, written
  as torch writes it), ``invscale = 1 / scale`` when shrinking else 1; the weights are divided
  by their sum (summed left to right, in double);
* int16 fixed point with a precision chosen per axis from the largest weight of the axis:
  the first ``p`` in 0..21 with ``int(0.5 + w_max * 2^(p+1)) >= 2^15`` (22 when none is);
  each weight becomes ``int(w * 2^p +- 0.5)`` (round half away from zero);
* output = ``clamp((2^(p-1) + sum(pixel * weight)) >> p, 0, 255)`` in integers.

The width pass runs first, the height pass second, with a uint8 image in between; a pass
whose size does not change is skipped (an unchanged image is returned as is). Channels are
independent: no alpha premultiplication (unlike Pillow). Pillow differs in the weights' fixed
point (22-bit int32) and in its pass order, so the two backends differ by a few levels.

x86 CPUs with AVX2 (and AVX512) run the AVX2 kernel for C <= 4; without AVX2 torch runs a
generic loop. Both are exact integer sums of the same int16 weights and give the same bytes,
except that torch 2.15's generic loop, resampling the height of a 1-pixel-wide output, repeats
output row 0 down the column (a torch bug; HF never resizes a side below 28). This function
follows the AVX2 kernel there. tests/test_bicubic_torch.py checks both kernels.
"""

import math
from functools import lru_cache

import numpy as np

from .validate import check_resize

_A = -0.5  # Keys' cubic "a" that torch uses when antialiasing (Pillow's)
_MAX_PRECISION = 22  # torch's cap on the int16 weights' fraction bits


def cubic_filter(x):  # [...] -> [...]
    """Keys' cubic (a = -0.5) in torch's operation order (``cubic_convolution1/2``)."""
    x = np.abs(x)
    near = ((_A + 2) * x - (_A + 3)) * x * x + 1  # |x| < 1
    far = ((_A * x - 5 * _A) * x + 8 * _A) * x - 4 * _A  # 1 <= |x| < 2
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def weights_precision(w_max):
    """Fraction bits of the int16 weights: the first p whose doubled scale would overflow int16."""
    for p in range(_MAX_PRECISION):
        if int(0.5 + w_max * (1 << (p + 1))) >= 1 << 15:
            return p
    return _MAX_PRECISION


@lru_cache(maxsize=256)
def int16_coefficients(in_size, out_size):  # -> [out] int64, [out, ksize] int64, int
    """One axis's taps: ``(xmin [out], weights [out, ksize] (int16 values), precision p)``.

    Output ``i`` = clamp((2^(p-1) + sum_k src[xmin[i] + k] * weights[i, k]) >> p, 0, 255); taps
    past output ``i``'s window have weight 0 (their index is kept in range by the caller).
    """
    scale = in_size / out_size
    support = 2.0 * scale if scale >= 1.0 else 2.0
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    ksize = int(math.ceil(support)) * 2 + 1

    center = scale * (np.arange(out_size) + 0.5)  # [out] source position of each output
    xmin = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)  # C's (int) truncates
    xmax = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size)
    xsize = np.clip(xmax - xmin, 0, ksize)  # [out] taps actually read

    k = np.arange(ksize)
    live = k[None, :] < xsize[:, None]  # [out, ksize]
    w = cubic_filter(((k[None, :] + xmin[:, None]) - center[:, None] + 0.5) * invscale)
    w = np.where(live, w, 0.0)
    total = np.zeros(out_size)
    for j in range(ksize):  # torch sums the weights left to right; keep that order
        total = total + w[:, j]
    w = np.where(total[:, None] != 0.0, w / np.where(total == 0.0, 1.0, total)[:, None], w)

    # One precision for the whole axis, from its largest (normalised) weight; then int16.
    w_max = max(0.0, float(w[total != 0.0].max(initial=0.0)))
    p = weights_precision(w_max)
    v = w * (1 << p)
    fixed = np.trunc(np.where(v < 0, v - 0.5, v + 0.5)).astype(np.int64)
    fixed[~live] = 0
    return xmin, fixed, p


def resample_axis(src, out_size, axis):  # uint8 [..., in, ...] -> uint8 [..., out_size, ...] along axis
    """One pass, written as the kernel's loop: for each tap, add ``pixel * weight`` (int32, as
    torch accumulates)."""
    in_size = src.shape[axis]
    xmin, weights, p = int16_coefficients(in_size, out_size)
    along = [1] * src.ndim
    along[axis] = out_size  # a weight per output index, broadcast over the other axes
    out_shape = list(src.shape)
    out_shape[axis] = out_size
    acc = np.full(out_shape, 1 << (p - 1), dtype=np.int32)  # the rounding half
    for k in range(weights.shape[1]):
        idx = np.minimum(xmin + k, in_size - 1)  # dead taps have weight 0
        acc += np.take(src, idx, axis=axis) * weights[:, k].astype(np.int32).reshape(along)
    return np.clip(acc >> p, 0, 255).astype(np.uint8)


def resize_bicubic_torch(image, height, width):  # uint8 [H, W(, C)] -> uint8 [height, width(, C)]
    """torchvision's uint8 antialiased BICUBIC resize on CPU, in NumPy.

    image: uint8 [H, W, C] with C in 1..4 (the reference's HWC convention) or [H, W] (one
    channel). Equal, after ``permute(1, 2, 0)``, to ``torchvision.transforms.v2.functional.resize(
    torch.from_numpy(image).permute(2, 0, 1), [height, width], InterpolationMode.BICUBIC,
    antialias=True)``; an [H, W] image is resized as the [1, H, W] tensor. Returns a new array.
    """
    image, height, width = check_resize(image, height, width, where="resize_bicubic_torch")
    x = image
    if x.shape[1] != width:  # width first ...
        x = resample_axis(x, width, 1)
    if x.shape[0] != height:  # ... then height, through a uint8 image
        x = resample_axis(x, height, 0)
    return x.copy() if x is image else x
