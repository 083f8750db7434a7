"""Any port against the goldens from a stage dump: ``compare_dump(case, tensors)``.

A dump is a safetensors file (or a dict) of intermediate tensors written by any implementation
(MLX, C++, JAX, ONNX, HF with hooks), named exactly as the golden's stages (``docs/golden-format.md``):
image stages (``resized``, ``pixel_values``; ``resized.1`` for a second image), tower stages
``<tower>.<stage>`` (``tiny_a.blocks.0.output``; plain ``blocks.0.output`` when ``config`` names the
tower or the case has one tower), video and positions stages. Any subset, any float dtype.

Per stage: the shape check, max abs, mean abs and max rel (``goldenlib.tolerances.rel_error``)
against the golden, the tolerance for the dump's dtype, the verdict. Tolerances:

* image, video, index and positions-integer stages are exact: the dump must equal the golden
  rounded to the dump's dtype (a bfloat16 ``pixel_values`` is right when it is the golden's float32
  value rounded to bfloat16; uint8 stages written as floats compare exactly);
* tower stages: ``PARITY_TOLERANCES[(dtype, kind)].accumulated`` (a dump has no teacher-forced
  local error); for float32 never below ``HF_CROSSCHECK_BOUND``, the bound every golden is certified
  to against HF's own float32 tower, so that HF itself (its Conv3d patch embedding sums in another
  order than the port's matmul: measured 1.9e-6 against the port's table's 1.4e-6) passes;
* the text rotary of the positions cases: ``POSITIONS_ROTARY_VS_HF_BOUND`` /
  ``MROPE_PORT_FLOAT32_VS_GOLDEN_BOUND`` (float32), ``MROPE_PORT_BFLOAT16_VS_HF_BOUND`` (bfloat16).

Then the first stage out of tolerance (pipeline order) and one attribution line, in the parity
report's words: ``interpolation`` (an image stage: the resize, rescale/normalize, patchify),
``backend`` (the dump equals the same input's golden on the other image backend), ``order`` (the
stage holds the golden's rows permuted: window order not undone, raster patch order),
``precision`` (a float tower stage off by what a lower precision's rounding gives), ``tower`` (beyond
any precision: the computation differs), ``positions``. Exit code: 0 every stage in the dump within
tolerance, 1 otherwise, 2 when nothing in the dump is a stage of the case or a stage cannot be
compared (shape, dtype; named in ``problems``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from goldenlib.tolerances import (
    DRIFT_BOUNDS,
    HF_CROSSCHECK_BOUND,
    MROPE_PORT_BFLOAT16_VS_HF_BOUND,
    MROPE_PORT_FLOAT32_VS_GOLDEN_BOUND,
    PARITY_TOLERANCES,
    POSITIONS_ROTARY_VS_HF_BOUND,
    Tol,
    abs_errors,
)

from .dump_file import FLOAT_DTYPES, DumpError, DumpTensor, as_dump_tensor, read_dump
from .row_order import find_order
from .stages import StageRow, stage_kind, tower_stage_order

# Stages of the image / video processor, in pipeline order (per image), then the processor's outputs.
IMAGE_PIPELINE = ("input", "rgb", "sampled", "resized", "rescaled", "rescaled_normalized", "normalized", "padded")
PROCESSOR_OUTPUTS = ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts")
# The positions cases' stages, in pipeline order; all integers but the text rotary tables.
POSITION_STAGES = ("input_ids", "attention_mask", "expanded_input_ids", "mm_token_type_ids", "position_ids", "deltas",
                   "mrope_cos", "mrope_sin")
TEXT_ROTARY = ("mrope_cos", "mrope_sin")
TEXT_ROTARY_BOUNDS = {
    "float64": DRIFT_BOUNDS["float64"],
    "float32": max(POSITIONS_ROTARY_VS_HF_BOUND, MROPE_PORT_FLOAT32_VS_GOLDEN_BOUND),
    "bfloat16": MROPE_PORT_BFLOAT16_VS_HF_BOUND,
}
EXACT_KINDS = ("image", "index", "positions")
# Lower precisions, tightest first: what a silent cast would leave.
LOWER = {"float64": ("float32", "float16", "bfloat16"), "float32": ("float16", "bfloat16"), "float16": ("bfloat16",),
         "bfloat16": ()}
EXIT_OK, EXIT_FAIL, EXIT_CANNOT = 0, 1, 2
KNOWN_FORMATS = ("1",)  # golden format versions this reader understands (docs/golden-format.md)

# Where each tower stage's own computation can go wrong (docs/spec.md, "where ports go wrong").
HINTS = {
    "patch_embed": "the patch embedding (Conv3d weight viewed as [hidden, 1176]; values in a row ordered "
                   "channel, time, y, x)",
    "rotary": "the rotary tables (inv_freq, each patch's (row, column) in merge-block order)",
    "index": "the window partition (window_index, cu_window_seqlens) or the per-frame cu_seqlens",
    "merger.ln_q": "the merger's RMSNorm",
    "output": "the merger MLP (4 consecutive rows -> 1, exact GELU) or the final un-permute "
              "(out[window_index] = merged)",
}


# ------------------------------------------------------------------ the golden


@dataclass
class Golden:
    name: str
    kind: str  # image, tower, video, positions (registry kind); scenario cases: image
    tensors: dict  # golden name -> array
    towers: dict  # tower name -> reference.VisionConfig
    source: str
    backend: str | None = None
    rebuild: callable = None  # () -> image stages not stored (full_size_3b)


def load_golden(name):
    """The expected tensors of case ``name`` under their golden names (sha256-verified)."""
    from goldenlib import store
    from goldenlib.cases import BY_NAME, SCENARIOS, TOWERS

    if name.startswith("weights_"):
        raise ValueError(f"case {name!r} holds a tower's weights, not stages: compare a dump with a case that "
                         "runs them (photo_astronaut, ...)")
    if name in SCENARIOS:
        from .cases import load_case

        case = load_case(name)
        tensors = dict(case.expected_image_stages())
        for tower, golden in case.towers.items():
            tensors.update({f"{tower}.{stage}": value for stage, value in golden.stages.items()})
        return Golden(name, "image", tensors, {t: TOWERS[t].config for t in case.towers}, case.source, case.backend)
    if name not in BY_NAME:
        raise ValueError(f"unknown case {name!r}; known: {', '.join(BY_NAME)}")
    registered = BY_NAME[name]
    if not registered.stored:
        raise ValueError(f"case {name!r} is not stored")
    tensors, meta = store.read_case(name)
    if str(meta.get("format_version")) not in KNOWN_FORMATS:
        raise ValueError(f"golden {name} has format_version {meta.get('format_version')!r}; this reader knows "
                         f"{', '.join(KNOWN_FORMATS)} (docs/golden-format.md, versioning rule)")
    towers = {t: TOWERS[t].config for t in TOWERS if any(key.startswith(f"{t}.") for key in tensors)}
    backend = None
    if registered.kind == "image":
        backend = (meta.get("params") or registered.params).get("backend", "pil")
    golden = Golden(name, registered.kind, tensors, towers, f"golden/{name}.safetensors", backend)
    if registered.kind == "tower" and registered.make is not None:  # full_size_3b: image stages rebuilt on use
        golden.rebuild = lambda: _rebuilt_image_stages(name)
    return golden


def _rebuilt_image_stages(name):
    from .cases import load_case

    return load_case(name).expected_image_stages()


def split_name(name, towers):
    """(tower or None, unprefixed stage)."""
    head, _, rest = name.partition(".")
    return (head, rest) if head in towers and rest else (None, name)


def stage_kind_of(base, tower):
    """The tolerance kind of an (unprefixed) golden stage."""
    if tower is not None:
        return stage_kind(base)
    root = base.split(".")[0]
    if root in TEXT_ROTARY:
        return "text_rotary"
    if root in POSITION_STAGES:
        return "positions"
    return "image"  # image / video processor stages, their grids, second_per_grid_ts


def pipeline_order(names, towers):
    """Golden names in pipeline order: image stages per image, processor outputs, positions, towers."""
    def key(name):
        tower, base = split_name(name, towers)
        if tower is not None:
            return (3, list(towers).index(tower), 0, 0)
        root, _, index = base.partition(".")
        if root in IMAGE_PIPELINE:
            return (0, int(index) if index.isdigit() else 0, IMAGE_PIPELINE.index(root), 0)
        if root in PROCESSOR_OUTPUTS:
            return (1, PROCESSOR_OUTPUTS.index(root), 0, 0)
        if root in POSITION_STAGES:
            return (2, POSITION_STAGES.index(root), 0, 0)
        return (4, 0, 0, 0)

    ordered = sorted(names, key=lambda n: (key(n), n))
    result = [n for n in ordered if split_name(n, towers)[0] is None]
    for tower, config in towers.items():
        stages = {split_name(n, towers)[1]: n for n in ordered if split_name(n, towers)[0] == tower}
        result += [stages[s] for s in tower_stage_order(stages, config.depth)]
        result += sorted(n for s, n in stages.items() if n not in result)
    return result


# ------------------------------------------------------------------ tolerances and rounding


def round_to(values, dtype):
    """``values`` (float64) rounded to ``dtype`` and back: what a correct dump in that dtype holds."""
    if dtype in ("float32", "float16"):
        return values.astype(dtype).astype(np.float64)
    if dtype == "bfloat16":
        bits = values.astype(np.float32).view(np.uint32)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000  # round to nearest even
        return rounded.astype(np.uint32).view(np.float32).astype(np.float64)
    return values


def dump_tolerance(kind, dtype):
    """The accumulated bound for a stage of ``kind`` in a dump of ``dtype``, or None (no bound)."""
    if kind in EXACT_KINDS:
        return 0.0
    if kind == "text_rotary":
        return TEXT_ROTARY_BOUNDS.get(dtype)
    tol = PARITY_TOLERANCES.get((dtype, kind))
    if tol is None:
        return None
    return max(tol.accumulated, HF_CROSSCHECK_BOUND) if dtype == "float32" else tol.accumulated


# One rounding of each dtype, relative (2^-(mantissa bits)): the least a tensor stored in it can be off.
ROUNDING = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}


def order_bound(kind, bound, dtype):
    """How close permuted rows must be to count as the golden's rows in another order: the stage's
    bound, or the loosest precision's (a port can be in the wrong order AND in low precision; the
    order is named first), at least one rounding of the dump's dtype. Image stages stay exact."""
    if kind in EXACT_KINDS:
        return bound
    loosest = max((dump_tolerance(kind, low) or 0.0) for low in FLOAT_DTYPES)
    return max(bound, loosest, 2 * ROUNDING.get(dtype, 0.0))


