"""Qwen2.5-VL vision tower (`Qwen2_5_VisionTransformerPretrainedModel`) in NumPy.

Data flow (S = patch rows = sum of t*h*w over images, M = spatial_merge_size**2 = 4):

    pixel_values [S, C*tp*p*p] -patch_embed-> [S, hidden]
    -> reorder rows window by window (groups of M rows = one merged token move together)
    -> depth x vision_block (window attention, or full attention per frame in fullatt blocks)
    -> patch_merger: RMSNorm, view M rows as one [M*hidden] row, MLP -> [S/M, out_hidden]
    -> undo the window order.

Precision: HF computes RMSNorm's variance, the rotary tables and the rotation itself in
float32 whatever the model dtype, and eager attention takes its softmax in float32. The
reference instead computes *everything* in the `dtype` passed to `vision_forward` (float64 by
default, float32 supported); with float64 it is a higher-precision version of HF's float32.

Speed (benchmarks/run.py): the time is in the matrix products, which NumPy hands to BLAS. Around
them, a few spots use a less obvious form of the same operations, each next to (or named after)
the plain function it stands for, and kept bit-equal to it by tests/test_fast_paths.py: the
softmax of the attention and the SiLU of the MLP run in place in arrays that are theirs
(`_softmax_in_place`, `_silu_in_place`), biases are added in place, the rotary is applied to q
and k together a chunk of rows at a time (so its temporaries stay in the CPU cache), and
`segment_attention` attends back-to-back segments through views instead of gathered copies.
"""

from __future__ import annotations

import math

import numpy as np

from .vision_config import VisionConfig
from .weights import describe_problems, vision_weight_shapes, weight_problems

# ---------------------------------------------------------------- activations


def erf(x):  # [...] -> [...]
    """Error function, accurate to a few ulp (NumPy has none; math.erf is scalar only)."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    dt = x.dtype
    z = np.abs(x)
    out = np.empty_like(z)
    small = z < 2.0
    # |x| < 2: erf(z) = 2z/sqrt(pi) e^{-z^2} sum_n (2z^2)^n / (1*3*...*(2n+1)); all terms are
    # positive, so no cancellation. Stop once every term is below a quarter ulp of 1 (sum >= 1).
    zs = z[small]
    two_z2 = 2 * zs * zs
    term, total = np.ones_like(zs), np.ones_like(zs)
    n = 0
    while term.size and term.max() > np.finfo(dt).eps / 4:
        n += 1
        term *= two_z2
        term *= dt.type(1.0 / (2 * n + 1))
        total += term
    out[small] = (2 / math.sqrt(math.pi)) * zs * np.exp(-zs * zs) * total
    # |x| >= 2: erfc(z) = e^{-z^2}/sqrt(pi) / (z + (1/2)/(z + 1/(z + (3/2)/(z + ...)))),
    # a continued fraction evaluated from the tail; 40 levels reach float64 precision at z = 2.
    zl = z[~small]
    frac = zl.copy()
    for k in range(40 if dt == np.float64 else 16, 0, -1):
        frac = zl + (k / 2) / frac
    out[~small] = 1 - np.exp(-zl * zl) / math.sqrt(math.pi) / frac
    return np.copysign(out, x)


def silu(x):  # [...] -> [...]
    with np.errstate(over="ignore"):  # exp(-x) = inf for very negative x gives the right limit -0
        return x / (1 + np.exp(-x))


_ROWS = 256  # rows per chunk where elementwise work is chunked: a chunk's temporaries stay in cache


def _silu_in_place(x):  # [S, ...] -> the same array, holding silu(x)
    """:func:`silu` with the very same operations, in x's memory (the MLP's [S, intermediate]
    arrays are the biggest of a block), _ROWS rows at a time so the temporary stays in cache."""
    for r in range(0, len(x), _ROWS):
        rows = x[r:r + _ROWS]
        e = np.negative(rows)
        with np.errstate(over="ignore"):
            np.exp(e, out=e)
        e += 1
        rows /= e
    return x


def gelu(x):  # [...] -> [...]
    """Exact GELU, x * Phi(x): HF's nn.GELU() / ACT2FN["gelu"]."""
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def gelu_tanh(x):  # [...] -> [...]
    """The tanh approximation: ACT2FN["gelu_new"] and ["gelu_pytorch_tanh"]."""
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def quick_gelu(x):  # [...] -> [...]
    return silu(1.702 * x) / 1.702


