"""One tower stage recomputed on its own, in float64, from given inputs: the spec's formula, or a
variant of it (inputs, weights, intermediate operands or the output rounded to a lower precision;
another RMSNorm eps; another activation).

This is what a LOCAL verdict is made of: a stage recomputed from the input the implementation itself
fed it (a dump's own previous stage), so each stage's own difference is measured even after an
earlier stage drifted; and what tells precision from formula (``parity.hypotheses``): a variant
whose recomputation the implementation's stage matches explains the difference.

Stage inputs (unprefixed tower names; ``pixel_values`` is the processor's, image or video):

    patch_embed              <- pixel_values
    blocks.{i}.attn_residual <- patch_embed (i = 0) or blocks.{i-1}.output, rotary_cos, rotary_sin
    blocks.{i}.output        <- blocks.{i}.attn_residual (the block's MLP half)
    merger.ln_q              <- blocks.{depth-1}.output
    output                   <- merger.ln_q
    rotary_*, window_index, cu_seqlens, cu_window_seqlens <- the grid only

Every tensor is in the goldens' row order (original merge-block order); the window permutation is
applied and undone here, as in ``reference.vision_forward``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reference.activations import ACTIVATIONS
from reference.vision import (apply_rotary, full_cu_seqlens, linear, patch_rows, rms_norm, rotary_cos_sin,
                              segment_attention, unpermute, window_index)

VISION_EPS = 1e-6  # Qwen2_5_VLVisionBlock's and the merger's RMSNorm
MERGER_ACT = "gelu"  # the patch merger's nn.GELU(): the exact erf form


def round_to(values, dtype):
    """``values`` rounded to ``dtype`` (float32, float16, bfloat16: round to nearest even) and back
    to float64; None or float64: unchanged."""
    values = np.asarray(values, dtype=np.float64)
    if dtype in ("float32", "float16"):
        return values.astype(dtype).astype(np.float64)
    if dtype == "bfloat16":
        bits = values.astype(np.float32).view(np.uint32)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return rounded.astype(np.uint32).view(np.float32).astype(np.float64)
    return values


@dataclass(frozen=True)
class Variant:
    """How a stage is recomputed; the default is the spec (HF's formula, float64 throughout).

    ``inputs``, ``weights``, ``operands``, ``output``: a dtype each is rounded to (None: not rounded).
    Operands are the attention's q, k, v (after the rotary: what flash attention with a float16 K/V
    holds) and the MLP's activation output (an activation read from a low-precision table)."""

    inputs: str | None = None
    weights: str | None = None
    operands: str | None = None
    output: str | None = None
    eps: float | None = None  # RMSNorm eps (None: the spec's)
    act: str | None = None  # the stage's activation (None: the spec's)
    kv_only: bool = False  # attention operands: only k and v rounded (a float16 K/V cache, q kept)
    window_order: bool = True  # False: window segments applied to rows left in merge-block order (not permuted)

    @property
    def is_spec(self):
        return self == SPEC


SPEC = Variant()


def stage_inputs(stage, depth):
    """The unprefixed stages ``stage`` is computed from (rotary tables included), () when it depends
    on the grid only, None for a stage this module does not recompute."""
    if stage == "patch_embed":
        return ("pixel_values",)
    if stage.startswith("rotary_") or stage in ("window_index", "cu_seqlens", "cu_window_seqlens"):
        return ()
    if stage.startswith("blocks."):
        _, i, half = stage.split(".")
        i = int(i)
        if half == "attn_residual":
            return ("patch_embed" if i == 0 else f"blocks.{i - 1}.output", "rotary_cos", "rotary_sin")
        return (f"blocks.{i}.attn_residual",)
    if stage == "merger.ln_q":
        return (f"blocks.{depth - 1}.output",)
    if stage == "output":
        return ("merger.ln_q",)
    return None


def round_tree(tree, dtype):
    """A nested weight dict as float64, rounded to ``dtype`` first (None: not rounded)."""
    if isinstance(tree, dict):
        return {k: round_tree(v, dtype) for k, v in tree.items()}
    return round_to(tree, dtype)


