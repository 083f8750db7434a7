"""Modules of the Qwen2.5-VL vision encoder (``Qwen2_5_VisionTransformerPretrainedModel`` in HF).

Data flow of :class:`Qwen2_5_VisionEncoder` for ``N`` patch rows (``grid_thw`` rows ``(t, h, w)``)::

    pixel_values [N, C*tp*p*p] --patch_embed--> x [N, hidden]            (original order)
    x, rotary cos/sin --permute merge units window by window--> window order
    for each block i:  x = x + attn(sa_norm(x))  over segments            ("attn_residual")
                       x = x + mlp(mlp_norm(x))                            ("output")
        segments = one per frame of each image      if i in fullatt_block_indexes
                 = one per window (64 patches max)  otherwise
    merger: ln_q -> view(-1, 4*hidden) -> Linear -> GELU -> Linear -> [N/4, out_hidden_size]
    undo the window permutation on the merged rows                          (original order)

Segment attention
-----------------
Attention never builds a dense ``S x S`` mask. :class:`VisionLayout` groups the segments of a
block kind (windows, or frames) by length; each group is one ``F.scaled_dot_product_attention``
call on ``[n_segments, heads, length, head_dim]``. Most windows are full (64 patches), so a
typical image costs one batched call for the full windows plus a few small calls for the edge
windows (at most 3 extra lengths per image size). A group whose segments sit back to back is
a free view; other groups are gathered with one index (``[n, length]``) and scattered back with
``index_copy_``. Works on any device and in float32 / bfloat16 / float16.

Fused ``qkv_proj``
------------------
The attention keeps HF's fused ``qkv`` projection as one ``qkv_proj`` Linear(hidden, 3*hidden)
instead of torchtune's separate ``q_proj/k_proj/v_proj``: the checkpoint's tensor stays as is (the
weight conversion is a pure rename), the CPU time is the same and one GEMM is slightly faster on
CUDA (measurements: ``benchmarks/attention.md``).

Numerics follow HF: RMSNorm variance in float32 (eps 1e-6, weight applied after the cast back),
rotary in float32, patch rows cast to the weight dtype before the patch projection.

Activation checkpointing: with ``activation_checkpointing = True`` each block runs under
``torch.utils.checkpoint`` (non-reentrant, as torchtune's ``set_activation_checkpointing``
wraps decoder layers) while gradients are recorded: its inner activations are recomputed in the
backward instead of kept. The same operations run, so outputs and gradients are unchanged.
"""

from dataclasses import dataclass, fields
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ._positional_embeddings import Qwen2_5_VisionRotaryEmbedding, apply_rotary_emb, vision_position_ids

__all__ = [
    "Qwen2_5_VisionAttention",
    "Qwen2_5_VisionBlock",
    "Qwen2_5_VisionEncoder",
    "Qwen2_5_VisionMLP",
    "Qwen2_5_VisionPatchEmbed",
    "Qwen2_5_VisionPatchMerger",
    "SegmentGroup",
    "VisionLayout",
    "segment_attention",
]


