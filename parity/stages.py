"""Stage-by-stage comparison of an implementation with a golden case, against one tolerance table
(``goldenlib.tolerances.PARITY_TOLERANCES``, here as ``TOLERANCES``).

Each stage gets two errors, both ``max|a - b| / max|b|`` against the golden
(``goldenlib.tolerances.rel_error``):

* LOCAL: the stage's module fed the GOLDEN input of that stage (teacher forcing) -
  ``patch_embed`` from the golden ``pixel_values``; block ``i`` (``attn_residual`` = its attention
  half, ``output`` = the whole block) from the golden ``blocks.{i-1}.output`` (block 0 from the
  golden ``patch_embed``); the merger (``merger.ln_q``, ``output``) from the golden last block
  output. In ``full_size_3b`` only blocks whose input block is stored can be forced (7, 8, 16, 24,
  31 and 0); the others show ``n/a``. Stages that depend on ``grid_thw`` only (rotary tables,
  window index, segment bounds) have local = accumulated.
* ACCUMULATED: the whole tower run from ``pixel_values`` (``forward``), errors carried along.

A large accumulated error with a small local one means the stage itself is fine and the
difference comes from upstream; the first stage out of tolerance is where it starts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from goldenlib.stage_vocabulary import is_image_stage, stage_kind, tower_stage_order
from goldenlib.tolerances import PARITY_TOLERANCES, Tol, abs_errors, rel_error

# The tolerance table is goldenlib.tolerances.PARITY_TOLERANCES (with every other bound of the project).
TOLERANCES = PARITY_TOLERANCES


def tolerance(dtype, stage):
    key = (str(dtype), stage_kind(stage))
    if key not in TOLERANCES:
        raise KeyError(f"no tolerance for {key}; dtypes in the table: {sorted({d for d, _ in TOLERANCES})}")
    return TOLERANCES[key]


# ------------------------------------------------------------------ rows


@dataclass
class StageRow:
    stage: str
    shape: tuple
    max_abs: float  # accumulated run vs golden
    mean_abs: float
    rel: float  # accumulated max relative error
    local: float | None  # teacher-forced max relative error (None: cannot be forced)
    tol: Tol
    note: str = ""

    @property
    def kind(self):
        return stage_kind(self.stage)

    @property
    def ok(self):
        if not self.rel <= self.tol.accumulated:  # NaN fails too
            return False
        return self.local is None or self.local <= self.tol.local


def compare_stage(stage, expected, actual, local_actual, dtype, note=""):
    max_abs, mean_abs, rel = abs_errors(actual, expected)
    local = None if local_actual is None else rel_error(local_actual, expected)
    return StageRow(stage, tuple(np.shape(expected)), max_abs, mean_abs, rel, local, tolerance(dtype, stage), note)


def local_stages(impl, tower, pixel_values, grid_thw):
    """Teacher forcing: each module of ``impl`` fed the golden input of its stage."""
    golden, depth = tower.stages, tower.config.depth
    local = {"patch_embed": impl.patch_embed(pixel_values)}
    for i in range(depth):
        source = "patch_embed" if i == 0 else f"blocks.{i - 1}.output"
        if source not in golden or f"blocks.{i}.output" not in golden:
            continue  # the input of this block is not stored (full_size_3b)
        out = impl.block(i, golden[source], grid_thw)
        local[f"blocks.{i}.attn_residual"] = out["attn_residual"]
        local[f"blocks.{i}.output"] = out["output"]
    last = f"blocks.{depth - 1}.output"
    if last in golden:
        local.update(impl.merger(golden[last], grid_thw))
    return local


def compare_tower(impl, case, config_name, pixel_values=None, grid_thw=None, *, forced=None):
    """Rows for every stored tower stage of ``config_name``: accumulated from ``pixel_values``
    (the golden's by default, or a variant's), local from the golden inputs (``forced``: the
    result of :func:`local_stages` when already computed for this implementation)."""
    tower = case.towers[config_name]
    golden = tower.stages
    pv = case.pixel_values if pixel_values is None else pixel_values
    grid = case.grid_thw if grid_thw is None else grid_thw
    accumulated = impl.forward(pv, grid)
    if forced is None:
        forced = local_stages(impl, tower, case.pixel_values, case.grid_thw)
    rows = []
    for stage in tower_stage_order(golden, tower.config.depth):
        if stage_kind(stage) in ("index", "rotary"):
            local_value = accumulated.get(stage)  # depends on grid_thw only: no upstream to force
        else:
            local_value = forced.get(stage)
        note = "" if local_value is not None else "input not stored: not teacher-forced"
        rows.append(compare_stage(stage, golden[stage], accumulated.get(stage, np.full(1, np.nan)),
                                  local_value, impl.dtype, note))
    return rows


def first_failure(rows):
    """The first row out of tolerance (pipeline order), or None."""
    return next((row for row in rows if not row.ok), None)


def attribute(rows):
    """Where a difference starts: "none", "interpolation" (an image stage is the first out of
    tolerance: resize / rescale / normalize / patchify) or "tower" (image stages within tolerance,
    a tower stage is the first out: precision or the tower's code)."""
    first = first_failure(rows)
    if first is None:
        return "none"
    return "interpolation" if is_image_stage(first.stage) else "tower"
