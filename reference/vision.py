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

This is the plain form, the one that runs by default. `reference.fast` holds a faster form of
some of these functions (same names, same bits: tests/test_fast_paths.py).
"""

from __future__ import annotations

import itertools

import numpy as np

from .activations import ACTIVATIONS, gelu
from .validate import check_grid, check_tower_inputs
from .vision_config import VisionConfig
from .weights import describe_problems, vision_weight_shapes, weight_problems

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
    e /= e.sum(axis=-1, keepdims=True)  # e / sum, in e's memory (e is new)
    return e


# ---------------------------------------------------------------- positions and windows


def vision_position_ids(grid_thw, spatial_merge_size=2):  # [n, 3] -> [S, 2] (row h, column w)
    """(h, w) of every patch row, in the processor's merge-block order, repeated per frame."""
    m = spatial_merge_size
    pos = []
    for t, h, w in check_grid(grid_thw).tolist():
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
    for t, h, w in check_grid(grid_thw).tolist():
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
    grid = check_grid(grid_thw)
    frame_rows = np.repeat(grid[:, 1] * grid[:, 2], grid[:, 0])  # [n_frames]
    return np.concatenate([[0], np.cumsum(frame_rows)]).astype(np.int64)


def patch_rows(merged_index, merge_unit=4):  # [S/M] -> [S]
    """The window order of patch rows: an order of merged tokens, each expanded to its M rows.
    `patch_rows(window_index(...)[0], M)` is the one place this order is computed."""
    merged_index = np.asarray(merged_index, dtype=np.int64)
    return (merged_index[:, None] * merge_unit + np.arange(merge_unit)).reshape(-1)


def unpermute(x, rows):  # [S, ...] in `rows` order -> [S, ...] in original order
    out = np.empty_like(x)
    out[rows] = x
    return out


# ---------------------------------------------------------------- attention

MAX_SCORES = 1 << 22  # attention scores held at once (16 MiB in float32, 32 MiB in float64)