class Qwen2_5_VisionMLP(nn.Module):
    """Two-layer MLP, gated when ``up_proj`` is given: ``w2(act(w1(x)) * w3(x))`` else ``w2(act(w1(x)))``.

    Same parameter names as torchtune's ``FeedForward``; its own name because its float32 CPU
    forward takes another (equal) route, see :meth:`_forward_transposed`.

    Args:
        gate_proj (nn.Module): first projection, stored as ``w1``.
        down_proj (nn.Module): output projection, stored as ``w2``.
        up_proj (nn.Module | None): optional gate partner, stored as ``w3``.
        activation (nn.Module): applied to ``w1(x)``.
    """

    def __init__(
        self,
        *,
        gate_proj: nn.Module,
        down_proj: nn.Module,
        up_proj: nn.Module | None = None,
        activation: nn.Module,
    ) -> None:
        super().__init__()
        self.w1 = gate_proj
        self.w2 = down_proj
        self.w3 = up_proj
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._transposed_hidden(x):
            return self._forward_transposed(x)
        h = self.activation(self.w1(x))
        if self.w3 is not None:
            h = h * self.w3(x)
        return self.w2(h)

    def _transposed_hidden(self, x: torch.Tensor) -> bool:
        linears = (self.w1, self.w2, self.w3)
        return (
            self.w3 is not None
            and x.ndim == 2
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and all(type(m) is nn.Linear and m.weight.dtype == torch.float32 for m in linears)
        )

    def _forward_transposed(self, x: torch.Tensor) -> torch.Tensor:
        """The gated MLP with its hidden computed transposed, ``[hidden, s]`` (2D float32 CPU input).

        Why: on the CPU (MKL float32 sgemm) ``x [s, 1280] @ w1.T [1280, 3420]`` runs at about 137
        GFLOP/s on a 2-core AVX-512 machine while the transposed product ``w1 [3420, 1280] @ x.T``
        runs at about 180 (s = 1024; 5184 alike), for the same sums (results equal, see
        tests/test_port_vs_hf.py). The down projection takes the transposed hidden as a
        transposed view at no cost. Only for float32: bfloat16 (oneDNN) gains nothing.
        """

        def linear_t(m: nn.Linear) -> torch.Tensor:  # m(x).T as a contiguous [out, s]
            xt = x.transpose(0, 1)
            return m.weight @ xt if m.bias is None else torch.addmm(m.bias[:, None], m.weight, xt)

        h = self.activation(linear_t(self.w1)) * linear_t(self.w3)  # [hidden, s]
        return self.w2(h.transpose(0, 1))