# ------------------------------------------------------------------ rows and report


@dataclass
class DumpRow(StageRow):
    dtype: str = ""  # the dump tensor's dtype
    judged_as: str = ""  # the dtype whose tolerance it is judged with
    order: str | None = None  # the row order that would make it agree, when one does
    category: str = ""  # the tolerance kind (stage names here carry their tower prefix)

    @property
    def kind(self):
        return self.category


@dataclass
class Attribution:
    kind: str  # none, interpolation, backend, order, precision, tower, positions
    line: str


class DumpReport(list):
    """The rows of a dump's comparison (a list of :class:`DumpRow`, pipeline order), with
    ``first_failure``, ``attribution`` (kind and line), ``problems`` (stages that cannot be
    compared), ``ignored`` (dump tensors that are not stages of the case) and ``exit_code``."""

    def __init__(self, case, config, rows=(), *, problems=(), ignored=(), notes=(), source="", dump=""):
        super().__init__(rows)
        self.case, self.config, self.source, self.dump = case, config, source, dump
        self.problems, self.ignored, self.notes = list(problems), list(ignored), list(notes)
        self.attribution = Attribution("none", "")

    @property
    def rows(self):
        return list(self)

    @property
    def first_failure(self):
        return next((row for row in self if not row.ok), None)

    @property
    def title(self):
        return f"dump {self.dump or 'in memory'}"

    def as_run(self):
        """The report as one run for ``parity.printing.plot_runs``: the image stages and one tower's
        (``config``, or the first in the dump), tower names without their prefix."""
        from types import SimpleNamespace

        from goldenlib.cases import TOWERS

        tower = self.config or next((r.stage.split(".")[0] for r in self if r.stage.split(".")[0] in TOWERS), None)
        rows = []
        for row in self:
            head, _, base = row.stage.partition(".")
            stage = base if base and head == tower else row.stage
            try:
                stage_kind(stage)
            except ValueError:
                continue  # another tower's stage, or one the plot has no place for (input, positions)
            rows.append(replace(row, stage=stage))
        return SimpleNamespace(rows=rows, title=self.title, first_failure=next((r for r in rows if not r.ok), None))

    @property
    def exit_code(self):
        if self.problems or not self:
            return EXIT_CANNOT
        return EXIT_FAIL if self.first_failure is not None else EXIT_OK


