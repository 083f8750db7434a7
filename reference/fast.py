"""Faster forms of some reference functions: same names, same arguments, the same bits.

Each function here stands for the plain function of the same name in `reference.vision`,
`reference.bicubic` or `reference.preprocess`, and tests/test_fast_paths.py keeps the two
bit-equal. Read the plain ones to learn the model; benchmarks/run.py times both. The tricks:

* tower: the softmax and the SiLU run in place in arrays that are theirs, the rotary is applied
  to q and k together a chunk of rows at a time (its temporaries stay in the CPU cache), and
  equal-length back-to-back segments are attended together through views (every head of every
  segment is still its own matrix product of the same size as in the plain form, and the query
  rows are stepped through exactly as there);
* resize: each pass as banded float64 matrix products (exact: every product and partial sum is
  an integer below 2^53), output rows a strip at a time so both passes stay in cache;
* preprocess: rescale and normalize depend only on a value's channel and uint8 level, so the
  patches are gathered as uint8 and each value looked up in a [C, 256] table made by the plain
  rescale and normalize themselves (`level_table`); the inputs are brought to uint8 [C, H, W] by
  the plain form's own `image_inputs`, so both take the same images with the same errors.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .activations import ACTIVATIONS
from .bicubic import _ONE, premultiply_alpha, resample_coefficients, unpremultiply_alpha, vertical_first
from .bicubic_torch import int16_coefficients
from .image_inputs import prepare_images
from .preprocess import (BACKENDS, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, RESCALE_FACTOR, check_mean_std, level_table_of,
                         normalize, rescale, rescale_normalize_torch, rescale_torch, torch_normalize_table)
from .preprocess import preprocess as plain_preprocess
from .smart_resize import MAX_PIXELS, MIN_PIXELS, smart_resize
from .validate import check_resize
from . import vision
from .vision import MAX_SCORES, apply_rotary, linear, query_rows, rms_norm

# ================================================================ the tower (reference.vision)

_ROWS = 256  # rows per chunk where elementwise work is chunked: a chunk's temporaries stay in cache


def softmax(x):  # [..., n] -> the same array, holding vision.softmax(x)
    """The plain softmax's very operations, in x's own memory (x must be the caller's to spend)."""
    x -= x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=-1, keepdims=True)
    return x


def silu(x):  # [S, ...] -> the same array, holding activations.silu(x)
    """The plain SiLU's very operations, in x's memory, _ROWS rows at a time (in cache)."""
    for r in range(0, len(x), _ROWS):
        rows = x[r:r + _ROWS]
        e = np.negative(rows)
        with np.errstate(over="ignore"):
            np.exp(e, out=e)
        e += 1
        rows /= e
    return x


def attention(q, k, v):  # [..., Lq, d], [..., L, d], [..., L, d] -> [..., Lq, d]
    q = q * (q.shape[-1] ** -0.5)
    return softmax(q @ k.swapaxes(-1, -2)) @ v  # the scores are new: softmax may spend them