class Qwen2_5_VisionPatchEmbed(nn.Module):
    """Patch embedding: HF's Conv3d with kernel == stride is a matmul over the flattened patch.

    A row of ``pixel_values`` is one patch flattened in (channel, frame, row, column) order,
    ``in_channels * temporal_patch_size * patch_size**2`` values (1176 for the released models);
    ``proj`` is ``Linear(that, embed_dim, bias=False)`` whose weight is the Conv3d weight
    flattened the same way.

    Args:
        in_channels (int): image channels.
        temporal_patch_size (int): frames per patch.
        patch_size (int): patch side in pixels.
        embed_dim (int): output width.
    """

    def __init__(self, *, in_channels: int, temporal_patch_size: int, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.temporal_patch_size = temporal_patch_size
        self.patch_size = patch_size
        self.patch_dim = in_channels * temporal_patch_size * patch_size * patch_size
        self.proj = nn.Linear(self.patch_dim, embed_dim, bias=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[N, patch_dim]`` (any shape with ``N * patch_dim`` values) -> ``[N, embed_dim]``."""
        x = pixel_values.reshape(-1, self.patch_dim).to(self.proj.weight.dtype)
        return self.proj(x)


class Qwen2_5_VisionPatchMerger(nn.Module):
    """Merges each ``merge_unit`` consecutive rows (one spatial merge block) into one token.

    ``mlp(ln_q(x).view(-1, merge_unit * dim))``, ``mlp`` being Linear -> GELU(exact) -> Linear.

    Args:
        ln_q (nn.Module): RMSNorm over ``dim``.
        mlp (nn.Module): ``[*, merge_unit * dim] -> [*, out_dim]``.
        merge_unit (int): rows per merged token, ``spatial_merge_size ** 2``.
    """

    def __init__(self, *, ln_q: nn.Module, mlp: nn.Module, merge_unit: int) -> None:
        super().__init__()
        self.ln_q = ln_q
        self.mlp = mlp
        self.merge_unit = merge_unit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, dim]`` -> ``[N / merge_unit, out_dim]``."""
        x = self.ln_q(x)
        return self.mlp(x.reshape(-1, self.merge_unit * x.shape[-1]))  # one merge block per row


@dataclass(frozen=True)
class SegmentGroup:
    """Segments of one length that attend within themselves, run as one batched attention call.

    Attributes:
        length (int): rows per segment.
        count (int): number of segments.
        start (int | None): first row when the segments sit back to back from there (a view
            suffices), else None.
        index (torch.Tensor | None): ``[count, length]`` int64 rows of each segment, when ``start``
            is None.
    """

    length: int
    count: int
    start: int | None
    index: torch.Tensor | None

    def to(self, device: torch.device | str) -> "SegmentGroup":
        if self.index is None:
            return self
        return SegmentGroup(self.length, self.count, None, self.index.to(device))


def _segment_groups(cu: torch.Tensor) -> tuple[SegmentGroup, ...]:
    """Group the segments ``[cu[j], cu[j+1])`` by length (in order of first appearance)."""
    bounds = cu.tolist()
    starts_by_length: dict[int, list[int]] = {}
    for a, b in pairwise(bounds):
        if b > a:
            starts_by_length.setdefault(b - a, []).append(a)
    groups = []
    for length, starts in starts_by_length.items():
        back_to_back = all(s == starts[0] + j * length for j, s in enumerate(starts))
        if back_to_back:
            groups.append(SegmentGroup(length, len(starts), starts[0], None))
        else:
            index = torch.tensor(starts, dtype=torch.int64)[:, None] + torch.arange(length)  # [count, length]
            groups.append(SegmentGroup(length, len(starts), None, index))
    return tuple(groups)


@dataclass(frozen=True)
class VisionLayout:
    """Everything the encoder derives from ``grid_thw`` (no weights): orders, segments, positions.

    "Original order" is the row order of ``pixel_values``; "window order" is HF's: merge units
    (``spatial_merge_size**2`` rows, moved together) listed window by window, and each window's
    units in row-major order. The transformer blocks run in window order.

    Attributes:
        grid_thw (torch.Tensor): ``[n_images, 3]`` int64 (CPU).
        num_patches (int): ``N = sum(t*h*w)``.
        window_index (torch.Tensor): ``[N / merge_unit]`` int64, HF's ``window_index``: merge unit
            at each window-order position.
        unit_inverse (torch.Tensor): ``[N / merge_unit]`` int64, ``argsort(window_index)``.
        patch_order (torch.Tensor): ``[N]`` int64, original row at each window-order row.
        patch_inverse (torch.Tensor): ``[N]`` int64, window-order row of each original row.
        position_ids (torch.Tensor): ``[N, 2]`` int64 (h, w) per original row.
        cu_seqlens (torch.Tensor): ``[n_frames + 1]`` int32 frame boundaries (same in both orders).
        cu_window_seqlens (torch.Tensor): ``[n_windows + 1]`` int32 window boundaries, window order.
        full_segments (tuple[SegmentGroup, ...]): ``cu_seqlens`` grouped by length.
        window_segments (tuple[SegmentGroup, ...]): ``cu_window_seqlens`` grouped by length.
    """

    grid_thw: torch.Tensor
    num_patches: int
    window_index: torch.Tensor
    unit_inverse: torch.Tensor
    patch_order: torch.Tensor
    patch_inverse: torch.Tensor
    position_ids: torch.Tensor
    cu_seqlens: torch.Tensor
    cu_window_seqlens: torch.Tensor
    full_segments: tuple[SegmentGroup, ...]
    window_segments: tuple[SegmentGroup, ...]

    @classmethod
    def from_grid(cls, grid_thw: torch.Tensor, *, spatial_merge_size: int, window_units: int) -> "VisionLayout":
        """Build the layout on the CPU.

        Args:
            grid_thw (torch.Tensor): ``[n_images, 3]`` (t, h, w) in patches, any device.
            spatial_merge_size (int): merge block side in patches (h and w must be multiples).
            window_units (int): window side in merge units (``window_size // merge // patch``).

        Raises:
            ValueError: on a malformed grid.
        """
        grid = torch.as_tensor(grid_thw).detach().to("cpu", torch.int64)
        if grid.ndim != 2 or grid.shape[1] != 3 or grid.shape[0] == 0:
            raise ValueError(f"grid_thw must have shape [n_images, 3] with n_images >= 1, got {tuple(grid.shape)}")
        m, ws = spatial_merge_size, window_units
        unit = m * m
        window_index, window_sizes, offset = [], [], 0
        for t, h, w in grid.tolist():
            if t <= 0 or h <= 0 or w <= 0 or h % m or w % m:
                raise ValueError(
                    f"grid_thw row {(t, h, w)}: t, h, w must be positive and h, w multiples of spatial_merge_size {m}"
                )
            mh, mw = h // m, w // m  # merged grid of one frame
            nwh, nww = -(-mh // ws), -(-mw // ws)  # windows per column / row (edge windows smaller)
            frame = torch.arange(t).view(t, 1, 1)
            win_row = (torch.arange(mh) // ws).view(1, mh, 1)
            win_col = (torch.arange(mw) // ws).view(1, 1, mw)
            window_id = ((frame * nwh + win_row) * nww + win_col).reshape(-1)  # [t*mh*mw] per merge unit
            # a stable sort keeps the row-major order of the units inside each window
            window_index.append(torch.argsort(window_id, stable=True) + offset)
            window_sizes.append(torch.bincount(window_id, minlength=t * nwh * nww))
            offset += t * mh * mw
        window_index = torch.cat(window_index)  # [N / unit]
        sizes = torch.cat(window_sizes) * unit
        sizes = sizes[sizes > 0]  # windows are never empty with ceil division; kept for safety
        cu_window_seqlens = F.pad(sizes.cumsum(0), (1, 0)).to(torch.int32)
        frame_sizes = torch.repeat_interleave(grid[:, 1] * grid[:, 2], grid[:, 0])
        cu_seqlens = F.pad(frame_sizes.cumsum(0), (1, 0)).to(torch.int32)
        patch_order = (window_index[:, None] * unit + torch.arange(unit)).reshape(-1)  # [N]
        return cls(
            grid_thw=grid,
            num_patches=int(frame_sizes.sum()),
            window_index=window_index,
            unit_inverse=torch.argsort(window_index),
            patch_order=patch_order,
            patch_inverse=torch.argsort(patch_order),
            position_ids=vision_position_ids(grid, m),
            cu_seqlens=cu_seqlens,
            cu_window_seqlens=cu_window_seqlens,
            full_segments=_segment_groups(cu_seqlens),
            window_segments=_segment_groups(cu_window_seqlens),
        )

    def to(self, device: torch.device | str) -> "VisionLayout":
        """The same layout with every tensor but ``grid_thw`` on ``device``."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "grid_thw" or isinstance(value, int):
                moved[f.name] = value
            elif isinstance(value, tuple):
                moved[f.name] = tuple(g.to(device) for g in value)
            else:
                moved[f.name] = value.to(device)
        return VisionLayout(**moved)


def segment_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    segments: tuple[SegmentGroup, ...],
    *,
    scale: float,
) -> torch.Tensor:
    """Softmax attention restricted to segments, one SDPA call per group of equal-length segments.

    Args:
        q (torch.Tensor): ``[s, n_heads, head_dim]``; k, v likewise.
        segments (tuple[SegmentGroup, ...]): a partition of the ``s`` rows.
        scale (float): logit scale.

    Returns:
        torch.Tensor: ``[s, n_heads, head_dim]``.
    """
    s, n_heads, head_dim = q.shape
    out = None
    for g in segments:
        if g.index is None:
            rows = slice(g.start, g.start + g.count * g.length)
            qg, kg, vg = (t[rows].unflatten(0, (g.count, g.length)) for t in (q, k, v))  # [n, L, H, d] views
        else:
            qg, kg, vg = (t[g.index] for t in (q, k, v))  # [n, L, H, d] gathered
        o = F.scaled_dot_product_attention(
            qg.transpose(1, 2), kg.transpose(1, 2), vg.transpose(1, 2), scale=scale
        )  # [n, H, L, d]
        o = o.transpose(1, 2).reshape(g.count * g.length, n_heads, head_dim)  # [n*L, H, d]
        if g.index is None and g.count * g.length == s:
            return o  # one group covering every row: nothing to scatter
        if out is None:
            out = q.new_empty(s, n_heads, head_dim)
        if g.index is None:
            out[rows] = o
        else:
            out.index_copy_(0, g.index.reshape(-1), o)
    if out is None:
        raise ValueError("segment_attention needs at least one segment")
    return out


class Qwen2_5_VisionAttention(nn.Module):
    """Multi-head self-attention with 2D rotary on q and k, restricted to segments.

    Args:
        num_heads (int): attention heads.
        head_dim (int): size of a head (``embed_dim // num_heads``).
        qkv_proj (nn.Module): fused ``Linear(embed_dim, 3 * embed_dim)`` (q, k, v stacked in that order).
        output_proj (nn.Module): ``Linear(embed_dim, embed_dim)``.
    """

    def __init__(self, *, num_heads: int, head_dim: int, qkv_proj: nn.Module, output_proj: nn.Module) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        self.qkv_proj = qkv_proj
        self.output_proj = output_proj

    def forward(
        self,
        x: torch.Tensor,
        rope_cos: torch.Tensor,
        rope_sin: torch.Tensor,
        segments: tuple[SegmentGroup, ...],
    ) -> torch.Tensor:
        """
        Args:
            x (torch.Tensor): ``[s, embed_dim]``.
            rope_cos (torch.Tensor): ``[s, head_dim]`` float32; rope_sin likewise.
            segments (tuple[SegmentGroup, ...]): which rows attend to which.

        Returns:
            torch.Tensor: ``[s, embed_dim]``.
        """
        s = x.shape[0]
        q, k, v = self.qkv_proj(x).view(s, 3, self.num_heads, self.head_dim).unbind(1)  # 3 x [s, H, d]
        q = apply_rotary_emb(q, rope_cos, rope_sin)
        k = apply_rotary_emb(k, rope_cos, rope_sin)
        out = segment_attention(q, k, v, segments, scale=self.scale)  # [s, H, d]
        return self.output_proj(out.reshape(s, self.num_heads * self.head_dim))


class Qwen2_5_VisionBlock(nn.Module):
    """Pre-norm transformer block: ``h = x + attn(sa_norm(x))``; ``out = h + mlp(mlp_norm(h))``.

    Args:
        attn (Qwen2_5_VisionAttention): self-attention.
        mlp (nn.Module): feed-forward.
        sa_norm (nn.Module): norm before attention.
        mlp_norm (nn.Module): norm before the MLP.
    """

    def __init__(self, *, attn: Qwen2_5_VisionAttention, mlp: nn.Module, sa_norm: nn.Module, mlp_norm: nn.Module):
        super().__init__()
        self.sa_norm = sa_norm
        self.attn = attn
        self.mlp_norm = mlp_norm
        self.mlp = mlp

    def forward(
        self, x: torch.Tensor, rope_cos: torch.Tensor, rope_sin: torch.Tensor, segments: tuple[SegmentGroup, ...]
    ) -> torch.Tensor:
        """``[s, dim] -> [s, dim]``; rope_cos/sin ``[s, head_dim]``; ``segments``: which rows attend together."""
        h = x + self.attn(self.sa_norm(x), rope_cos, rope_sin, segments)
        return h + self.mlp(self.mlp_norm(h))


class Qwen2_5_VisionEncoder(nn.Module):
    """Qwen2.5-VL vision encoder: patch rows of one or more images/videos -> merged visual tokens.

    Args:
        patch_embed (Qwen2_5_VisionPatchEmbed): patch projection.
        rope (Qwen2_5_VisionRotaryEmbedding): 2D rotary of the attention heads.
        layers (list[Qwen2_5_VisionBlock]): transformer blocks.
        merger (Qwen2_5_VisionPatchMerger): 2x2 merge and projection to the LLM width.
        patch_size (int): patch side in pixels.
        spatial_merge_size (int): merge block side in patches.
        window_size (int): attention window side in pixels (112 = 4 merge units of 2 patches of 14).
        fullatt_block_indexes (list[int]): blocks attending over whole frames; the others attend
            within windows.

    Attributes:
        activation_checkpointing (bool): checkpoint every block while gradients are recorded
            (default False; the fused model turns it on with the decoder's checkpointing).
    """

    def __init__(
        self,
        *,
        patch_embed: Qwen2_5_VisionPatchEmbed,
        rope: Qwen2_5_VisionRotaryEmbedding,
        layers: list[Qwen2_5_VisionBlock],
        merger: Qwen2_5_VisionPatchMerger,
        patch_size: int,
        spatial_merge_size: int,
        window_size: int,
        fullatt_block_indexes: list[int],
    ) -> None:
        super().__init__()
        self.patch_embed = patch_embed
        self.rope = rope
        self.layers = nn.ModuleList(layers)
        self.merger = merger
        self.patch_size = patch_size
        self.spatial_merge_size = spatial_merge_size
        self.window_size = window_size
        self.window_units = window_size // spatial_merge_size // patch_size
        if self.window_units < 1:
            raise ValueError(
                f"window_size {window_size} is smaller than one merge block "
                f"({spatial_merge_size} x {patch_size} pixels)"
            )
        self.fullatt_block_indexes = tuple(int(i) for i in fullatt_block_indexes)
        self.activation_checkpointing = False

    # ----------------------------------------------------------------- helpers
    def layout(self, grid_thw: torch.Tensor, device: torch.device | str | None = None) -> VisionLayout:
        """The :class:`VisionLayout` of ``grid_thw`` (computed on the CPU), moved to ``device``."""
        layout = VisionLayout.from_grid(
            grid_thw, spatial_merge_size=self.spatial_merge_size, window_units=self.window_units
        )
        return layout if device is None else layout.to(device)

    def rotary(self, layout: VisionLayout) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin ``[N, head_dim]`` float32 in original order, on the layout's device."""
        return self.rope(layout.position_ids)

    def segments(self, i: int, layout: VisionLayout) -> tuple[SegmentGroup, ...]:
        """Attention segments of block ``i``: frames for full-attention blocks, else windows."""
        return layout.full_segments if i in self.fullatt_block_indexes else layout.window_segments

    def _check_rows(self, x: torch.Tensor, layout: VisionLayout, what: str) -> None:
        if x.shape[0] != layout.num_patches:
            raise ValueError(f"{what} has {x.shape[0]} rows but grid_thw describes {layout.num_patches} patches")

    # ------------------------------------------------------------- the model
    def forward(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        """
        Args:
            pixel_values (torch.Tensor): ``[N, C*tp*p*p]`` patch rows in merge-block order (as the
                image processor emits them), cast to the weights' dtype.
            grid_thw (torch.Tensor): ``[n_images, 3]`` (t, h, w) per image, in patches.

        Returns:
            torch.Tensor: ``[N / spatial_merge_size**2, out_hidden_size]`` in original order.
        """
        layout = self.layout(grid_thw, pixel_values.device)
        x = self.patch_embed(pixel_values)  # [N, hidden] original order
        self._check_rows(x, layout, "pixel_values")
        cos, sin = self.rotary(layout)  # [N, head_dim] float32

        # blocks run in window order: each window is a run of consecutive rows
        x, cos, sin = x[layout.patch_order], cos[layout.patch_order], sin[layout.patch_order]
        recompute = self.activation_checkpointing and torch.is_grad_enabled()
        for i, layer in enumerate(self.layers):
            if recompute:  # keep only the block's input; its activations are recomputed in backward
                x = checkpoint(layer, x, cos, sin, self.segments(i, layout), use_reentrant=False)
            else:
                x = layer(x, cos, sin, self.segments(i, layout))

        out = self.merger(x)  # [N/4, out] window order (merge blocks move whole)
        return out[layout.unit_inverse]  # original order
