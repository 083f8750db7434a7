"""Stage-by-stage comparison of an implementation with a golden case, with one tolerance table.

Each stage gets two errors, both ``max|a - b| / max|b|`` against the golden (``rel_error``):

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

from .cases import IMAGE_STAGES

# ------------------------------------------------------------------ the tolerance table


@dataclass(frozen=True)
class Tol:
    local: float
    accumulated: float


# max relative error (max|a-b| / max|golden|) allowed, per (dtype of the implementation, stage kind):
# Tol(local, accumulated). Each is the worst value MEASURED with `uv run python -m parity.measure`
# over every stored golden (tiny_a and tiny_b on the 15 image cases and two_frames, the 3B tower
# on full_size_3b), on the CPU (torch 2.15, this project's 2-core machine) and on CUDA (H200, torch
# 2.11), times 1.3, rounded up to two digits; the comment gives the measured worst (local /
# accumulated) and where. Image and index stages must be exact everywhere. "float64" is the NumPy
# reference: 0 on the float64 tiny goldens, so its entries are set by full_size_3b, which is stored
# in float32 (its inputs and expected values carry float32 rounding).
TOLERANCES = {
    # (dtype, kind): Tol(local, accumulated),  # measured worst: local / accumulated (where)
    ("float64", "image"): Tol(0.0, 0.0),
    ("float64", "index"): Tol(0.0, 0.0),
    ("float64", "rotary"): Tol(3.9e-08, 3.9e-08),  # 2.97e-08 (3b rotary_cos)
    ("float64", "patch_embed"): Tol(4.2e-08, 4.2e-08),  # 3.16e-08 (3b)
    ("float64", "attn_residual"): Tol(1.2e-07, 6.0e-08),  # 8.70e-08 / 4.59e-08 (3b blocks.24 / 15)
    ("float64", "block_output"): Tol(9.7e-08, 6.2e-08),  # 7.43e-08 / 4.76e-08 (3b blocks.7 / 16)
    ("float64", "merger.ln_q"): Tol(8.4e-08, 6.8e-08),  # 6.42e-08 / 5.22e-08 (3b)
    ("float64", "output"): Tol(5.9e-08, 5.2e-08),  # 4.47e-08 / 3.98e-08 (3b)
    ("float32", "image"): Tol(0.0, 0.0),
    ("float32", "index"): Tol(0.0, 0.0),
    ("float32", "rotary"): Tol(1.8e-06, 1.8e-06),  # 1.38e-06 (aspect_1_150/tiny_b rotary_sin: positions up to 49)
    ("float32", "patch_embed"): Tol(7.2e-07, 7.2e-07),  # 5.49e-07 (photo_rocket/tiny_a, cpu)
    ("float32", "attn_residual"): Tol(6.1e-07, 2.1e-06),  # 4.65e-07 / 1.61e-06 (photo_rocket/tiny_b cuda / 3b cuda)
    ("float32", "block_output"): Tol(7.4e-07, 2.1e-06),  # 5.62e-07 / 1.58e-06 (checkerboard/tiny_b cuda / 3b cuda)
    ("float32", "merger.ln_q"): Tol(2.6e-07, 2.3e-06),  # 1.99e-07 / 1.75e-06 (checkerboard/tiny_a cpu / 3b cuda)
    ("float32", "output"): Tol(7.6e-07, 2.1e-06),  # 5.81e-07 / 1.55e-06 (noise/tiny_b cpu / 3b cuda)
    ("bfloat16", "image"): Tol(0.0, 0.0),
    ("bfloat16", "index"): Tol(0.0, 0.0),
    ("bfloat16", "rotary"): Tol(1.8e-06, 1.8e-06),  # 1.38e-06 (the port keeps the tables in float32)
    ("bfloat16", "patch_embed"): Tol(6.9e-03, 6.9e-03),  # 5.24e-03 (rgba/tiny_b)
    ("bfloat16", "attn_residual"): Tol(1.3e-02, 4.4e-02),  # 9.94e-03 / 3.32e-02 (checkerboard/tiny_a / 3b cuda)
    ("bfloat16", "block_output"): Tol(2.0e-02, 4.5e-02),  # 1.53e-02 / 3.43e-02 (checkerboard/tiny_b cpu / 3b cuda)
    ("bfloat16", "merger.ln_q"): Tol(1.2e-02, 4.9e-02),  # 8.95e-03 / 3.71e-02 (photo_chelsea/tiny_a / 3b cuda)
    ("bfloat16", "output"): Tol(1.1e-02, 2.5e-02),  # 7.93e-03 / 1.91e-02 (checkerboard/tiny_b)
    ("float16", "image"): Tol(0.0, 0.0),
    ("float16", "index"): Tol(0.0, 0.0),
    ("float16", "rotary"): Tol(1.8e-06, 1.8e-06),  # 1.38e-06
    ("float16", "patch_embed"): Tol(8.8e-04, 8.8e-04),  # 6.71e-04 (checkerboard/tiny_a)
    ("float16", "attn_residual"): Tol(1.4e-03, 3.8e-03),  # 1.07e-03 / 2.88e-03 (checkerboard/tiny_b / 3b cpu)
    ("float16", "block_output"): Tol(1.9e-03, 3.7e-03),  # 1.42e-03 / 2.79e-03 (checkerboard/tiny_b cpu / 3b cuda)
    ("float16", "merger.ln_q"): Tol(1.6e-03, 4.3e-03),  # 1.19e-03 / 3.26e-03 (tiny_upscaled/tiny_b / 3b cuda)
    ("float16", "output"): Tol(1.3e-03, 2.9e-03),  # 9.94e-04 / 2.21e-03 (rgba/tiny_b cuda / noise/tiny_a cuda)
}

TOWER_STAGE_ORDER_HEAD = ("patch_embed", "rotary_cos", "rotary_sin", "window_index", "cu_seqlens", "cu_window_seqlens")
INDEX_STAGES = ("window_index", "cu_seqlens", "cu_window_seqlens", "image_grid_thw")


def stage_kind(stage):
    """The tolerance-table kind of a stage name (``blocks.3.output`` -> ``block_output``)."""
    base = stage.split(".")[0]
    if stage == "image_grid_thw" or base in INDEX_STAGES:
        return "index"
    if base in IMAGE_STAGES + ("pixel_values",):
        return "image"
    if stage.startswith("rotary_"):
        return "rotary"
    if stage.startswith("blocks."):
        return "attn_residual" if stage.endswith(".attn_residual") else "block_output"
    if stage in ("patch_embed", "merger.ln_q", "output"):
        return stage
    raise ValueError(f"unknown stage {stage!r}")


def is_image_stage(stage):
    return stage.split(".")[0] in IMAGE_STAGES + ("pixel_values", "image_grid_thw")


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


def _errors(expected, actual):
    expected = np.asarray(expected)
    actual = np.asarray(actual)
    if expected.shape != actual.shape:
        return float("inf"), float("inf"), float("inf")
    if expected.size == 0:
        return 0.0, 0.0, 0.0
    diff = np.abs(expected.astype(np.float64) - actual.astype(np.float64))
    scale = float(np.max(np.abs(expected.astype(np.float64))))
    max_abs = float(diff.max())
    return max_abs, float(diff.mean()), (max_abs / scale if scale > 0 else max_abs)


def rel_error(expected, actual):
    """max |a - b| / max |b| (b = expected; inf on a shape mismatch), as goldenlib.tower_goldens.rel_error."""
    return _errors(expected, actual)[2]


def compare_stage(stage, expected, actual, local_actual, dtype, note=""):
    max_abs, mean_abs, rel = _errors(expected, actual)
    local = None if local_actual is None else rel_error(expected, local_actual)
    return StageRow(stage, tuple(np.shape(expected)), max_abs, mean_abs, rel, local, tolerance(dtype, stage), note)


def tower_stage_order(stages, depth):
    order = [s for s in TOWER_STAGE_ORDER_HEAD if s in stages]
    for i in range(depth):
        order += [s for s in (f"blocks.{i}.attn_residual", f"blocks.{i}.output") if s in stages]
    return order + [s for s in ("merger.ln_q", "output") if s in stages]


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