ACTIVATIONS = {"silu": silu, "swish": silu, "gelu": gelu, "gelu_new": gelu_tanh,
               "gelu_pytorch_tanh": gelu_tanh, "quick_gelu": quick_gelu}

# ---------------------------------------------------------------- small layers


def linear(x, weight, bias=None):  # [n, in] -> [n, out]
    y = x @ weight.T  # weights are stored [out, in], as in torch
    if bias is not None:
        y += bias  # y + bias, in y's memory (y is new): no second [n, out] array
    return y


def rms_norm(x, weight, eps=1e-6):  # [S, hidden] -> [S, hidden]
    # HF (Qwen2_5_VLRMSNorm) casts to float32 for the mean of squares and casts back before
    # the weight; here it is all in x's dtype.
    variance = np.mean(x * x, axis=-1, keepdims=True)  # [S, 1]
    return weight * (x / np.sqrt(variance + eps))


def softmax(x):  # [..., n] -> [..., n]
    e = np.exp(x - x.max(axis=-1, keepdims=True))  # shift by the row max: no overflow
    e /= e.sum(axis=-1, keepdims=True)
    return e


# ---------------------------------------------------------------- positions and windows


def _grid(grid_thw) -> np.ndarray:  # -> [n_images, 3] int64
    grid = np.asarray(grid_thw, dtype=np.int64).reshape(-1, 3)
    if (grid <= 0).any():
        raise ValueError(f"grid_thw entries must be positive, got {grid.tolist()}")
    return grid