def _resolve(name, golden, config):
    """(golden name or None, why not) for dump tensor ``name``."""
    towers = golden.towers
    tower, base = split_name(name, towers)
    if name in golden.tensors or tower is not None:
        if config is not None and tower is not None and tower != config:
            return None, f"{name}: a stage of tower {tower}, not of the one compared ({config})"
        return (name, "") if name in golden.tensors else (None, f"{name}: not a stage of {golden.name}")
    if config is not None and f"{config}.{name}" in golden.tensors:
        return f"{config}.{name}", ""
    owners = [t for t in towers if f"{t}.{name}" in golden.tensors]
    if len(owners) == 1 and len(towers) == 1:
        return f"{owners[0]}.{name}", ""
    if owners:
        return None, (f"{name}: a tower stage without its tower; {golden.name} has towers {', '.join(towers)}: "
                      f"name it `{owners[0]}.{name}` or pass the tower (--config)")
    return None, f"{name}: not a stage of {golden.name}"


def _fit_shape(value, shape):
    """``value`` in ``shape`` when they differ only by axes of length 1, else None."""
    if value.shape == shape:
        return value
    if tuple(n for n in value.shape if n != 1) == tuple(n for n in shape if n != 1):
        return value.reshape(shape)
    return None


def compare_dump(case, tensors, *, config=None, dtype=None):
    """Compare a stage dump with golden case ``case`` (a name; its golden is read sha256-verified).

    ``tensors``: a safetensors path, or {name: NumPy array / torch tensor}. ``config``: compare only
    this tower's stages (and read unprefixed tower names as its). ``dtype``: the dtype the
    implementation computed in, when the dump stores another (judges every float tower stage
    with that dtype's tolerance). Returns a :class:`DumpReport` (its rows, ``.first_failure``,
    ``.attribution``, ``.exit_code``). Raises ValueError for an unknown case or tower, a weights
    file given as case, a ``dtype`` without tolerances, and a dump file that cannot be read."""
    golden = load_golden(case)
    if config is not None and config not in golden.towers:
        raise ValueError(f"case {case} has towers {sorted(golden.towers) or 'none'}, not {config!r}")
    if dtype is not None and dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype {dtype!r} has no tolerances; choose from {', '.join(FLOAT_DTYPES)}")
    source = ""
    if isinstance(tensors, (str, Path)):
        source = str(tensors)
        tensors = read_dump(tensors)
    dump = {name: as_dump_tensor(value) for name, value in tensors.items()}

    resolved, ignored = {}, []
    for name in dump:
        target, why = _resolve(name, golden, config)
        if target is None and golden.rebuild is not None and split_name(name, golden.towers)[0] is None \
                and name.split(".")[0] in IMAGE_PIPELINE:
            golden.tensors.update({k: v for k, v in golden.rebuild().items() if k not in golden.tensors})
            golden.rebuild = None
            target, why = _resolve(name, golden, config)
        if target is None:
            ignored.append(why)
        elif target in resolved.values():
            ignored.append(f"{name}: the same stage as {next(k for k, v in resolved.items() if v == target)}")
        else:
            resolved[name] = target

    rows, problems = [], []
    by_target = {target: name for name, target in resolved.items()}
    for target in pipeline_order(list(by_target), golden.towers):
        name, tensor = by_target[target], dump[by_target[target]]
        tower, base = split_name(target, golden.towers)
        kind = stage_kind_of(base, tower)
        expected = np.asarray(golden.tensors[target], dtype=np.float64)
        judged = dtype if (dtype is not None and kind not in EXACT_KINDS) else tensor.dtype
        if kind not in EXACT_KINDS and not tensor.is_float:
            problems.append(f"{name}: dtype {tensor.dtype}; a float stage needs a float dtype")
            continue
        bound = dump_tolerance(kind, judged)
        if bound is None:
            problems.append(f"{name}: no tolerance for a {kind} stage in {judged}")
            continue
        values = _fit_shape(tensor.values, expected.shape)
        if values is None:
            problems.append(f"{name}: shape {list(tensor.shape)}, the golden's is {list(expected.shape)}: "
                            "cannot compare")
            continue
        note = "" if values.shape == tensor.shape else f"read {list(tensor.shape)} as {list(expected.shape)}"
        if kind in EXACT_KINDS and tensor.dtype in ("float32", "float16", "bfloat16") \
                and golden.tensors[target].dtype.kind == "f" and tensor.dtype != str(golden.tensors[target].dtype):
            expected = round_to(expected, tensor.dtype)
            note = "; ".join(filter(None, [note, f"against the golden rounded to {tensor.dtype}"]))
        max_abs, mean_abs, rel = abs_errors(values, expected)
        row = DumpRow(target, expected.shape, max_abs, mean_abs, rel, None, Tol(bound, bound), note,
                      dtype=tensor.dtype, judged_as=judged, category=kind)
        if not row.ok and values.ndim == 2:
            window_index = golden.tensors.get(f"{tower}.window_index") if tower else None
            grid = golden.tensors.get("image_grid_thw", golden.tensors.get("video_grid_thw"))
            row.order = find_order(base, values, expected, order_bound(kind, bound, tensor.dtype),
                                   window_index=window_index, grid_thw=grid)
        row.values = values  # kept for the attribution (not printed)
        rows.append(row)

    report = DumpReport(case, config, rows, problems=problems, ignored=ignored, source=golden.source, dump=source)
    report.attribution = attribute_dump(report, golden)
    return report


