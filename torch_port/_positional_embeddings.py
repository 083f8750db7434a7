"""2D rotary position embedding of the Qwen2.5-VL vision encoder.

Each patch token carries two position ids, the row ``h`` and the column ``w`` of its patch in
the frame's patch grid. With ``d = head_dim``:

* ``inv_freq = 1 / base ** (arange(0, d/2, 2) / (d/2))`` (``d/4`` frequencies, float32),
* ``angle = cat(h * inv_freq, w * inv_freq)`` (``d/2``), and ``cos``/``sin`` of
  ``cat(angle, angle)`` (``d``) - the second half of the head repeats the first, as
  :func:`rotate_half` expects,
* ``x * cos + rotate_half(x) * sin``, computed in float32 and cast back to ``x``'s dtype.

``inv_freq`` is computed on the fly on the CPU in float32 (exactly the ops HF runs once in its
``__init__``), never stored: there is no buffer for ``model.to(torch.bfloat16)`` to round and
nothing for a state dict to carry.

Position ids come in merge-block order (see :func:`vision_position_ids`): the rows of
``pixel_values`` are ordered so that each run of ``spatial_merge_size ** 2`` consecutive rows is
one merge block, and the position ids follow the rows.
"""

import torch
from torch import nn

__all__ = [
    "Qwen2_5_VisionRotaryEmbedding",
    "apply_rotary_emb",
    "rotate_half",
    "vision_position_ids",
]


def vision_position_ids(grid_thw: torch.Tensor, spatial_merge_size: int) -> torch.Tensor:
    """(h, w) patch coordinates of every row of ``pixel_values``, in merge-block order.

    Args:
        grid_thw (torch.Tensor): ``[n_images, 3]`` rows ``(t, h, w)`` in patches.
        spatial_merge_size (int): side of a merge block in patches.

    Returns:
        torch.Tensor: ``[sum(t*h*w), 2]`` int64 on the CPU, column 0 = row h, column 1 = column w.
    """
    m = spatial_merge_size
    out = []
    for t, h, w in grid_thw.tolist():
        rows = torch.arange(h).view(h // m, m, 1, 1).expand(h // m, m, w // m, m)  # [H/m, m, W/m, m]
        cols = torch.arange(w).view(1, 1, w // m, m).expand(h // m, m, w // m, m)
        # merge-block order: block row, block column, then the m x m patches of the block
        hw = torch.stack([rows, cols], dim=-1).permute(0, 2, 1, 3, 4).reshape(h * w, 2)  # [h*w, 2]
        out.append(hw.repeat(t, 1))  # every frame has the same spatial positions
    return torch.cat(out, dim=0)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``cat(-x2, x1)`` of the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_emb(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate every head of every token by its angles; float32 math, result in ``x.dtype``.

    Args:
        x (torch.Tensor): ``[s, n_heads, head_dim]``.
        cos (torch.Tensor): ``[s, head_dim]`` float32.
        sin (torch.Tensor): ``[s, head_dim]`` float32.

    Returns:
        torch.Tensor: ``[s, n_heads, head_dim]`` in ``x.dtype``.
    """
    xf = x.float()
    cos, sin = cos.unsqueeze(-2).float(), sin.unsqueeze(-2).float()  # [s, 1, head_dim]: same for all heads
    return ((xf * cos) + (rotate_half(xf) * sin)).to(x.dtype)


class Qwen2_5_VisionRotaryEmbedding(nn.Module):
    """Axial 2D rotary embedding: cos/sin per token from its (h, w) position ids.

    Args:
        head_dim (int): attention head size; must be a multiple of 4 (``d/4`` frequencies per axis).
        base (float): rotary base (``rope_theta``); 10000 in every released Qwen2.5-VL.

    Raises:
        ValueError: if ``head_dim`` is not a positive multiple of 4.
    """

    def __init__(self, head_dim: int, base: float = 10_000.0) -> None:
        super().__init__()
        if head_dim <= 0 or head_dim % 4 != 0:
            raise ValueError(f"head_dim must be a positive multiple of 4 for 2D rotary, got {head_dim}")
        self.head_dim = head_dim
        self.base = float(base)

    def inv_freq(self) -> torch.Tensor:
        """``[head_dim // 4]`` float32 inverse frequencies, computed on the CPU as HF does."""
        spatial_dim = self.head_dim // 2
        return 1.0 / (self.base ** (torch.arange(0, spatial_dim, 2, dtype=torch.float32) / spatial_dim))

    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            position_ids (torch.Tensor): ``[s, 2]`` (h, w) per token, any integer dtype and device.

        Returns:
            tuple[torch.Tensor, torch.Tensor]: ``cos``, ``sin``, each ``[s, head_dim]`` float32 on
            ``position_ids.device``.
        """
        inv_freq = self.inv_freq().to(position_ids.device)
        freqs = position_ids[..., None].float() * inv_freq  # [s, 2, d/4]
        angle = freqs.flatten(1)  # [s, d/2] = cat(h * inv_freq, w * inv_freq)
        angle = torch.cat((angle, angle), dim=-1)  # [s, d]
        return angle.cos(), angle.sin()

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base}"