def vision_position_ids(grid_thw, spatial_merge_size=2):  # [n, 3] -> [S, 2] (row h, column w)
    """(h, w) of every patch row, in the processor's merge-block order, repeated per frame."""
    m = spatial_merge_size
    pos = []
    for t, h, w in _grid(grid_thw).tolist():
        hh, ww = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")  # [h, w] each
        hw = np.stack([hh, ww], axis=-1)  # [h, w, 2]
        # rows are laid out block by block: (h/m, m, w/m, m) -> (h/m, w/m, m, m)
        hw = hw.reshape(h // m, m, w // m, m, 2).transpose(0, 2, 1, 3, 4).reshape(h * w, 2)
        pos.append(np.tile(hw, (t, 1)))  # every frame has the same positions
    return np.concatenate(pos)


def rotary_cos_sin(grid_thw, head_dim, *, spatial_merge_size=2, theta=10000.0, dtype=np.float64):
    """2D rotary tables: [S, head_dim] cos and sin, in original (merge-block) row order.

    Each head is split into an h half and a w half; both use the same d/4 frequencies
    inv_freq = 1 / theta**(arange(0, d/2, 2) / (d/2)). The angle vector is
    [h*inv_freq, w*inv_freq] (d/2 long), written twice (d), the layout rotate_half expects.
    HF computes these in float32; here in `dtype`.
    """
    half = head_dim // 2
    inv_freq = 1.0 / theta ** (np.arange(0, half, 2, dtype=dtype) / half)  # [d/4]
    pos = vision_position_ids(grid_thw, spatial_merge_size).astype(dtype)  # [S, 2]
    angle = (pos[:, :, None] * inv_freq).reshape(len(pos), half)  # [S, 2, d/4] -> [S, d/2]
    angle = np.concatenate([angle, angle], axis=-1)  # [S, d]
    return np.cos(angle), np.sin(angle)


def rotate_half(x):  # [..., d] -> [..., d]
    x1, x2 = np.split(x, 2, axis=-1)
    return np.concatenate([-x2, x1], axis=-1)


def apply_rotary(x, cos, sin):  # [S, heads, d], [S, d], [S, d] -> [S, heads, d]
    return x * cos[:, None, :] + rotate_half(x) * sin[:, None, :]


def window_index(grid_thw, *, window_size=112, patch_size=14, spatial_merge_size=2):
    """The window permutation of merged tokens, and the window boundaries in patch rows.

    Each frame's merged grid (h/m, w/m) is cut into square windows of
    window_size // m // patch_size merged tokens per side (4 released: 112 px = 8 patches =
    4 merged tokens); windows at the bottom/right edge are smaller. Windows are visited
    row-major, tokens row-major inside a window.

    Returns window_index [S/M] int64 (new position -> original merged token, across all
    images) and cu_window_seqlens [n_windows + 1] int64 in patch rows, starting at 0.
    HF pads the merged grid with -100 up to whole windows (a full extra window row or column
    when the size already is a multiple) and then removes the repeated boundaries the empty
    windows leave (unique_consecutive); numbering windows directly never makes empty ones.
    """
    m = spatial_merge_size
    side = window_size // m // patch_size  # window side in merged tokens
    index, cu, offset = [], [np.zeros(1, np.int64)], 0
    for t, h, w in _grid(grid_thw).tolist():
        mh, mw = h // m, w // m  # merged grid of one frame
        row, col = np.divmod(np.arange(mh * mw), mw)  # [mh*mw] each
        n_win_w = -(-mw // side)
        window = (row // side) * n_win_w + col // side  # [mh*mw] window number of each token
        order = np.argsort(window, kind="stable")  # window by window, row-major inside
        sizes = np.bincount(window) * m * m  # [n_windows] patch rows per window (all > 0)
        for frame in range(t):  # frames are windowed separately
            index.append(offset + frame * mh * mw + order)
            cu.append(cu[-1][-1] + np.cumsum(sizes))
        offset += t * mh * mw
    return np.concatenate(index).astype(np.int64), np.concatenate(cu).astype(np.int64)


def full_cu_seqlens(grid_thw):  # [n, 3] -> [n_frames + 1] int64
    """Segment boundaries for the full-attention blocks: one segment per frame of each image."""
    grid = _grid(grid_thw)
    frame_rows = np.repeat(grid[:, 1] * grid[:, 2], grid[:, 0])  # [n_frames]
    return np.concatenate([[0], np.cumsum(frame_rows)]).astype(np.int64)


def patch_rows(merged_index, merge_unit=4):  # [S/M] -> [S]
    """Expand an order of merged tokens to the order of their patch rows (M rows each)."""
    merged_index = np.asarray(merged_index, dtype=np.int64)
    return (merged_index[:, None] * merge_unit + np.arange(merge_unit)).reshape(-1)


def unpermute(x, rows):  # [S, ...] in `rows` order -> [S, ...] in original order
    out = np.empty_like(x)
    out[rows] = x
    return out


# ---------------------------------------------------------------- attention


def attention(q, k, v):  # [..., Lq, d], [..., L, d], [..., L, d] -> [..., Lq, d]
    q = q * (q.shape[-1] ** -0.5)  # HF: scaling = head_dim**-0.5 on the scores
    scores = q @ k.swapaxes(-1, -2)  # [..., Lq, L]
    return _softmax_in_place(scores) @ v  # softmax(scores) @ v, without copying the scores


def _softmax_in_place(x):  # [..., n] -> the same array, holding softmax(x)
    """:func:`softmax` with the very same operations, done in x's own memory (saves two copies
    of the biggest array of the attention; tests/test_fast_paths.py keeps the two equal)."""
    x -= x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=-1, keepdims=True)
    return x


def _score_chunks(heads, length, max_scores):
    """(segments, heads, query rows) per batch of :func:`segment_attention`: a batch holds at
    most max_scores scores (at least one query row of one head)."""
    per_head = length * length
    if heads * per_head <= max_scores:
        return max_scores // (heads * per_head), heads, length
    if per_head <= max_scores:
        return 1, max_scores // per_head, length
    return 1, 1, max(1, max_scores // length)


def segment_attention(q, k, v, cu_seqlens, *, max_scores=1 << 24):
    """Attention restricted to segments [cu[i], cu[i+1]) of the rows; no S x S mask.

    q, k, v [S, heads, d] -> [S, heads, d]. Equal-length segments (most windows) are batched
    [n, heads, L, d] and attended with batched matmuls. `max_scores` caps the score array:
    segments are batched up to it, and a segment too big for it (a whole frame in a
    full-attention block) is taken a few heads and query rows at a time. Each head's and each
    query row's softmax is independent, so chunking changes nothing.
    """
    cu = np.asarray(cu_seqlens, dtype=np.int64)
    heads = q.shape[1]
    lengths, starts = np.diff(cu), cu[:-1]
    out = np.empty_like(q)
    for length in np.unique(lengths):
        if length == 0:
            continue
        seg_starts = starts[lengths == length]
        n_chunk, h_chunk, q_chunk = _score_chunks(heads, length, max_scores)
        for i in range(0, len(seg_starts), n_chunk):
            rows = seg_starts[i:i + n_chunk, None] + np.arange(length)  # [n, L] row numbers
            if (np.diff(rows.reshape(-1)) == 1).all():  # segments back to back: views, no copies
                segs = slice(rows[0, 0], rows[-1, -1] + 1)
                qs, ks, vs, outs = (a[segs].reshape(rows.shape + a.shape[1:]) for a in (q, k, v, out))
            else:
                (qs, ks, vs), outs = (a[rows] for a in (q, k, v)), None  # [n, L, heads, d]
            qs, ks, vs = (a.transpose(0, 2, 1, 3) for a in (qs, ks, vs))  # [n, heads, L, d]
            for h in range(0, heads, h_chunk):
                hs = slice(h, h + h_chunk)
                for j in range(0, length, q_chunk):
                    o = attention(qs[:, hs, j:j + q_chunk], ks[:, hs], vs[:, hs])  # [n, h, Lq, d]
                    if outs is None:
                        out[rows[:, j:j + q_chunk], hs] = o.transpose(0, 2, 1, 3)  # [n, Lq, h, d]
                    else:
                        outs[:, j:j + q_chunk, hs] = o.transpose(0, 2, 1, 3)
    return out


def vision_attention(x, cos, sin, cu_seqlens, qkv, proj, num_heads):  # [S, hidden] -> [S, hidden]
    S, hidden = x.shape
    qkv_out = linear(x, **qkv).reshape(S, 3, num_heads, hidden // num_heads)  # [S, 3*hidden] -> [S, 3, heads, d]
    # rotary on q and k only: q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), done
    # in place in qkv_out (viewed as [S, 2*heads, d]) a chunk of rows at a time, in cache
    qk = qkv_out[:, :2].reshape(S, 2 * num_heads, -1)  # a view
    for r in range(0, S, _ROWS):
        qk[r:r + _ROWS] = apply_rotary(qk[r:r + _ROWS], cos[r:r + _ROWS], sin[r:r + _ROWS])
    q, k, v = qkv_out[:, 0], qkv_out[:, 1], qkv_out[:, 2]  # [S, heads, d] each
    o = segment_attention(q, k, v, cu_seqlens)  # [S, heads, d]
    return linear(o.reshape(S, hidden), **proj)  # [S, hidden] -> [S, hidden]


# ---------------------------------------------------------------- blocks


def vision_mlp(x, gate_proj, up_proj, down_proj, act="silu"):  # [S, hidden] -> [S, hidden]
    # act(gate(x)) * up(x); for silu (all released towers) computed in the gate's own memory
    gate = linear(x, **gate_proj)  # [S, inter]
    a = _silu_in_place(gate) if ACTIVATIONS[act] is silu else ACTIVATIONS[act](gate)
    a *= linear(x, **up_proj)  # [S, inter]
    return linear(a, **down_proj)  # [S, inter] -> [S, hidden]


def vision_block(x, cos, sin, cu_seqlens, norm1, norm2, attn, mlp, num_heads, act="silu",
                 trace=None):  # [S, hidden] -> [S, hidden]
    x = x + vision_attention(rms_norm(x, **norm1), cos, sin, cu_seqlens, **attn, num_heads=num_heads)
    if trace is not None:
        trace["attn_residual"] = x
    return x + vision_mlp(rms_norm(x, **norm2), **mlp, act=act)


def patch_embed(pixel_values, weight):  # [S, C*tp*p*p] -> [S, hidden]
    # HF: Conv3d with kernel = stride = (tp, p, p) on rows viewed as [S, C, tp, p, p]: each
    # output is one dot product of a whole row with a kernel, i.e. a plain matmul.
    return pixel_values @ weight.reshape(weight.shape[0], -1).T


def patch_merger(x, ln_q, mlp, merge_unit=4, trace=None):  # [S, hidden] -> [S/M, out_hidden]
    x = rms_norm(x, **ln_q)  # [S, hidden]
    if trace is not None:
        trace["ln_q"] = x
    x = x.reshape(-1, merge_unit * x.shape[-1])  # M consecutive rows = one 2x2 block: [S/M, M*hidden]
    x = gelu(linear(x, **mlp["0"]))  # nn.GELU(): the exact erf form
    return linear(x, **mlp["2"])  # [S/M, M*hidden] -> [S/M, out_hidden]


# ---------------------------------------------------------------- the tower


def nest_weights(weights, config: VisionConfig):
    """Flat HF names -> nested dicts ("blocks.3.attn.qkv.weight" -> w["blocks"][3]["attn"]["qkv"]["weight"]).
    Raises ValueError naming every missing or wrongly shaped tensor. Arrays are not copied."""
    missing, _, misshaped = weight_problems(weights, config)
    if missing or misshaped:
        raise ValueError("vision weights do not fit the config:\n" + describe_problems(missing, [], misshaped))
    tree = {}
    for name in vision_weight_shapes(config):
        node = tree
        *path, leaf = name.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = weights[name]
    tree["blocks"] = [tree["blocks"][str(i)] for i in range(config.depth)]
    return tree


def cast(tree, dtype):
    """The same nested dict with every array as `dtype` (no copy when it already is)."""
    if isinstance(tree, dict):
        return {k: cast(v, dtype) for k, v in tree.items()}
    return np.asarray(tree, dtype=dtype)


def _check_inputs(pixel_values, grid, config: VisionConfig):
    m = config.spatial_merge_size
    bad = [row for row in grid.tolist() if row[1] % m or row[2] % m]
    if bad:
        raise ValueError(f"grid_thw rows {bad}: h and w must be multiples of spatial_merge_size={m}")
    rows = int((grid[:, 0] * grid[:, 1] * grid[:, 2]).sum())
    if pixel_values.ndim != 2 or pixel_values.shape != (rows, config.patch_dim):
        raise ValueError(f"pixel_values has shape {pixel_values.shape}; grid_thw {grid.tolist()} "
                         f"needs ({rows}, {config.patch_dim})")


def vision_forward(pixel_values, grid_thw, weights, config: VisionConfig, *, dtype=np.float64, trace=None):
    """pixel_values [S, C*tp*p*p], grid_thw [n, 3] -> merged embeddings [S/M, out_hidden].

    Rows come out in the original order (image by image, merge block by merge block), like
    HF's pooler_output. With `trace` (a dict), the intermediate stages are stored in it, in
    original patch order as well.
    """
    dtype = np.dtype(dtype)
    grid = _grid(grid_thw)
    pixel_values = np.asarray(pixel_values)
    _check_inputs(pixel_values, grid, config)
    w = nest_weights(weights, config)  # cast to dtype part by part below: a float64 copy of the
    # whole tower at once would double its memory and cost more in page faults than the math
    m, unit = config.spatial_merge_size, config.merge_unit

    x = patch_embed(np.asarray(pixel_values, dtype), **cast(w["patch_embed"]["proj"], dtype))  # [S, hidden]
    cos, sin = rotary_cos_sin(grid, config.head_dim, spatial_merge_size=m, theta=config.rope_theta,
                              dtype=dtype)  # [S, head_dim] each
    win_index, cu_window = window_index(grid, window_size=config.window_size, patch_size=config.patch_size,
                                        spatial_merge_size=m)  # [S/M], [n_windows + 1]
    cu_full = full_cu_seqlens(grid)  # [n_frames + 1]
    if trace is not None:
        trace.update({"patch_embed": x, "rotary_cos": cos, "rotary_sin": sin, "window_index": win_index,
                      "cu_seqlens": cu_full, "cu_window_seqlens": cu_window})

    # Window order: every window's rows become contiguous, so window attention and full
    # attention are both "attention within segments of consecutive rows".
    rows = patch_rows(win_index, unit)  # [S]
    x, cos, sin = x[rows], cos[rows], sin[rows]

    for i, block in enumerate(w["blocks"]):
        cu = cu_full if i in config.fullatt_block_indexes else cu_window
        block_trace = {} if trace is not None else None
        x = vision_block(x, cos, sin, cu, **cast(block, dtype), num_heads=config.num_heads,
                         act=config.hidden_act, trace=block_trace)  # [S, hidden] -> [S, hidden]
        if trace is not None:
            trace[f"blocks.{i}.attn_residual"] = unpermute(block_trace["attn_residual"], rows)
            trace[f"blocks.{i}.output"] = unpermute(x, rows)

    merger_trace = {} if trace is not None else None
    merged = patch_merger(x, **cast(w["merger"], dtype), merge_unit=unit,
                          trace=merger_trace)  # [S, hidden] -> [S/M, out_hidden]
    out = unpermute(merged, win_index)  # back to the original order of merged tokens
    if trace is not None:
        trace["merger.ln_q"] = unpermute(merger_trace["ln_q"], rows)
        trace["output"] = out
    return out