# ------------------------------------------------------------------ attribution


def _image_state(report):
    image = [r for r in report if r.kind == "image"]
    if not image:
        return "image stages not in the dump"
    return "image stages exact" if all(r.ok for r in image) else "image stages NOT exact"


def _image_cause(report, first):
    """What an image stage out of tolerance points at."""
    root = first.stage.split(".")[0]
    index = first.stage[len(root):]  # ".1" for a second image
    present = {r.stage: r for r in report}
    if root == "rgb":
        return "the RGB conversion (alpha composited over white, gray repeated)"
    if root == "resized":
        steps = f" ({first.max_abs:.3g} uint8 steps)" if first.max_abs >= 0.5 else ""
        return f"the resize itself{steps}: filter, rounding after each pass, pass order (docs/spec.md)"
    if root in ("rescaled", "rescaled_normalized", "normalized"):
        before = present.get(f"resized{index}")
        if before is not None and before.ok:
            return "rescale/normalize (the resize before it is exact): a float32 formula, see docs/spec.md"
        return "the resize, rescale or normalize (dump `resized` to tell which)"
    if root in ("pixel_values", "pixel_values_videos"):
        before = [r for r in report if r.kind == "image" and r.stage.split(".")[0] in IMAGE_PIPELINE]
        if before and all(r.ok for r in before):
            return "patchify (the image stages before it are exact): the values within a row (channel, time, y, x)"
        return "the image stages before it (dump `resized` and `normalized` to tell which)"
    if root in ("image_grid_thw", "video_grid_thw"):
        return "the grid: smart_resize's size (Python's round, the min/max pixels)"
    if root == "sampled":
        return "the frame sampling"
    if root == "padded":
        return "the temporal padding (the last frame repeated)"
    return f"the stage {first.stage}"


