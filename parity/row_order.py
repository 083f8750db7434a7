"""Is a stage that is out of tolerance only in the wrong ROW ORDER? Then it is an order mistake
(window order not undone, patches in raster order), not a precision or arithmetic one.

:func:`find_order` tries the two orders ports are known to leave rows in (``docs/spec.md``, "where
ports go wrong"), then any permutation: every dump row within the bound of some golden row and
every golden row within the bound of some dump row. Rows are compared with the stage's metric
(max |a - b| over the row, divided by max |golden| of the whole stage).
"""

from __future__ import annotations

import numpy as np

from reference.vision import patch_rows

MAX_ROWS = 8192  # the any-permutation search builds an S x S distance table


def raster_rows(grid_thw, merge=2):
    """Golden (merge-block order) row of each patch listed in raster order (row by row of each
    frame's patch grid): the order a patchify without the 2x2 merge-block grouping gives."""
    rows, offset = [], 0
    for t, h, w in np.asarray(grid_thw, dtype=np.int64).reshape(-1, 3):
        r, c = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        block = ((r // merge) * (w // merge) + c // merge) * merge * merge + (r % merge) * merge + c % merge
        for frame in range(t):
            rows.append(offset + frame * h * w + block.ravel())
        offset += t * h * w
    return np.concatenate(rows) if rows else np.zeros(0, np.int64)


def known_orders(base, golden_rows, window_index, grid_thw, merge=2):
    """[(name, golden row at each position)] for stage ``base`` (unprefixed: ``output``,
    ``blocks.0.output``, ``pixel_values``) with ``golden_rows`` rows."""
    orders = []
    if window_index is not None:
        window_index = np.asarray(window_index, dtype=np.int64)
        if base == "output" and len(window_index) == golden_rows:
            orders.append(("HF's window order (the window permutation is not undone at the end: "
                           "out[window_index] = merged)", window_index))
        elif len(window_index) * merge * merge == golden_rows:
            orders.append(("HF's window order (rows left in window_index order: HF's hidden states before "
                           "the final un-permute)", patch_rows(window_index, merge * merge)))
    if grid_thw is not None and base in ("pixel_values", "pixel_values_videos", "patch_embed"):
        raster = raster_rows(grid_thw, merge)
        if len(raster) == golden_rows:
            orders.append(("raster order (patches row by row, not in 2x2 merge-block order: the merge order "
                           "of patchify)", raster))
    return orders


def _row_errors(a, b, scale):
    return np.abs(a - b).max(axis=1) / scale


def find_order(base, dump, golden, bound, *, window_index=None, grid_thw=None):
    """The name of the row order that makes ``dump`` (2-D, same shape as ``golden``) agree with
    ``golden`` within ``bound`` when it does not as it is, or None. ``base``: the unprefixed stage."""
    if dump.ndim != 2 or dump.shape != golden.shape or len(golden) < 2:
        return None
    scale = float(np.abs(golden).max()) or 1.0
    if _row_errors(dump, golden, scale).max() <= bound:
        return None  # as close in its own order: not an order difference
    for name, rows in known_orders(base, len(golden), window_index, grid_thw):
        if not np.array_equal(rows, np.arange(len(rows))) and _row_errors(dump, golden[rows], scale).max() <= bound:
            return name
    if len(golden) > MAX_ROWS:
        return None
    if bound == 0:
        same = np.array_equal(dump[np.lexsort(dump.T[::-1])], golden[np.lexsort(golden.T[::-1])])
    else:
        # nearest rows both ways, squared distances from one matrix product
        gram = dump @ golden.T
        dist = (dump * dump).sum(1)[:, None] + (golden * golden).sum(1)[None, :] - 2 * gram
        to_golden, to_dump = dist.argmin(axis=1), dist.argmin(axis=0)
        same = (_row_errors(dump, golden[to_golden], scale).max() <= bound
                and _row_errors(golden, dump[to_dump], scale).max() <= bound)
    return "rows permuted (the same rows as the golden's, in another order)" if same else None