def segment_attention(q, k, v, cu_seqlens, *, max_scores=MAX_SCORES):  # [S, heads, d] x 3 -> [S, heads, d]
    """vision.segment_attention with runs of equal-length back-to-back segments taken together,
    as views [n, heads, L, d] (as many as fit in max_scores); other segments one by one."""
    cu = np.asarray(cu_seqlens, dtype=np.int64)
    heads = q.shape[1]
    out = np.empty_like(q)
    i = 0
    while i < len(cu) - 1:
        length = int(cu[i + 1] - cu[i])
        n = 1  # segments i .. i+n-1 all have this length (hence back to back)
        cap = max(1, max_scores // max(1, heads * length * length))
        while n < cap and i + n < len(cu) - 1 and cu[i + n + 1] - cu[i + n] == length:
            n += 1
        if length:
            rows = slice(int(cu[i]), int(cu[i + n]))
            qs, ks, vs, outs = (a[rows].reshape(n, length, heads, -1) for a in (q, k, v, out))  # views
            qs, ks, vs = (a.transpose(0, 2, 1, 3) for a in (qs, ks, vs))  # [n, heads, L, d]
            step = query_rows(heads, length, max_scores)
            for r in range(0, length, step):
                outs[:, r:r + step] = attention(qs[:, :, r:r + step], ks, vs).transpose(0, 2, 1, 3)
        i += n
    return out


def vision_attention(x, cos, sin, cu_seqlens, qkv, proj, num_heads):  # [S, hidden] -> [S, hidden]
    S, hidden = x.shape
    qkv_out = linear(x, **qkv).reshape(S, 3, num_heads, hidden // num_heads)  # [S, 3, heads, d]
    qk = qkv_out[:, :2].reshape(S, 2 * num_heads, -1)  # a view: the rotary on q and k in place
    for r in range(0, S, _ROWS):
        qk[r:r + _ROWS] = apply_rotary(qk[r:r + _ROWS], cos[r:r + _ROWS], sin[r:r + _ROWS])
    o = segment_attention(qkv_out[:, 0], qkv_out[:, 1], qkv_out[:, 2], cu_seqlens)  # [S, heads, d]
    return linear(o.reshape(S, hidden), **proj)


def vision_mlp(x, gate_proj, up_proj, down_proj, act="silu"):  # [S, hidden] -> [S, hidden]
    gate = linear(x, **gate_proj)  # [S, inter]
    h = silu(gate) if ACTIVATIONS[act] is ACTIVATIONS["silu"] else ACTIVATIONS[act](gate)
    h *= linear(x, **up_proj)
    return linear(h, **down_proj)


def vision_block(x, cos, sin, cu_seqlens, norm1, norm2, attn, mlp, num_heads, act="silu",
                 trace=None):  # [S, hidden] -> [S, hidden]
    x = x + vision_attention(rms_norm(x, **norm1), cos, sin, cu_seqlens, **attn, num_heads=num_heads)
    if trace is not None:
        trace["attn_residual"] = x
    return x + vision_mlp(rms_norm(x, **norm2), **mlp, act=act)


def vision_forward(pixel_values, grid_thw, weights, config, *, dtype=np.float64, trace=None):
    """vision.vision_forward with the fast blocks: the same output and trace, bit for bit."""
    return vision.vision_forward(pixel_values, grid_thw, weights, config, dtype=dtype, trace=trace,
                                 block=vision_block)


# ================================================================ the resize (reference.bicubic)

_BLOCK = 8  # outputs per band: measured fastest from small upscales to 4x downscales
_TORCH_BLOCK = 16  # the same for torch's weights (fewer taps than Pillow's when upscaling): measured
_STRIP_VALUES = 1 << 18  # about this many float64 values (2 MiB) per strip: it stays in the CPU cache
_SINGLE_THREAD_MNK = (1 << 18) - 1  # OpenBLAS runs a product single-threaded below m*n*k = 4 * 65536


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
    blocks = []
    for start in range(0, out_size, _BLOCK):
        stop = min(start + _BLOCK, out_size)
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
        # columns a chunk at a time, each product under OpenBLAS's threading threshold (m*n*k < 2^18):
        # threads on such small products cost far more than they save, worst on a loaded machine
        cols = max(_SINGLE_THREAD_MNK // band.size, 1)
        for c0 in range(0, c * w, cols):
            np.matmul(band.T, src[b_lo - lo:b_hi - lo, c0:c0 + cols], out=out[start - r0:stop - r0, c0:c0 + cols])
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


def resample_axis(src, out_size, axis):
    """bicubic.resample_axis (one pass) as banded float64 matrix products."""
    rows = np.moveaxis(src, axis, 0)
    levels = np.ascontiguousarray(rows.reshape(rows.shape[0], 1, -1), dtype=np.float64)  # [in, 1, rest]
    out = _vertical(levels, _bands(rows.shape[0], out_size), 0, 0).astype(np.uint8)  # [out, 1, rest]
    return np.moveaxis(out.reshape((out_size,) + rows.shape[1:]), 0, axis)


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


def _resize_planes(image, height, width, pillow_version):
    """uint8 [H, W(, C)] -> uint8 [height, width(, C)]: the two passes, in Pillow's order.

    Levels are held as float64 [rows, C, columns], so that the vertical pass resamples
    axis 0 of a [rows, C*columns] matrix and the horizontal pass axis 1 of a
    [rows*C, columns] matrix: neither needs a transposed copy. Output rows are made a strip
    at a time, each from just the source rows its vertical taps read. Strips change nothing:
    an output row is computed from the same source rows with the same weights whichever strip
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


def resize_bicubic(image, height, width, *, pillow_version=None):
    """bicubic.resize_bicubic: uint8 [H, W(, C)] -> uint8 [height, width(, C)], Pillow's bytes."""
    image, height, width = check_resize(image, height, width)
    if (height, width) == image.shape[:2]:
        return image.copy()
    if image.ndim == 3 and image.shape[2] in (2, 4):
        return unpremultiply_alpha(_resize_planes(premultiply_alpha(image), height, width, pillow_version))
    return _resize_planes(image, height, width, pillow_version)


# ================================================================ torch's resize (reference.bicubic_torch)


@lru_cache(maxsize=64)
def _torch_bands(in_size, out_size):
    """:func:`_bands` for torch's int16 weights: the same blocks, each band times 2^-p (p: the
    axis's precision), so ``(2^(p-1) + acc) >> p`` is ``floor(0.5 + acc / 2^p)``, all exact."""
    xmin, weights, precision = int16_coefficients(in_size, out_size)
    blocks = []
    for start in range(0, out_size, _TORCH_BLOCK):
        stop = min(start + _TORCH_BLOCK, out_size)
        lo, hi, band = _band(xmin, weights, start, stop, in_size)
        band *= 2.0 ** -precision
        band.flags.writeable = False  # cached: shared by every call
        blocks.append((start, stop, lo, hi, band))
    return tuple(blocks)


def resize_bicubic_torch(image, height, width):
    """bicubic_torch.resize_bicubic_torch: uint8 [H, W(, C)] -> [height, width(, C)], torch's bytes.

    Width pass then height pass, each as banded float64 matrix products on levels held as
    [rows, C, columns] (as :func:`_resize_planes`), a strip of output rows at a time.
    """
    image, height, width = check_resize(image, height, width, where="resize_bicubic_torch")
    if (height, width) == image.shape[:2]:
        return image.copy()
    hwc = image[:, :, None] if image.ndim == 2 else image
    in_h, in_w, channels = hwc.shape
    out = np.empty((height, width, channels), np.uint8)
    rows = max(_STRIP_VALUES // (channels * max(in_w, width)), 1)
    strips = ([(r0, min(r0 + rows, height), ((r0, min(r0 + rows, height), r0, min(r0 + rows, height), None),))
               for r0 in range(0, height, rows)] if height == in_h else [])
    if height != in_h:
        strip = []
        for block in _torch_bands(in_h, height):
            strip.append(block)
            if block[1] - strip[0][0] >= rows or block[1] == height:
                strips.append((strip[0][0], block[1], tuple(strip)))
                strip = []
    for r0, r1, blocks in strips:
        lo, hi = blocks[0][2], max(b[3] for b in blocks)  # the source rows this strip reads
        levels = np.empty((hi - lo, channels, in_w))  # [rows, C, in_w]
        for c in range(channels):
            levels[:, c, :] = hwc[lo:hi, :, c]
        if width != in_w:  # width first ...
            src = levels.reshape(-1, in_w)
            wide = np.empty((src.shape[0], width))
            for start, stop, b_lo, b_hi, band in _torch_bands(in_w, width):
                step = max(_SINGLE_THREAD_MNK // band.size, 1)  # rows per product: single-threaded, as in _vertical
                for q in range(0, src.shape[0], step):
                    np.matmul(src[q:q + step, b_lo:b_hi], band, out=wide[q:q + step, start:stop])
            levels = _round_to_levels(wide).reshape(hi - lo, channels, width)
        if height != in_h:  # ... then height
            levels = _vertical(levels, blocks, r0, lo)
        for c in range(channels):
            out[r0:r1, :, c] = levels[:, c, :]  # whole levels 0..255: the cast to uint8 is exact
    return out[:, :, 0] if image.ndim == 2 else out


# ================================================================ preprocessing (reference.preprocess)


def patchify_levels(image, table, patch_size=14, merge_size=2, temporal_patch_size=2):
    """uint8 [H, W, C] -> ([gh*gw, C*tp*p*p] of the table's dtype, gh, gw), equal to
    ``patchify(normalize(rescale(image.transpose(2, 0, 1)), mean, std), ...)`` with ``table =
    normalize_table(mean, std)`` (and to the plain form of any steps ``level_table`` was made by).

    The patches are gathered while still uint8 (4x less data to move than float32), then each
    value is looked up in ``table`` once and the frame copied for the time axis, one row of
    merge blocks at a time, so every temporary stays in the CPU cache.
    """
    height, width, channels = image.shape
    gh, gw = height // patch_size, width // patch_size
    m, p, tp = merge_size, patch_size, temporal_patch_size
    out = np.empty((gh // m, gw // m, m, m, channels, tp, p, p), table.dtype)
    levels = np.empty((gw // m, m, m, channels, p, p), np.uint8)  # one row of merge blocks
    for row in range(gh // m):
        pixels = image[row * m * p:(row + 1) * m * p].reshape(m, p, gw // m, m, p, channels)
        levels[...] = pixels.transpose(2, 0, 3, 5, 1, 4)  # [gw/m, m, m, C, p, p], as in patchify
        for c in range(channels):  # rescale + normalize: one lookup per value
            np.take(table[c], levels[:, :, :, c], out=out[row, :, :, :, c, 0], mode="clip")
        out[row, :, :, :, :, 1:] = out[row, :, :, :, :, :1]  # the frame repeated in time
    return out.reshape(gh * gw, channels * tp * p * p), gh, gw


def level_table(channels, *, backend, do_rescale, rescale_factor, do_normalize, image_mean, image_std):
    """[C, 256]: what the plain preprocess's steps after the resize give for every uint8 level, per
    channel, made by those very steps (each acts on a value alone) on an image holding every level
    once (``preprocess.level_table_of``). float32, or uint8 where the plain form keeps uint8 (torchvision,
    neither step)."""
    if do_normalize:
        check_mean_std(image_mean, image_std, channels)

    def steps(x):  # uint8 [C, H, W] -> the plain preprocess's values after the resize
        if backend == "pil":
            if do_rescale:
                x = rescale(x, rescale_factor)
            if do_normalize:
                x = normalize(x, image_mean, image_std)
            return x.astype(np.float32, copy=False)
        if do_rescale and do_normalize:
            return rescale_normalize_torch(x, image_mean, image_std, rescale_factor)
        if do_rescale:
            return rescale_torch(x, rescale_factor)
        if do_normalize:
            return normalize(x, image_mean, image_std)
        return x

    return level_table_of(steps, channels)


def preprocess(images, *, backend="pil", do_resize=True, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS,
               patch_size=14, merge_size=2, temporal_patch_size=2, do_rescale=True, rescale_factor=RESCALE_FACTOR,
               do_normalize=True, image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD, do_convert_rgb=True,
               input_data_format=None, trace=None):
    """preprocess.preprocess with the fast resize and the lookup-table patchify: the same arguments,
    the same inputs (``image_inputs``: PIL, arrays HWC / CHW, tensors, lists, nested lists, 4-D
    batches), the same checks and errors, the same bits. With a ``trace`` (which wants every stage)
    it is the plain function."""
    options = dict(backend=backend, do_resize=do_resize, min_pixels=min_pixels, max_pixels=max_pixels,
                   patch_size=patch_size, merge_size=merge_size, temporal_patch_size=temporal_patch_size,
                   do_rescale=do_rescale, rescale_factor=rescale_factor, do_normalize=do_normalize,
                   image_mean=image_mean, image_std=image_std, do_convert_rgb=do_convert_rgb,
                   input_data_format=input_data_format)
    if trace is not None or backend not in BACKENDS:  # the plain form traces, and names a bad backend
        return plain_preprocess(images, trace=trace, **options)
    if do_rescale and (isinstance(rescale_factor, bool) or not isinstance(rescale_factor, (int, float))):
        raise ValueError(f"preprocess: rescale_factor must be a number, got {rescale_factor!r}")
    resize = resize_bicubic_torch if backend == "torchvision" else resize_bicubic
    chws, _ = prepare_images(images, backend=backend, do_convert_rgb=do_convert_rgb,
                             input_data_format=input_data_format)  # uint8 [C, H, W] each
    factor = patch_size * merge_size
    tables = {}  # channel count -> level table
    rows, grids = [], []
    for index, chw in enumerate(chws):
        hwc = chw.transpose(1, 2, 0)  # a view: both steps below read it in place
        if do_resize:
            height, width = smart_resize(chw.shape[1], chw.shape[2], factor, min_pixels, max_pixels)
            if (height, width) != hwc.shape[:2]:
                hwc = resize(hwc, height, width)
        elif chw.shape[1] % factor or chw.shape[2] % factor:
            raise ValueError(f"preprocess: with do_resize=False image {index} must have sides that are multiples "
                             f"of patch_size * merge_size = {factor}, got {chw.shape[1]}x{chw.shape[2]}")
        channels = hwc.shape[2]
        if channels not in tables:
            tables[channels] = level_table(channels, backend=backend, do_rescale=do_rescale,
                                           rescale_factor=rescale_factor, do_normalize=do_normalize,
                                           image_mean=image_mean, image_std=image_std)
        patches, gh, gw = patchify_levels(hwc, tables[channels], patch_size, merge_size, temporal_patch_size)
        rows.append(patches)
        grids.append([1, gh, gw])
    return {"pixel_values": rows[0] if len(rows) == 1 else np.concatenate(rows, axis=0),
            "image_grid_thw": np.array(grids, dtype=np.int64)}


__all__ = ["softmax", "silu", "attention", "segment_attention", "vision_attention", "vision_mlp",
           "vision_block", "vision_forward", "resample_axis", "resize_bicubic", "resize_bicubic_torch", "patchify_levels",
           "torch_normalize_table", "level_table", "preprocess"]