def query_rows(heads, length, max_scores=MAX_SCORES):
    """Query rows per step in a segment: all of them, unless the [heads, L, L] scores would pass
    max_scores (a whole frame in a full-attention block: [16, 5184, 5184] at 1008x1008 would be
    3.4 GB in float64; in steps of 50 rows each head holds fewer scores than its [S, head_dim] q).
    The rows of a softmax are independent, so the steps change no value in principle; the step
    size is part of the recipe all the same, since BLAS may round a product of fewer rows
    differently. Small arrays also stay in memory the allocator reuses (no fresh pages)."""
    return max(1, min(length, max_scores // (heads * max(length, 1))))


def attention(q, k, v):  # [..., Lq, d], [..., L, d], [..., L, d] -> [..., Lq, d]
    q = q * (q.shape[-1] ** -0.5)  # HF: scaling = head_dim**-0.5 on the scores
    return softmax(q @ k.swapaxes(-1, -2)) @ v  # scores [..., Lq, L]


def segment_attention(q, k, v, cu_seqlens, *, max_scores=MAX_SCORES):  # [S, heads, d] x 3 -> [S, heads, d]
    """Attention within each segment [cu[i], cu[i+1]) of the rows, all heads at once; no S x S mask."""
    out = np.empty_like(q)
    for start, end in itertools.pairwise(np.asarray(cu_seqlens).tolist()):
        ks, vs = (a[start:end].transpose(1, 0, 2) for a in (k, v))  # [heads, L, d] each
        step = query_rows(q.shape[1], end - start, max_scores)
        for r in range(start, end, step):  # all query rows at once, unless the scores get too big
            rows = slice(r, min(r + step, end))
            out[rows] = attention(q[rows].transpose(1, 0, 2), ks, vs).transpose(1, 0, 2)  # [heads, Lq, d]
    return out


def vision_attention(x, cos, sin, cu_seqlens, qkv, proj, num_heads):  # [S, hidden] -> [S, hidden]
    S, hidden = x.shape
    qkv_out = linear(x, **qkv).reshape(S, 3, num_heads, hidden // num_heads)  # [S, 3, heads, d]
    q, k, v = qkv_out[:, 0], qkv_out[:, 1], qkv_out[:, 2]  # [S, heads, d] each
    q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)  # rotary on q and k only
    o = segment_attention(q, k, v, cu_seqlens)  # [S, heads, d]
    return linear(o.reshape(S, hidden), **proj)  # [S, hidden] -> [S, hidden]


# ---------------------------------------------------------------- blocks


def vision_mlp(x, gate_proj, up_proj, down_proj, act="silu"):  # [S, hidden] -> [S, hidden]
    h = ACTIVATIONS[act](linear(x, **gate_proj)) * linear(x, **up_proj)  # [S, inter]
    return linear(h, **down_proj)  # [S, inter] -> [S, hidden]


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


def vision_forward(pixel_values, grid_thw, weights, config: VisionConfig, *, dtype=np.float64, trace=None,
                   block=vision_block):
    """pixel_values [S, C*tp*p*p], grid_thw [n, 3] -> merged embeddings [S/M, out_hidden], in the
    original order (image by image, merge block by merge block), like HF's pooler_output.
    `trace`, a dict, receives every stage, in original patch order as well. `block` is the block
    function (reference.fast passes its bit-equal fast one)."""
    pixel_values, grid = check_tower_inputs(pixel_values, grid_thw, config)
    w, c, stages = nest_weights(weights, config), config, Stages(trace)  # cast to dtype part by part below
    x = patch_embed(np.asarray(pixel_values, dtype), **cast(w["patch_embed"]["proj"], dtype))  # [S, hidden]
    cos, sin = rotary_cos_sin(grid, c.head_dim, spatial_merge_size=c.spatial_merge_size, theta=c.rope_theta,
                              dtype=dtype)  # [S, head_dim] each
    win_index, cu_window = window_index(grid, window_size=c.window_size, patch_size=c.patch_size,
                                        spatial_merge_size=c.spatial_merge_size)  # [S/M], [n_windows + 1]
    cu_full = full_cu_seqlens(grid)  # [n_frames + 1]
    stages.update(patch_embed=x, rotary_cos=cos, rotary_sin=sin, window_index=win_index, cu_seqlens=cu_full,
                  cu_window_seqlens=cu_window)

    # Window order: every window's rows become contiguous, so window attention and full
    # attention are both "attention within segments of consecutive rows".
    rows = patch_rows(win_index, c.merge_unit)  # [S]
    x, cos, sin = x[rows], cos[rows], sin[rows]
    for i, block_weights in enumerate(w["blocks"]):
        cu = cu_full if i in c.fullatt_block_indexes else cu_window
        block_stages = stages.scope(f"blocks.{i}.", rows)
        x = block(x, cos, sin, cu, **cast(block_weights, dtype), num_heads=c.num_heads, act=c.hidden_act,
                  trace=block_stages)  # [S, hidden] -> [S, hidden]
        block_stages["output"] = x
    merged = patch_merger(x, **cast(w["merger"], dtype), merge_unit=c.merge_unit,
                          trace=stages.scope("merger.", rows))  # [S, hidden] -> [S/M, out_hidden]
    stages["output"] = out = unpermute(merged, win_index)  # back to the original order of merged tokens
    return out


# ---------------------------------------------------------------- plumbing: weights and the trace


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
    """The same nested dict with every array as `dtype` (no copy when it already is). The tower is
    cast part by part: a float64 copy of it all at once would double its memory."""
    if isinstance(tree, dict):
        return {k: cast(v, dtype) for k, v in tree.items()}
    return np.asarray(tree, dtype=dtype)


class Stages:
    """Where `vision_forward` records its stages: into `trace` (a dict; None records nothing),
    under `prefix`, with rows in window order (`rows`) put back in original order."""

    def __init__(self, trace, prefix="", rows=None):
        self.trace, self.prefix, self.rows = trace, prefix, rows

    def __setitem__(self, name, x):
        if self.trace is not None:
            self.trace[self.prefix + name] = x if self.rows is None else unpermute(x, self.rows)

    def update(self, **stages):
        for name, x in stages.items():
            self[name] = x

    def scope(self, prefix, rows=None):
        return Stages(self.trace, self.prefix + prefix, rows)
