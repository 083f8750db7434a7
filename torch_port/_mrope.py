"""Multimodal rotary position embedding (mRoPE) of the Qwen2.5-VL text model, as a torchtune module.

Each token has three position ids (time, height, width; see ``qwen2_5_vl_rope_index``). With
``d = dim`` (the head dim) and ``inv_freq = 1 / base ** (arange(0, d, 2) / d)`` (``d/2`` float32
frequencies), each axis gives angles ``position * inv_freq``; ``mrope_section`` (e.g. ``[16, 24, 24]``,
summing to ``d/2``) splits the frequencies into consecutive chunks and chunk ``i`` takes its angles
from axis ``i % 3``. ``cos``/``sin`` of ``cat(angles, angles)`` then rotate each head rotate-half
style: ``x * cos + rotate_half(x) * sin``. Text tokens have the same position on all three axes,
so for text this is the plain 1-D rotary of Qwen2.

The angles are computed on every call from the positions (HF's own expression: ``pos.float() *
inv_freq``, then ``cos`` / ``sin``), with no cached table: a table covers ``0 .. max_seq_len - 1``
only, and choosing between it and the on-the-fly form needs the positions' range on the host (a
device-to-host sync per layer on a GPU, a graph break under ``torch.compile``). ``inv_freq`` stays
float32 whatever the module's dtype (``module.to(torch.bfloat16)`` rebuilds it in float32); the
cos / sin are cast to ``x``'s dtype and the rotation runs in ``x``'s dtype - what HF does.
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
        max_seq_len (int): the longest sequence of the model (torchtune's argument); any position,
            also past it (long videos), rotates by the same float32 math.
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

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        if self.theta.dtype != torch.float32:
            self.rope_init(device=self.theta.device)  # a cast rounded the frequencies: rebuild them in float32
        return self

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
        angles = pos.to(self.theta.device)[..., None].float() * self.theta  # [3, b, s, d/2] float32
        # chunk i of the frequencies comes from axis i % 3 (time, height, width)
        angles = torch.cat([chunk[i % 3] for i, chunk in enumerate(angles.split(self.mrope_section, dim=-1))], dim=-1)
        cos, sin = angles.cos(), angles.sin()  # [b, s, d/2]
        # [b, s, 1, d]: the halves repeat (rotate_half pairs i with i + d/2); the same for every head
        cos = torch.cat([cos, cos], dim=-1)[:, :, None].to(device=x.device, dtype=x.dtype)
        sin = torch.cat([sin, sin], dim=-1)[:, :, None].to(device=x.device, dtype=x.dtype)
        return x * cos + rotate_half(x) * sin