def _backend_twin_equal(report, golden, first):
    """The other-backend golden of the same input, when the dump's stage equals it exactly."""
    if golden.kind != "image" or golden.backend is None:
        return None
    from goldenlib import store

    from .cases import backend_twin

    other = "pil" if golden.backend == "torchvision" else "torchvision"
    try:
        twin = backend_twin(golden.name, other)
    except (ValueError, KeyError):
        return None
    if twin is None:
        return None
    theirs, _ = store.read_case(twin)
    value = theirs.get(first.stage)
    if value is None or value.shape != first.values.shape or not np.array_equal(value, first.values):
        return None
    return twin


def _rotary_from_low_precision_inv_freq(report, golden, first):
    """The dtype whose rounding of inv_freq gives the dump's rotary table (float32 angles), or None:
    a model cast with ``.to(bfloat16)`` after it was built casts HF's rotary buffer too."""
    from reference.vision import vision_position_ids

    tower, base = split_name(first.stage, golden.towers)
    config = golden.towers[tower]
    grid = golden.tensors.get("image_grid_thw", golden.tensors.get("video_grid_thw"))
    half = config.head_dim // 2
    pos = vision_position_ids(grid, config.spatial_merge_size).astype(np.float32)
    exact = (1.0 / config.rope_theta ** (np.arange(0, half, 2, dtype=np.float32) / half)).astype(np.float32)
    bound = dump_tolerance("rotary", "float32")
    for low in ("bfloat16", "float16"):
        inv_freq = round_to(exact.astype(np.float64), low).astype(np.float32)
        angle = (pos[:, :, None] * inv_freq).reshape(len(pos), half)
        angle = np.concatenate([angle, angle], axis=-1)
        table = (np.cos(angle) if base == "rotary_cos" else np.sin(angle)).astype(np.float64)
        if abs_errors(first.values, table)[2] <= bound:
            return low
    return None


