"""3-D rotary position ids (time, height, width) of a Qwen2.5-VL token sequence, as transformers 5.x.

Every unpadded token gets three position ids. ``mm_token_type_ids`` (0 text, 1 image, 2 video)
splits a row into runs of equal type:

* a text run of ``n`` tokens continues the row: ``pos .. pos + n - 1`` on all three axes, ``pos += n``;
* an image or video run is one grid ``(t, h, w)`` (the next row of ``image_grid_thw`` or
  ``video_grid_thw``; one iterator per kind, shared by the whole batch, in row order) laid out as
  ``t x h/m x w/m`` tokens: time ``pos + floor(i_t * interval)``, height ``pos + i_h``, width
  ``pos + i_w``; ``interval`` is 1 for images and ``tokens_per_second * second_per_grid_ts[k]``
  for the k-th video; then ``pos += max(h, w) / m``.

In transformers 5.x the temporal extent of a video is NOT added to ``pos``: the text after a
``t = 3`` video of 4 x 4 merged tokens continues at ``pos + 4``. transformers 4.x (and ports
written from it, such as torchtune's unmerged Qwen2.5-VL port) continue at the maximum over the
three axes + 1, which includes the video's last time step.

Padded slots (``attention_mask == 0``) keep position 0 on every axis; the positions are computed
over the unpadded tokens only. ``deltas = max(position) + 1 - number of unpadded tokens``: the
offset that generation adds to the 1-D position of every new token.

Work is per row and per run (a handful of runs per image), never per token.
"""

from __future__ import annotations

import torch

__all__ = ["RopeIndexLayoutError", "qwen2_5_vl_rope_index"]

TEXT, IMAGE, VIDEO = 0, 1, 2
_KIND = {IMAGE: "image", VIDEO: "video"}


class RopeIndexLayoutError(ValueError, RuntimeError):
    """Shapes or runs of vision tokens that do not fit together. A ValueError that is also the
    RuntimeError HF's ``get_rope_index`` raises on such inputs (a shape mismatch deep inside)."""


def _grid_list(grid_thw, name: str, merge: int) -> list[tuple[int, int, int]]:
    if grid_thw is None:
        return []
    grid = torch.as_tensor(grid_thw)
    if grid.ndim != 2 or grid.shape[1] != 3:
        raise ValueError(f"{name} must have shape [n, 3] (t, h, w), got {tuple(grid.shape)}")
    if grid.is_floating_point() or grid.is_complex():
        raise ValueError(f"{name} must hold integers, got dtype {grid.dtype}")
    rows = [tuple(int(v) for v in row) for row in grid.tolist()]
    for k, (t, h, w) in enumerate(rows):
        if t < 1 or h < 1 or w < 1:
            raise ValueError(f"{name}[{k}] = {[t, h, w]}: t, h and w must be at least 1")
        if h % merge or w % merge:
            raise ValueError(
                f"{name}[{k}] = {[t, h, w]}: h and w must be multiples of spatial_merge_size = {merge}"
            )
    return rows


def _check_2d(name: str, x, shape) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2 or (shape is not None and tuple(x.shape) != tuple(shape)):
        want = "[batch, seq]" if shape is None else f"{list(shape)} (the shape of input_ids)"
        raise RopeIndexLayoutError(f"{name} must have shape {want}, got {list(x.shape)}")
    return x


def _vision_positions(pos: int, t: int, h: int, w: int, interval, device) -> torch.Tensor:
    """[3, t*h*w] positions of one merged grid starting at ``pos``.

    The time row is HF's own expression, ``(arange(t) * interval).long()``, so that a fractional
    interval rounds the same way in the same dtype (float32 for a Python float or a float32 tensor).
    """
    time = (torch.arange(t, device=device) * interval).long() + pos
    rows = torch.arange(h, device=device) + pos
    cols = torch.arange(w, device=device) + pos
    return torch.stack(
        [
            time.view(t, 1, 1).expand(t, h, w),
            rows.view(1, h, 1).expand(t, h, w),
            cols.view(1, 1, w).expand(t, h, w),
        ]
    ).reshape(3, t * h * w)


