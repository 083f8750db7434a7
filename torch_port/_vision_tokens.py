"""Vision placeholders of a Qwen2.5-VL prompt expanded to one token per merged patch, as HF's processor does.

The chat template writes one ``<|image_pad|>`` (or ``<|video_pad|>``) per image (video); the
processor replaces the k-th one with ``grid_thw[k].prod() // merge_size**2`` copies (the number of
vision embeddings the encoder returns for it) and marks every token's modality in
``mm_token_type_ids`` (0 text, 1 image, 2 video).
"""

from __future__ import annotations

import torch

__all__ = ["expand_vision_tokens"]


def _counts(grid_thw, name: str, merge: int) -> list[int]:
    if grid_thw is None:
        return []
    grid = torch.as_tensor(grid_thw)
    if grid.ndim != 2 or grid.shape[1] != 3 or grid.is_floating_point():
        raise ValueError(f"{name} must be an integer tensor of shape [n, 3] (t, h, w), got {tuple(grid.shape)} "
                         f"{grid.dtype}")
    counts = []
    for k, (t, h, w) in enumerate(grid.tolist()):
        if t < 1 or h < 1 or w < 1 or h % merge or w % merge:
            raise ValueError(f"{name}[{k}] = {[t, h, w]}: t, h, w must be positive and h, w multiples of "
                             f"merge_size = {merge}")
        counts.append(t * h * w // merge**2)
    return counts


def expand_vision_tokens(
    input_ids: torch.Tensor,
    image_grid_thw: torch.Tensor | None = None,
    video_grid_thw: torch.Tensor | None = None,
    *,
    image_token_id: int = 151655,
    video_token_id: int = 151656,
    merge_size: int = 2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, mm_token_type_ids)`` with every placeholder expanded, on ``input_ids``' device.

    Args:
        input_ids (torch.Tensor): ``[seq]`` or ``[batch, seq]``; grids are consumed in order over
            the batch, row by row. A batch must expand to rows of one length (pad afterwards otherwise).
        image_grid_thw (torch.Tensor | None): ``[n_images, 3]``, one row per image placeholder.
        video_grid_thw (torch.Tensor | None): ``[n_videos, 3]``, one row per video placeholder.
        image_token_id (int): id of ``<|image_pad|>``.
        video_token_id (int): id of ``<|video_pad|>``.
        merge_size (int): the vision encoder's spatial merge size.

    Returns:
        tuple: the expanded ids (same dtype) and int64 token types, both ``[seq']`` or ``[batch, seq']``.

    Raises:
        ValueError: a placeholder count that differs from the number of grids (both counts named),
            bad grids, or batch rows that expand to different lengths.
    """
    if not isinstance(input_ids, torch.Tensor) or input_ids.ndim not in (1, 2):
        shape = list(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise ValueError(f"input_ids must be a [seq] or [batch, seq] tensor, got {shape}")
    if image_token_id == video_token_id:
        raise ValueError(f"image_token_id and video_token_id must differ, both are {image_token_id}")
    rows = input_ids.view(1, -1) if input_ids.ndim == 1 else input_ids
    repeats = torch.ones(rows.shape, dtype=torch.int64, device=rows.device)
    for token, name, grid in ((image_token_id, "image", image_grid_thw), (video_token_id, "video", video_grid_thw)):
        counts = _counts(grid, f"{name}_grid_thw", merge_size)
        is_placeholder = rows == token
        n_placeholders = int(is_placeholder.sum())
        if n_placeholders != len(counts):
            raise ValueError(f"{n_placeholders} {name} placeholder tokens (id {token}) in input_ids but "
                             f"{len(counts)} {name} grids in {name}_grid_thw")
        if counts:
            repeats[is_placeholder] = torch.tensor(counts, dtype=torch.int64, device=rows.device)  # row-major order
    lengths = repeats.sum(dim=1)
    if lengths.numel() and bool((lengths != lengths[0]).any()):
        raise ValueError(f"the batch rows expand to different lengths {lengths.tolist()}; expand them one "
                         f"[seq] row at a time and pad afterwards")
    width = int(lengths[0]) if lengths.numel() else 0
    ids = torch.repeat_interleave(rows.reshape(-1), repeats.reshape(-1)).view(rows.shape[0], width)
    types = torch.zeros(ids.shape, dtype=torch.int64, device=ids.device)
    types[ids == image_token_id] = 1
    types[ids == video_token_id] = 2
    if input_ids.ndim == 1:
        return ids[0], types[0]
    return ids, types
