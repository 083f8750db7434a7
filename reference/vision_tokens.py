"""Placeholder expansion: what HF's Qwen2.5-VL processor does to the text, on token ids.

The prompt holds one `<|image_pad|>` (or `<|video_pad|>`) per image (video); the processor replaces
the i-th one with grid_i.prod() // merge_size**2 copies (one per merged token the vision tower will
emit), then marks each token's modality in `mm_token_type_ids`: 0 text, 1 image, 2 video.
"""

from __future__ import annotations

import numpy as np

from .validate import check_llm_grid, check_merge_size


def expand_sequence(ids, token_id, counts):  # [n] -> [n + sum(counts) - len(counts)]
    """Each occurrence of token_id, in order, becomes counts[i] copies of it."""
    repeats = np.ones(len(ids), np.int64)
    repeats[ids == token_id] = counts
    return np.repeat(ids, repeats)


def expand_vision_tokens(input_ids, image_grid_thw=None, video_grid_thw=None, *, image_token_id=151655,
                         video_token_id=151656, merge_size=2):
    """(input_ids, mm_token_type_ids), int64, with every placeholder expanded.

    input_ids: one sequence (1-D list or array) -> 1-D results; or [batch, seq] -> [batch, seq'],
    grids consumed in order over the rows (as the processor does over its batch of texts). Rows of
    a batch must expand to the same length (pad after expanding, otherwise): a ValueError says so.
    A placeholder count that differs from the number of grids is a ValueError naming both counts,
    as HF's processor raises.
    """
    m = check_merge_size(merge_size, "expand_vision_tokens")
    ids = np.asarray(input_ids)
    if ids.ndim not in (1, 2) or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise ValueError(f"input_ids must be integer token ids, 1-D or [batch, seq], got shape {ids.shape} "
                         f"dtype {ids.dtype}")
    ids = ids.astype(np.int64)
    rows = list(ids) if ids.ndim == 2 else [ids]  # one 1-D array per sequence
    for name, token_id, grid_thw in (("image", image_token_id, image_grid_thw),
                                     ("video", video_token_id, video_grid_thw)):
        grid = check_llm_grid(grid_thw, m, f"{name}_grid_thw")
        found = sum(int((row == token_id).sum()) for row in rows)
        if found != len(grid):
            raise ValueError(f"{found} {name} placeholders (token id {token_id}) in input_ids but "
                             f"{len(grid)} {name} grids in {name}_grid_thw; they must be equal")
        counts = (grid.prod(axis=1) // m**2).tolist()  # merged tokens per image / video
        per_row = np.cumsum([0] + [int((row == token_id).sum()) for row in rows])
        rows = [expand_sequence(row, token_id, counts[per_row[b]:per_row[b + 1]]) for b, row in enumerate(rows)]
    lengths = sorted({len(row) for row in rows})
    if len(lengths) > 1:
        raise ValueError(f"the rows expand to different lengths {[len(row) for row in rows]}; "
                         f"expand one sequence at a time and pad afterwards")
    out = np.stack(rows) if ids.ndim == 2 else rows[0]
    types = np.where(out == image_token_id, 1, np.where(out == video_token_id, 2, 0)).astype(np.int64)
    return out, types