def _grid_stage(stage, grid, config):
    if stage.startswith("rotary_"):
        cos, sin = rotary_cos_sin(grid, config.head_dim, spatial_merge_size=config.spatial_merge_size,
                                  theta=config.rope_theta, dtype=np.float64)
        return cos if stage == "rotary_cos" else sin
    if stage == "cu_seqlens":
        return full_cu_seqlens(grid)
    index, cu_window = window_index(grid, window_size=config.window_size, patch_size=config.patch_size,
                                    spatial_merge_size=config.spatial_merge_size)
    return index if stage == "window_index" else cu_window


def _attention_half(x, cos, sin, cu, norm1, attn, num_heads, v):  # [S, hidden] (window order) -> [S, hidden]
    S, hidden = x.shape
    h = rms_norm(x, **norm1, eps=VISION_EPS if v.eps is None else v.eps)
    qkv = linear(h, **attn["qkv"]).reshape(S, 3, num_heads, hidden // num_heads)  # [S, 3, heads, d]
    q, k = apply_rotary(qkv[:, 0], cos, sin), apply_rotary(qkv[:, 1], cos, sin)
    k, value = round_to(k, v.operands), round_to(qkv[:, 2], v.operands)
    q = q if v.kv_only else round_to(q, v.operands)
    o = segment_attention(q, k, value, cu)  # [S, heads, d]
    return x + linear(o.reshape(S, hidden), **attn["proj"])


def _mlp_half(x, norm2, mlp, act, v):  # [S, hidden] -> [S, hidden], row by row
    h = rms_norm(x, **norm2, eps=VISION_EPS if v.eps is None else v.eps)
    hidden = ACTIVATIONS[v.act or act](linear(h, **mlp["gate_proj"])) * linear(h, **mlp["up_proj"])
    return x + linear(round_to(hidden, v.operands), **mlp["down_proj"])


def recompute(stage, inputs, weights, config, grid, variant=SPEC):
    """``stage`` (unprefixed) of a tower recomputed in float64 from ``inputs`` ({stage: array}, see
    :func:`stage_inputs`) with ``weights`` (``reference.vision.nest_weights``'s nested dict) as
    ``variant`` says. None when the stage is not recomputed here or an input is missing."""
    needed = stage_inputs(stage, config.depth)
    if needed is None or any(name not in inputs for name in needed):
        return None
    v = variant
    if not needed:
        return _grid_stage(stage, grid, config)
    x = round_to(inputs[needed[0]], v.inputs)
    if stage == "patch_embed":
        weight = round_to(weights["patch_embed"]["proj"]["weight"], v.weights)
        out = x @ weight.reshape(weight.shape[0], -1).T
    elif stage.startswith("blocks."):
        i = int(stage.split(".")[1])
        block = round_tree(weights["blocks"][i], v.weights)
        if stage.endswith(".attn_residual"):
            index, cu_window = window_index(grid, window_size=config.window_size, patch_size=config.patch_size,
                                            spatial_merge_size=config.spatial_merge_size)
            cu = full_cu_seqlens(grid) if i in config.fullatt_block_indexes else cu_window
            rows = patch_rows(index, config.merge_unit) if v.window_order else np.arange(len(x))
            cos, sin = (np.asarray(inputs[name], np.float64)[rows] for name in ("rotary_cos", "rotary_sin"))
            out = unpermute(_attention_half(x[rows], cos, sin, cu, block["norm1"], block["attn"], config.num_heads,
                                            v), rows)
        else:
            out = _mlp_half(x, block["norm2"], block["mlp"], config.hidden_act, v)
    else:
        merger = round_tree(weights["merger"], v.weights)
        if stage == "merger.ln_q":
            out = rms_norm(x, **merger["ln_q"], eps=VISION_EPS if v.eps is None else v.eps)
        else:  # consecutive rows of the original order are one merge block: no permutation needed
            h = linear(x.reshape(-1, config.merge_unit * x.shape[-1]), **merger["mlp"]["0"])
            out = linear(round_to(ACTIVATIONS[v.act or MERGER_ACT](h), v.operands), **merger["mlp"]["2"])
    return round_to(out, v.output)


def tower_local(stages, pixel_values, grid, weights, config):
    """{stage: value} of every stored tower stage recomputed from the golden's own stage inputs
    (teacher forcing with the spec's formula): what the drift report's local/inherited split uses."""
    inputs = dict(stages, pixel_values=pixel_values)
    out = {}
    for stage in stages:
        value = recompute(stage, inputs, weights, config, grid)
        if value is not None:
            out[stage] = value
    return out
