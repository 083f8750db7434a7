"""3-D rotary positions of the language model's tokens (HF 5.x `Qwen2_5_VLModel.get_rope_index`).

Each sequence is cut into runs of equal token type (0 text, 1 image, 2 video). A position has three
rows (time, height, width); `pos` counts up through the sequence:

    text run of n tokens:   all three rows  pos, pos+1, ..., pos+n-1         then pos += n
    vision run, grid t,h,w: llm grid (t, h/m, w/m), one token per cell (time-major):
                            time   = pos + int(k * interval) for frame k
                            height = pos + row,  width = pos + column        then pos += max(h, w) / m

interval = tokens_per_second * second_per_grid_ts[video] for videos, 1 for images.

After a video, transformers 5.x advances `pos` by the spatial extent only: max(h, w) / m. Transformers
4.x (and ports written against it, e.g. torchtune's Qwen2.5-VL PR #2868) restarted the text after the
largest position used so far + 1, which counts the video's time positions too. For a grid_t = 3 video
the text after it therefore starts lower in 5.x (the issue's case: 11, 12 in HF 5.24 vs 18, 19 in the
PR; deltas -8 vs -6). This module follows 5.x.

Padding: positions are computed on the tokens whose attention_mask is non-zero and written back to
those slots; padded slots keep 0 on all three rows (HF's initial zeros). delta = largest position + 1
- number of unmasked tokens: the offset the model adds to plain positions when it generates further.
"""

from __future__ import annotations

import itertools

import numpy as np

from .validate import (check_llm_grid, check_merge_size, check_seconds_per_grid, check_token_rows,
                       check_vision_runs)


def type_runs(types):  # [n] -> [(kind, start, end)]
    """Runs of equal token type, as (kind, start, end) with end exclusive."""
    runs, start = [], 0
    for kind, group in itertools.groupby(types.tolist()):
        end = start + len(list(group))
        runs.append((kind, start, end))
        start = end
    return runs


def time_positions(t, interval):  # -> [t] int64
    """int(k * interval) for frames k = 0..t-1, in the arithmetic HF uses.

    HF multiplies an int64 arange by the interval and truncates (`.long()`); torch's promotion decides
    the precision: a float32 tensor of second_per_grid_ts (what the processor returns) or a list of
    Python floats gives float32 products, a float64 tensor float64, integers stay exact. `interval` is
    already of the matching NumPy type (see `time_intervals`).
    """
    if isinstance(interval, (int, np.integer)):
        return np.arange(t, dtype=np.int64) * int(interval)
    return np.trunc(np.arange(t).astype(interval.dtype) * interval).astype(np.int64)


def time_intervals(second_per_grid_ts, n_videos, tokens_per_second):  # -> n_videos intervals
    """tokens_per_second * second_per_grid_ts per video, typed as HF's torch arithmetic would type it."""
    if second_per_grid_ts is None:  # HF: 1 per video
        return [tokens_per_second * 1] * n_videos
    python_numbers = isinstance(second_per_grid_ts, (list, tuple))
    seconds = np.asarray(second_per_grid_ts).reshape(-1)
    if python_numbers:
        # Python float * int stays a Python float (double); torch then casts it to float32 for the
        # product with the int64 arange. Python ints stay exact.
        return [tokens_per_second * s if isinstance(s, (int, np.integer)) else np.float32(tokens_per_second * s)
                for s in second_per_grid_ts]
    if np.issubdtype(seconds.dtype, np.integer) or seconds.dtype == np.bool_:
        return [tokens_per_second * int(s) for s in seconds.tolist()]
    # a float tensor element: tokens_per_second * element is computed in the element's dtype
    return [seconds.dtype.type(tokens_per_second) * s for s in seconds]


def vision_positions(start, grid_thw, spatial_merge_size, interval):  # -> [3, t*h*w/m^2]
    """Positions of one image or video run that starts at `start`."""
    t, h, w = grid_thw
    m = spatial_merge_size
    tt, hh, ww = np.meshgrid(time_positions(t, interval), np.arange(h // m), np.arange(w // m), indexing="ij")
    return np.stack([tt, hh, ww]).reshape(3, -1).astype(np.int64) + start


def sequence_positions(types, next_grid, next_interval, spatial_merge_size):  # [n] -> [3, n]
    """Positions of one unpadded sequence; grids and intervals come from iterators shared by the batch."""
    pos, parts = 0, []
    for kind, start, end in type_runs(types):
        if kind == 0:  # text: the same 1-D position on all three rows
            parts.append(np.broadcast_to(np.arange(end - start) + pos, (3, end - start)))
            pos += end - start
        else:
            grid = next(next_grid[kind])
            interval = next(next_interval) if kind == 2 else 1  # images have no time spacing
            parts.append(vision_positions(pos, grid, spatial_merge_size, interval))
            pos += max(grid[1], grid[2]) // spatial_merge_size  # 5.x: the time extent is not added
    return np.concatenate(parts, axis=1).astype(np.int64)


def rope_index(input_ids, mm_token_type_ids, image_grid_thw=None, video_grid_thw=None, second_per_grid_ts=None,
               attention_mask=None, *, spatial_merge_size=2, tokens_per_second=2):
    """(position_ids [3, batch, seq] int64, deltas [batch, 1] int64), as HF 5.x get_rope_index.

    input_ids [batch, seq] (or one 1-D sequence: batch 1) only gives the shape; mm_token_type_ids
    [batch, seq] holds 0 text, 1 image, 2 video; attention_mask [batch, seq] (non-zero = real token)
    or None. image_grid_thw / video_grid_thw [n, 3] are consumed in order across the whole batch, as
    is second_per_grid_ts (one per video; None means 1 second). See the module doc for the rules.

    Bad input raises ValueError where HF would fail later or silently do something else: a vision
    run without a grid or a grid without a run (HF: StopIteration / TypeError, or ignores extra
    grids), a run whose length differs from its grid's token count (HF: RuntimeError on a shape),
    h or w not a multiple of the merge size (HF floors), second_per_grid_ts of the wrong length,
    token types or mask of the wrong shape, unknown token types, a fully masked row. Where HF
    raises a RuntimeError (runs, shapes), the error is a RopeIndexLayoutError: a ValueError that is
    also a RuntimeError.
    """
    m = check_merge_size(spatial_merge_size, "rope_index")
    types, keep = check_token_rows(input_ids, mm_token_type_ids, attention_mask)
    grids = {1: check_llm_grid(image_grid_thw, m, "image_grid_thw"),
             2: check_llm_grid(video_grid_thw, m, "video_grid_thw")}
    check_seconds_per_grid(second_per_grid_ts, len(grids[2]))
    rows = [types[b][keep[b]] for b in range(types.shape[0])]  # unpadded token types per sequence
    check_vision_runs([(b, kind, start, end) for b, row in enumerate(rows)
                       for kind, start, end in type_runs(row) if kind != 0], grids, m)

    batch, seq = types.shape
    position_ids = np.zeros((3, batch, seq), np.int64)  # padded slots stay 0, as in HF
    deltas = np.zeros((batch, 1), np.int64)
    next_grid = {kind: iter(grid.tolist()) for kind, grid in grids.items()}
    next_interval = iter(time_intervals(second_per_grid_ts, len(grids[2]), tokens_per_second))
    for b, row in enumerate(rows):
        pos = sequence_positions(row, next_grid, next_interval, m)  # [3, n unmasked]
        position_ids[:, b, keep[b]] = pos
        deltas[b, 0] = pos.max() + 1 - len(row)
    return position_ids, deltas