def attribute_dump(report, golden):
    """The attribution line of a dump's first stage out of tolerance (see the module doc)."""
    first = report.first_failure
    if not report:
        return Attribution("none", "nothing compared: " + ("; ".join(report.problems + report.ignored) or
                                                           "the dump is empty"))
    if first is None:
        return Attribution("none", f"all {len(report)} stages in the dump within tolerance "
                                   f"({_image_state(report)}; each judged at its dtype's tolerance)")
    size = f"max abs {first.max_abs:.4g}, rel {first.rel:.3g}"
    if first.order is not None:
        return Attribution("order", f"order: `{first.stage}` holds the golden's rows in {first.order}; "
                                    "an order mistake, not a precision one")
    if first.kind == "image":
        twin = _backend_twin_equal(report, golden, first)
        if twin is not None:
            from .report import BACKEND_DIFFERENCE, BACKEND_NAMES

            other = BACKEND_NAMES["pil" if golden.backend == "torchvision" else "torchvision"]
            return Attribution("backend", f"{BACKEND_DIFFERENCE}: `{first.stage}` equals the {other}"
                                          f"-backend golden `{twin}` exactly; HF's two processors differ by design: "
                                          f"judge this port against `{twin}`")
        return Attribution("interpolation", f"interpolation: attributed to the resize/image stages: `{first.stage}` "
                                            f"({size}): {_image_cause(report, first)}")
    if first.kind in ("positions", "text_rotary"):
        hint = ""
        if first.stage.split(".")[0] in ("position_ids", "deltas") and "video_grid_thw" in golden.tensors:
            hint = ("; after a video, transformers 5.x starts the next text at the run's start + max(h, w) / 2, "
                    "4.x at the largest position + 1 (docs/porting.md)")
        return Attribution("positions", f"positions: `{first.stage}` differs from HF 5.x ({size}){hint}")
    for low in LOWER.get(first.judged_as, ()):
        low_bound = dump_tolerance(first.kind, low)
        if low_bound is not None and first.rel <= low_bound:
            return Attribution("precision", f"precision: `{first.stage}` is off by rel {first.rel:.3g}, beyond the "
                                            f"{first.judged_as} tolerance ({first.tol.accumulated:.2g}) but within "
                                            f"the {low} one ({low_bound:.2g}): the computation runs in lower "
                                            f"precision than the {first.judged_as} it is judged as (a silent {low} "
                                            f"cast?); {_image_state(report)}")
    if first.dtype in ROUNDING and first.dtype != "float64":
        stored = round_to(np.asarray(golden.tensors[first.stage], dtype=np.float64), first.dtype)
        if abs_errors(first.values, stored)[2] <= (dump_tolerance(first.kind, "float32") or 0.0):
            return Attribution("precision", f"precision: `{first.stage}` is the golden rounded to {first.dtype} "
                                            f"({size}): computed right, kept in {first.dtype}; HF keeps it in float32"
                                            f"; {_image_state(report)}")
    if first.kind == "rotary":
        low = _rotary_from_low_precision_inv_freq(report, golden, first)
        if low is not None:
            return Attribution("precision", f"precision: `{first.stage}` is the table of inv_freq rounded to {low} "
                                            f"({size}): a model cast with .to({low}) after it was built casts HF's "
                                            "rotary buffer too; from_pretrained(..., dtype=...) keeps it float32")
    tower, base = split_name(first.stage, golden.towers)
    if _unpermuted_windows(golden, tower, base, first):
        block = base.split(".")[1]
        return Attribution("order", f"order: `{first.stage}` ({size}) is what block {block} gives when its "
                                    "window segments are applied to rows left in merge-block order (no window_index "
                                    "permutation before block 0): the window order; an order mistake, not a "
                                    "precision one")
    return Attribution("tower", f"tower: {_image_state(report)}; the tower differs at `{first.stage}` ({size}), "
                                f"beyond the {first.judged_as} tolerance and any lower precision's: the computation "
                                f"differs, not its rounding; look at {_tower_hint(report, golden, tower, base)}")


