"""The text model's multimodal rotary (HF `Qwen2_5_VLRotaryEmbedding` + `apply_rotary_pos_emb`).

Ordinary rotary frequencies inv_freq = 1 / theta**(arange(0, d, 2) / d) (d/2 of them), but the angle
of frequency j uses one of the three position rows: the d/2 frequencies are cut into consecutive
chunks of sizes mrope_section (e.g. [16, 24, 24] for d = 128), chunk i takes row i % 3 (time,
height, width). The d/2 angles are written twice ([a, a], d long): the rotate-half layout.

Precision: HF computes the tables in float32 whatever the model dtype; here everything is in the
`dtype` passed (float64 by default). With float32 the steps are HF's (exponent, power, reciprocal,
product, cos/sin each rounded to float32).
"""

from __future__ import annotations

import numpy as np


def check_mrope_args(position_ids, head_dim, mrope_section):
    pos = np.asarray(position_ids)
    if pos.ndim == 2:  # [b, s] text-only positions: the same on all three rows (HF expands)
        pos = np.broadcast_to(pos, (3,) + pos.shape)
    if pos.ndim != 3 or pos.shape[0] not in (1, 3):
        raise ValueError(f"position_ids must be [3, batch, seq] or [batch, seq], got shape {pos.shape}")
    if int(head_dim) != head_dim or head_dim < 2 or head_dim % 2:
        raise ValueError(f"head_dim must be a positive even integer, got {head_dim!r}")
    section = [int(n) for n in mrope_section]
    if sum(section) != head_dim // 2 or min(section, default=0) < 0:
        raise ValueError(f"mrope_section {list(mrope_section)} must be non-negative and sum to "
                         f"head_dim // 2 = {head_dim // 2}")
    return np.broadcast_to(pos, (3,) + pos.shape[1:]), int(head_dim), section


def mrope_cos_sin(position_ids, head_dim, mrope_section, *, theta=1e6, dtype=np.float64):
    """(cos, sin), each [batch, seq, head_dim], for position_ids [3, batch, seq] (or [batch, seq])."""
    pos, d, section = check_mrope_args(position_ids, head_dim, mrope_section)
    dtype = np.dtype(dtype)
    exponent = np.arange(0, d, 2).astype(dtype) / dtype.type(d)  # [d/2]
    # the power in float64, rounded once to dtype: torch's float32 pow is within an ulp of this, and
    # NumPy's float32 pow differs more often (an ulp of a large inv_freq shows at long positions)
    inv_freq = dtype.type(1) / (float(theta) ** exponent.astype(np.float64)).astype(dtype)  # [d/2]
    angles = pos.astype(dtype)[..., None] * inv_freq  # [3, b, s, d/2]: every row at every frequency
    row_of = np.repeat(np.arange(len(section)) % 3, section)  # [d/2]: which row each frequency uses
    angles = np.take_along_axis(angles, row_of[None, None, None, :], axis=0)[0]  # [b, s, d/2]
    angles = np.concatenate([angles, angles], axis=-1)  # [b, s, d]
    return np.cos(angles), np.sin(angles)


def rotate_half(x):  # [..., d] -> [..., d]
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_mrope(x, cos, sin):  # x [b, s, heads, d], cos/sin [b, s, d] -> [b, s, heads, d]
    """Rotate queries or keys laid out [batch, seq, heads, head_dim] (torchtune's layout; HF's
    attention holds [batch, heads, seq, head_dim]: swap axes 1 and 2 before and after)."""
    x = np.asarray(x)
    if x.ndim != 4 or np.shape(cos) != (x.shape[0], x.shape[1], x.shape[3]) or np.shape(sin) != np.shape(cos):
        raise ValueError(f"apply_mrope: x must be [batch, seq, heads, head_dim] and cos/sin [batch, seq, head_dim]; "
                         f"got x {x.shape}, cos {np.shape(cos)}, sin {np.shape(sin)}")
    cos, sin = np.asarray(cos)[:, :, None, :], np.asarray(sin)[:, :, None, :]  # one table for every head
    return x * cos + rotate_half(x) * sin
