"""Multimodal rotary position embedding (mRoPE) of the Qwen2.5-VL text model, as a torchtune module.

Each token has three position ids (time, height, width; see ``qwen2_5_vl_rope_index``). With
``d = dim`` (the head dim) and ``inv_freq = 1 / base ** (arange(0, d, 2) / d)`` (``d/2`` float32
frequencies), each axis gives angles ``position * inv_freq``; ``mrope_section`` (e.g. ``[16, 24, 24]``,
summing to ``d/2``) splits the frequencies into consecutive chunks and chunk ``i`` takes its angles
from axis ``i % 3``. ``cos``/``sin`` of ``cat(angles, angles)`` then rotate each head rotate-half
style: ``x * cos + rotate_half(x) * sin``. Text tokens have the same position on all three axes,
so for text this is the plain 1-D rotary of Qwen2.

The tables are float32 whatever the module's dtype (``module.to(torch.bfloat16)`` rebuilds them in
float32), then cast to ``x``'s dtype, and the rotation runs in ``x``'s dtype - what HF does.
"""

from __future__ import annotations

import torch
from torch import nn

from ._positional_embeddings import rotate_half

__all__ = ["Qwen2_5_VLRotaryPositionalEmbeddings"]


class Qwen2_5_VLRotaryPositionalEmbeddings(nn.Module):
    """mRoPE for ``x`` of shape ``[b, s, n_heads, head_dim]`` (torchtune's layout and call).

    Args:
        dim (int): head dim (even).
        mrope_section (list[int]): frequencies per axis (time, height, width); sums to ``dim // 2``.
        base (float): rotary base (``rope_theta``; 1e6 in the released checkpoints).
        max_seq_len (int): positions ``0 .. max_seq_len - 1`` come from a cached table; others
            (long videos, negative ids) are computed on the fly with the same float32 math.
    """

    def __init__(self, dim: int, mrope_section, base: float = 1e6, max_seq_len: int = 32768) -> None:
        super().__init__()
        section = [int(n) for n in mrope_section]
        if dim <= 0 or dim % 2:
            raise ValueError(f"dim must be a positive even number, got {dim}")
        if len(section) != 3 or min(section) < 0 or sum(section) != dim // 2:
            raise ValueError(f"mrope_section must be 3 non-negative sizes summing to dim // 2 = {dim // 2}, "
                             f"got {list(mrope_section)}")
        if max_seq_len < 1:
            raise ValueError(f"max_seq_len must be positive, got {max_seq_len}")
        self.dim, self.mrope_section, self.base, self.max_seq_len = dim, section, base, max_seq_len
        self.rope_init()

    def reset_parameters(self) -> None:
        self.rope_init()

    def rope_init(self, device=None) -> None:
        # HF's expression: float32 arange, Python-float base
        inv_freq = 1.0 / (self.base ** (torch.arange(0, self.dim, 2, dtype=torch.float32, device=device) / self.dim))
        self.register_buffer("theta", inv_freq, persistent=False)
        self.build_rope_cache(self.max_seq_len)

    def build_rope_cache(self, max_seq_len: int) -> None:
        angles = torch.arange(max_seq_len, dtype=torch.float32, device=self.theta.device)[:, None] * self.theta
        self.register_buffer("cache", torch.stack([angles.cos(), angles.sin()]), persistent=False)  # [2, L, d/2]

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        if self.theta.dtype != torch.float32 or self.cache.dtype != torch.float32:
            self.rope_init(device=self.theta.device)  # a cast rounded the tables: rebuild them in float32
        return self

    def _cos_sin(self, pos: torch.Tensor) -> torch.Tensor:
        """[2, 3, b, s, d/2] float32 cos and sin of every axis' angles."""
        if pos.numel() and int(pos.min()) >= 0 and int(pos.max()) < self.max_seq_len:
            return self.cache[:, pos]
        angles = pos[..., None].float() * self.theta.to(pos.device)
        return torch.stack([angles.cos(), angles.sin()])

    def forward(self, x: torch.Tensor, *, input_pos: torch.Tensor | None = None) -> torch.Tensor:
        """Rotate ``x`` ``[b, s, n_heads, head_dim]``; ``input_pos`` is ``[b, s]`` (the same position
        on the three axes), ``[3, b, s]``, or None for ``arange(s)``. Returns ``x``'s shape and dtype."""
        if x.ndim != 4 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be [b, s, n_heads, {self.dim}], got {list(x.shape)}")
        b, s = x.shape[:2]
        if input_pos is None:
            pos = torch.arange(s, device=x.device).expand(3, b, s)
        elif input_pos.ndim in (2, 3) and input_pos.shape[-1] == s and input_pos.shape[-2] in (1, b) and (
                input_pos.ndim == 2 or input_pos.shape[0] == 3):
            pos = input_pos.expand(3, b, s)  # [b, s]: the same position on the three axes
        else:
            raise ValueError(f"input_pos must be [b, s] or [3, b, s] with b = {b}, s = {s}, "
                             f"got {list(input_pos.shape)}")
        if pos.is_floating_point():
            raise ValueError(f"input_pos must hold integer positions, got dtype {pos.dtype}")
        table = self._cos_sin(pos.to(self.theta.device))  # [2, 3, b, s, d/2]
        # chunk i of the frequencies comes from axis i % 3 (time, height, width)
        chunks = table.split(self.mrope_section, dim=-1)
        table = torch.cat([chunk[:, i % 3] for i, chunk in enumerate(chunks)], dim=-1)
        table = torch.cat([table, table], dim=-1).to(device=x.device, dtype=x.dtype)  # [2, b, s, d]
        cos, sin = table[0, :, :, None], table[1, :, :, None]
        return x * cos + rotate_half(x) * sin