def qwen2_5_vl_rope_index(
    input_ids: torch.Tensor,
    mm_token_type_ids: torch.Tensor,
    image_grid_thw: torch.Tensor | None = None,
    video_grid_thw: torch.Tensor | None = None,
    second_per_grid_ts=None,
    attention_mask: torch.Tensor | None = None,
    *,
    spatial_merge_size: int = 2,
    tokens_per_second=2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Position ids ``[3, batch, seq]`` and deltas ``[batch, 1]`` (int64, on ``input_ids``' device).

    Args:
        input_ids (torch.Tensor): ``[batch, seq]`` token ids (only the shape and device are used).
        mm_token_type_ids (torch.Tensor): ``[batch, seq]``, 0 text, 1 image, 2 video.
        image_grid_thw (torch.Tensor | None): ``[n_images, 3]`` patch grids, in order over the batch.
        video_grid_thw (torch.Tensor | None): ``[n_videos, 3]`` patch grids, in order over the batch.
        second_per_grid_ts (torch.Tensor | list | None): ``[n_videos]`` seconds per temporal patch;
            None means 1 for every video.
        attention_mask (torch.Tensor | None): ``[batch, seq]``, 1 for real tokens, 0 for padding.
        spatial_merge_size (int): side of a merge block in patches.
        tokens_per_second (int | float): temporal positions per second of video.

    Raises:
        ValueError: shapes, grids, token types or ``second_per_grid_ts`` that do not fit together
            (:class:`RopeIndexLayoutError`, also a RuntimeError, when runs and grids disagree).
    """
    _check_2d("input_ids", input_ids, None)
    types = _check_2d("mm_token_type_ids", mm_token_type_ids, input_ids.shape)
    if attention_mask is not None:
        attention_mask = _check_2d("attention_mask", attention_mask, input_ids.shape)
    if not isinstance(spatial_merge_size, int) or spatial_merge_size < 1:
        raise ValueError(f"spatial_merge_size must be a positive int, got {spatial_merge_size!r}")
    merge = spatial_merge_size
    grids = {IMAGE: _grid_list(image_grid_thw, "image_grid_thw", merge),
             VIDEO: _grid_list(video_grid_thw, "video_grid_thw", merge)}
    if second_per_grid_ts is None:
        seconds = [1] * len(grids[VIDEO])  # HF's default: 1 second per temporal patch
    else:
        # iterate like HF does: 0-d tensors from a tensor, Python numbers from a list
        if isinstance(second_per_grid_ts, torch.Tensor) and second_per_grid_ts.ndim != 1:
            raise ValueError(
                f"second_per_grid_ts must be 1-D [n_videos], got shape {list(second_per_grid_ts.shape)}"
            )
        seconds = list(second_per_grid_ts)
        if len(seconds) != len(grids[VIDEO]):
            raise ValueError(
                f"second_per_grid_ts has {len(seconds)} entries but video_grid_thw has "
                f"{len(grids[VIDEO])} videos; give one per video"
            )

    device = input_ids.device
    batch, seq = input_ids.shape
    types = types.to(device)
    bad = (types != TEXT) & (types != IMAGE) & (types != VIDEO)
    if attention_mask is not None:
        keep = attention_mask.to(device).bool()
        bad &= keep
    if bool(bad.any()):
        b, s = bad.nonzero()[0].tolist()
        raise ValueError(
            f"mm_token_type_ids[{b}, {s}] = {int(types[b, s])}: token types are 0 (text), 1 (image), 2 (video)"
        )

    position_ids = torch.zeros(3, batch, seq, dtype=torch.int64, device=device)
    deltas = []
    used = {IMAGE: 0, VIDEO: 0}
    for b in range(batch):
        row_types = types[b] if attention_mask is None else types[b][keep[b]]
        if row_types.numel() == 0:
            raise RopeIndexLayoutError(f"attention_mask row {b} masks every token: nothing to position")
        kinds, lengths = torch.unique_consecutive(row_types, return_counts=True)
        pieces, pos = [], 0
        for kind, n in zip(kinds.tolist(), lengths.tolist()):
            if kind == TEXT:
                pieces.append((torch.arange(n, device=device) + pos).expand(3, n))
                pos += n
                continue
            k = used[kind]
            if k >= len(grids[kind]):
                raise RopeIndexLayoutError(
                    f"row {b} has more {_KIND[kind]} runs than the {len(grids[kind])} "
                    f"{_KIND[kind]}_grid_thw rows given"
                )
            used[kind] += 1
            t, h, w = grids[kind][k]
            h, w = h // merge, w // merge
            if n != t * h * w:
                raise RopeIndexLayoutError(
                    f"row {b}: a run of {n} {_KIND[kind]} tokens, but {_KIND[kind]}_grid_thw[{k}] = "
                    f"{list(grids[kind][k])} needs t*h*w / {merge}**2 = {t * h * w} (two {_KIND[kind]}s "
                    f"with no text between them count as one run)"
                )
            interval = 1 if kind == IMAGE else tokens_per_second * seconds[k]
            pieces.append(_vision_positions(pos, t, h, w, interval, device))
            pos += max(h, w)
        row = torch.cat(pieces, dim=1)
        if attention_mask is None:
            position_ids[:, b] = row
        else:
            position_ids[:, b, keep[b]] = row
        deltas.append(row.max() + 1 - row.shape[1])
    for kind in (IMAGE, VIDEO):
        if used[kind] != len(grids[kind]):
            raise RopeIndexLayoutError(
                f"{len(grids[kind])} {_KIND[kind]}_grid_thw rows given but the batch has "
                f"{used[kind]} {_KIND[kind]} runs"
            )
    return position_ids, torch.stack(deltas).view(batch, 1).to(torch.int64)