def _unpermuted_windows(golden, tower, base, first):
    """Whether a window block's ``attn_residual`` in the dump is what the block computes from its
    golden input with the window segments applied to UNPERMUTED rows (the spec's window-order mistake),
    within the loosest precision's bound. Recomputed with the NumPy reference and the tower's weights."""
    parts = base.split(".")
    if len(parts) != 3 or parts[0] != "blocks" or parts[2] != "attn_residual":
        return False
    i, config = int(parts[1]), golden.towers[tower]
    source = f"{tower}.patch_embed" if i == 0 else f"{tower}.blocks.{i - 1}.output"
    if i in config.fullatt_block_indexes or source not in golden.tensors:
        return False
    from reference.vision import cast, nest_weights, vision_block

    from .cases import tower_weights

    t = golden.tensors
    block = cast(nest_weights(tower_weights(tower), config)["blocks"][i], np.float64)
    trace = {}
    vision_block(np.asarray(t[source], np.float64), t[f"{tower}.rotary_cos"], t[f"{tower}.rotary_sin"],
                 t[f"{tower}.cu_window_seqlens"], **block, num_heads=config.num_heads, act=config.hidden_act,
                 trace=trace)
    return abs_errors(first.values, trace["attn_residual"])[2] <= order_bound(first.kind, 0.0, first.dtype)


def _tower_hint(report, golden, tower, base):
    if base.startswith("blocks."):
        i = int(base.split(".")[1])
        full = i in golden.towers[tower].fullatt_block_indexes
        if base.endswith("attn_residual"):
            if full:
                return (f"the attention of block {i} (full attention: one segment per image or frame, "
                        "cu_seqlens)")
            return (f"the attention of block {i}, a window-attention block: the rows attended together must be "
                    "the golden's windows (window order: tokens and rotary tables permuted by window_index "
                    "before block 0)")
        return f"the MLP half of block {i} (gate/up/down with biases, silu), or its RMSNorm"
    return HINTS.get(stage_kind(base), HINTS.get(base, f"the stage {base}"))


# ------------------------------------------------------------------ markdown


def dump_markdown(report):
    """The report of a dump: the table, the first stage out of tolerance, the attribution line."""
    from .printing import FIRST_MARKER, fmt

    where = f", tower `{report.config}`" if report.config else ""
    lines = [f"# Stage dump vs golden: case `{report.case}`{where}", "",
             f"Dump: `{report.dump or 'in memory'}`. Expected values: {report.source}. Errors are max|a - b| "
             "(max abs, mean abs) and max|a - b| / max|golden| (rel); each stage is judged at the tolerance of "
             "its dtype in the dump (`parity.dump`, from `goldenlib.tolerances`); image, index and integer "
             "stages are exact.", ""]
    for problem in report.problems:
        lines += [f"> cannot compare: {problem}", ""]
    for why in report.ignored:
        lines += [f"> not compared: {why}", ""]
    first = report.first_failure
    if report:
        lines += ["| stage | dump dtype | shape | max abs | mean abs | max rel | tolerance | verdict |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in report:
            stage, verdict = f"`{row.stage}`", "ok" if row.ok else "FAIL"
            if row is first:
                stage, verdict = f"**{stage}**", f"**FAIL {FIRST_MARKER}**"
            if row.order is not None:
                verdict += " (rows permuted)"
            dtype = row.dtype if row.judged_as == row.dtype or row.kind in EXACT_KINDS else \
                f"{row.dtype} (judged as {row.judged_as})"
            shape = "x".join(str(n) for n in row.shape) or "scalar"
            note = f" ({row.note})" if row.note else ""
            lines.append(f"| {stage} | {dtype} | {shape} | {fmt(row.max_abs)} | {fmt(row.mean_abs)} | "
                         f"{fmt(row.rel)} | {fmt(row.tol.accumulated)} | {verdict}{note} |")
        lines.append("")
    if first is None:
        lines.append("first stage out of tolerance: none" if report else "first stage out of tolerance: n/a")
    else:
        lines.append(f"first stage out of tolerance: {first.stage} (rel {fmt(first.rel)}, tolerance "
                     f"{fmt(first.tol.accumulated)}, {first.judged_as})")
    lines += [f"attribution: {report.attribution.line}", f"exit: {report.exit_code}"]
    return "\n".join(lines)


__all__ = ["DumpError", "DumpReport", "DumpRow", "DumpTensor", "compare_dump", "dump_markdown", "load_golden",
           "read_dump"]
