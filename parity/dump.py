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

Each float tower stage also gets a LOCAL error (``parity.local_verdicts``): the stage recomputed by the
reference in float64 from the dump's own input to it, judged at the dtype's local bound; a stage beyond
it differs on its own, and ``parity.hypotheses`` says why where a rounding (precision) or a named
formula change explains it. ``DumpReport.local_differences`` lists those stages.

Then the first stage out of tolerance (pipeline order) and one attribution line: ``geometry`` (a
resized image of another size, with bands, or cropped: ``parity.geometry``), ``interpolation`` (an
image stage: the resize, rescale/normalize, patchify), ``backend`` (the dump equals the same input's
golden on the other image backend), ``order`` (the stage holds the golden's rows permuted, or a window
block computed on unpermuted rows), ``precision`` (a rounding explains the stage's own difference),
``formula`` (nothing does: the computation differs), ``inherited`` (the stage is right for its own
input), ``tower`` (no local verdict: by size only), ``positions``, ``cannot compare``. Exit code: 0
every stage in the dump within tolerance, 1 otherwise (a stage that cannot be compared is a row with
its reason), 2 when no stage of the dump is comparable.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from goldenlib.local_stages import round_to
from goldenlib.stage_vocabulary import (EXACT_KINDS, IMAGE_PIPELINE, pipeline_order,
                                        split_tower, stage_kind)
from goldenlib.tolerances import HF_CROSSCHECK_BOUND, PARITY_TOLERANCES, Tol, abs_errors, text_rotary_bound

from . import geometry
from .dump_file import FLOAT_DTYPES, DumpError, DumpTensor, as_dump_tensor, read_dump
from .local_verdicts import add_lm_local_verdicts, add_local_verdicts
from .row_order import find_order
from .stages import StageRow

# Lower precisions, tightest first: what a silent cast would leave.
LOWER = {"float64": ("float32", "float16", "bfloat16"), "float32": ("float16", "bfloat16"), "float16": ("bfloat16",),
         "bfloat16": ()}
EXIT_OK, EXIT_FAIL, EXIT_CANNOT = 0, 1, 2
KNOWN_FORMATS = ("1", "2")  # golden format versions this reader understands (docs/golden-format.md)

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
    hf_errors: dict = field(default_factory=dict)  # stage -> HF's own float32 error there (metadata)
    model: object = None  # reference.ModelConfig of a whole-model golden
    model_weights: callable = None  # () -> (tower weights, language-model weights), or None: not at hand
    notes: list = field(default_factory=list)

    @property
    def max_position(self):
        """The largest text position of the case (0 without positions): the text rotary's bound grows with it."""
        positions = self.tensors.get("position_ids")
        return 0 if positions is None else int(np.max(positions))

    def tower_weights(self, tower):
        """A tower's weights nested as ``reference.vision`` takes them, or None when not at hand (the 3B
        tower's are regenerated per use: a minute; an own-checkpoint golden whose folder is gone)."""
        from goldenlib.cases import TOWERS
        from reference.vision import nest_weights

        if self.model is not None:
            weights = self.lm_weights()
            return None if weights is None else nest_weights(weights[0], self.towers[tower])
        if not TOWERS[tower].stored_weights:
            return None
        from .cases import tower_weights

        return nest_weights(tower_weights(tower), TOWERS[tower].config)

    def lm_weights(self):
        """(tower weights, language-model weights) of a whole-model golden, read once; None when not at hand."""
        if self.model_weights is None:
            return None
        if not hasattr(self, "_lm_weights"):
            self._lm_weights = self.model_weights()
        return self._lm_weights


def load_golden(name):
    """The expected tensors of case ``name`` under their golden names (sha256-verified), or of a golden
    file written by ``generate_golden.py --model`` (a path ending in ``.safetensors``)."""
    from goldenlib import store
    from goldenlib.cases import BY_NAME, SCENARIOS, TOWERS

    if str(name).endswith(".safetensors"):
        return load_golden_file(name)

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
    if registered.kind == "model":
        return _model_golden(name, tensors, meta, f"golden/{name}.safetensors")
    towers = {t: TOWERS[t].config for t in TOWERS if any(key.startswith(f"{t}.") for key in tensors)}
    backend = None
    if registered.kind == "image":
        backend = (meta.get("params") or registered.params).get("backend", "pil")
    golden = Golden(name, registered.kind, tensors, towers, f"golden/{name}.safetensors", backend,
                    hf_errors=dict(meta.get("hf_float32_error") or {}))
    if registered.kind == "tower" and registered.make is not None:  # full_size_3b: image stages rebuilt on use
        golden.rebuild = lambda: _rebuilt_image_stages(name)
    return golden


def _model_golden(name, tensors, meta, source, model_config=None, weights=None):
    """A whole-model golden: its towers (``visual``, ``visual_video``) and model, for the local verdicts."""
    from goldenlib.stage_vocabulary import MODEL_TOWERS

    if model_config is None:
        from goldenlib.model_folders import MODELS

        tiny = MODELS[meta["model"]]
        model_config, weights = tiny.config, tiny.weights
    towers = {t: model_config.vision for t in MODEL_TOWERS if any(key.startswith(f"{t}.") for key in tensors)}
    return Golden(name, "model", tensors, towers, source, hf_errors=dict(meta.get("hf_float32_error") or {}),
                  model=model_config, model_weights=weights)


def load_golden_file(path):
    """A golden written by ``generate_golden.py --model`` (not in golden/, not in the manifest): its
    tensors, and its checkpoint folder's weights for the local verdicts while the folder is there."""
    from goldenlib import store
    from goldenlib.shard_weights import ShardWeights
    from reference import ModelConfig, split_model_weights

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"golden file {path} does not exist")
    tensors, meta = store.read_case(path.stem, path.parent, verify=False)
    if meta.get("kind") != "model" or "config" not in meta:
        raise ValueError(f"{path} is not a golden of generate_golden.py --model (its metadata has no model config)")
    folder = Path(meta.get("checkpoint", ""))
    weights = (lambda: split_model_weights(ShardWeights(folder))) if (folder / "config.json").is_file() else None
    golden = _model_golden(path.name, tensors, meta, str(path), ModelConfig.from_dict(meta["config"]), weights)
    if weights is None:
        golden.notes.append(f"the checkpoint folder {folder} is not here: no local verdicts")
    return golden


def _rebuilt_image_stages(name):
    from .cases import load_case

    return load_case(name).expected_image_stages()


def stage_kind_of(base, tower):
    """The tolerance kind of an (unprefixed) golden stage; the image kind for what only a dump names
    (``input``)."""
    try:
        return stage_kind(base)
    except ValueError:
        if tower is not None:
            raise
        return "image"


def dump_order(names, towers):
    """Golden names in pipeline order (``goldenlib.stage_vocabulary``); ``towers``: {name: VisionConfig}."""
    return pipeline_order(names, {name: config.depth for name, config in towers.items()})


# ------------------------------------------------------------------ tolerances and rounding


def dump_tolerance(kind, dtype, max_position=0):
    """The accumulated bound for a stage of ``kind`` in a dump of ``dtype``, or None (no bound);
    ``max_position``: the case's largest text position (the text rotary's float32 error grows with it)."""
    if kind in EXACT_KINDS:
        return 0.0
    if kind == "text_rotary":
        return text_rotary_bound(dtype, max_position)
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
    problem: str | None = None  # why the stage cannot be compared (the row is then not ok)
    geometry: str | None = None  # an image of another geometry than HF's (parity.geometry), in words
    explanation: object = None  # parity.hypotheses.Explanation of a local difference, when one explains it

    @property
    def kind(self):
        return self.category

    @property
    def ok(self):
        return self.problem is None and self.geometry is None and super().ok

    @property
    def local_ok(self):
        return self.local is None or self.local <= self.tol.local

    @property
    def cause(self):
        """A local difference's cause in words: the explanation, or the formula nothing names."""
        if self.local_ok:
            return ""
        if self.explanation is not None:
            return self.explanation.line
        return "formula: no rounding of its inputs, weights or output to bfloat16 or float16 explains it"


@dataclass
class Attribution:
    kind: str  # none, interpolation, geometry, backend, order, precision, formula, inherited, tower, positions,
    line: str  # cannot compare


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
        """The first stage out of tolerance (pipeline order); a stage that cannot be compared only when
        every compared stage is within tolerance."""
        return next((row for row in self if not row.ok and row.problem is None),
                    next((row for row in self if row.problem is not None), None))

    @property
    def local_differences(self):
        """Every stage whose own (local) error is beyond its local tolerance, pipeline order."""
        return [row for row in self if row.problem is None and not row.local_ok]

    @property
    def compared(self):
        return [row for row in self if row.problem is None]

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
        if not self.compared:
            return EXIT_CANNOT
        return EXIT_FAIL if self.first_failure is not None else EXIT_OK


def _resolve(name, golden, config):
    """(golden name or None, why not) for dump tensor ``name``."""
    towers = golden.towers
    tower, base = split_tower(name, towers)
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


def _dedupe_bounds(values):
    """Segment bounds without repeats (HF's unique_consecutive): a port that keeps empty windows."""
    values = np.asarray(values)
    keep = np.concatenate([[True], values[1:] != values[:-1]]) if values.ndim == 1 and values.size else None
    return None if keep is None else values[keep]


def _problem_row(target, shape, dtype, judged, kind, problem, geometry=None):
    inf = float("inf")
    return DumpRow(target, tuple(shape), inf, inf, inf, None, Tol(0.0, 0.0), "", dtype=dtype, judged_as=judged,
                   category=kind, problem=None if geometry else problem, geometry=geometry)


def _geometry_of(golden, target, base, tensor):
    """The geometry phrase for an image stage of another shape (or with bands), or None."""
    root = base.split(".")[0]
    if root == "resized":
        return geometry.describe(tensor.values, golden.tensors[target])
    if root in ("pixel_values", "pixel_values_videos") and tensor.values.ndim == 2:
        grid = golden.tensors.get("image_grid_thw" if root == "pixel_values" else "video_grid_thw")
        return geometry.describe_patches(tensor.shape, golden.tensors[target].shape,
                                         None if grid is None else grid.tolist())
    if root in ("image_grid_thw", "video_grid_thw"):
        return (f"another size: grid {tensor.values.astype(np.int64).tolist()} where HF's is "
                f"{golden.tensors[target].tolist()} (smart_resize's size)")
    if root in IMAGE_PIPELINE:
        return (f"another size: {list(tensor.shape)} where HF's `{base}` is {list(golden.tensors[target].shape)}")
    return None


def _compare_stage(golden, target, name, tensor, dtype):
    """One dump tensor against its golden stage: a :class:`DumpRow` (a problem row when it cannot be compared)."""
    tower, base = split_tower(target, golden.towers)
    kind = stage_kind_of(base, tower)
    expected = np.asarray(golden.tensors[target], dtype=np.float64)
    judged = dtype if (dtype is not None and kind not in EXACT_KINDS) else tensor.dtype
    if kind not in EXACT_KINDS and not tensor.is_float:
        return _problem_row(target, expected.shape, tensor.dtype, judged, kind,
                            f"dtype {tensor.dtype}; a float stage needs a float dtype")
    bound = dump_tolerance(kind, judged, golden.max_position)
    if bound is None:
        return _problem_row(target, expected.shape, tensor.dtype, judged, kind,
                            f"no tolerance for a {kind} stage in {judged}")
    values = _fit_shape(tensor.values, expected.shape)
    note = "" if values is None or values.shape == tensor.shape else \
        f"read {list(tensor.shape)} as {list(expected.shape)}"
    if values is None and base == "cu_window_seqlens":
        deduped = _dedupe_bounds(tensor.values)
        if deduped is not None and deduped.shape == expected.shape:
            values = deduped
            note = (f"{tensor.values.size - deduped.size} repeated bound(s) removed before comparing: HF removes "
                    "them (unique_consecutive); the empty windows they mark change nothing")
    if values is None:
        if kind == "image":
            shape_geometry = _geometry_of(golden, target, base, tensor)
            if shape_geometry is not None:
                return _problem_row(target, tensor.shape, tensor.dtype, judged, kind, None, geometry=shape_geometry)
        return _problem_row(target, expected.shape, tensor.dtype, judged, kind,
                            f"shape {list(tensor.shape)}, the golden's is {list(expected.shape)}: cannot compare")
    if kind in EXACT_KINDS and tensor.dtype in ("float32", "float16", "bfloat16") \
            and golden.tensors[target].dtype.kind == "f" and tensor.dtype != str(golden.tensors[target].dtype):
        expected = round_to(expected, tensor.dtype)
        note = "; ".join(filter(None, [note, f"against the golden rounded to {tensor.dtype}"]))
    max_abs, mean_abs, rel = abs_errors(values, expected)
    row = DumpRow(target, expected.shape, max_abs, mean_abs, rel, None, Tol(bound, bound), note,
                  dtype=tensor.dtype, judged_as=judged, category=kind)
    if not row.ok and base.split(".")[0] == "resized":
        source = golden.tensors.get("rgb" + base[len("resized"):])
        row.geometry = geometry.describe(values, golden.tensors[target], source)
    if not row.ok and values.ndim == 2:
        window_index = golden.tensors.get(f"{tower}.window_index") if tower else None
        grid = golden.tensors.get("image_grid_thw", golden.tensors.get("video_grid_thw"))
        row.order = find_order(base, values, expected, order_bound(kind, bound, tensor.dtype),
                               window_index=window_index, grid_thw=grid)
    row.values = values  # kept for the local verdicts and the attribution (not printed)
    return row


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
        if target is None and golden.rebuild is not None and split_tower(name, golden.towers)[0] is None \
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
    for target in dump_order(list(by_target), golden.towers):
        row = _compare_stage(golden, target, by_target[target], dump[by_target[target]], dtype)
        if row.problem is not None:
            problems.append(f"{by_target[target]}: {row.problem}")
        rows.append(row)
    add_local_verdicts(rows, golden, golden.tower_weights)
    weights = golden.lm_weights() if golden.model is not None else None
    add_lm_local_verdicts(rows, golden, None if weights is None else (golden.model, weights[1]))
    report = DumpReport(case, config, rows, problems=problems, ignored=ignored, notes=golden.notes,
                        source=golden.source, dump=source)
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

    tower, base = split_tower(first.stage, golden.towers)
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
    if not report.compared:
        return Attribution("none", "nothing compared: " + ("; ".join(report.problems + report.ignored) or
                                                           "the dump is empty"))
    if first is None:
        return Attribution("none", f"all {len(report)} stages in the dump within tolerance "
                                   f"({_image_state(report)}; each judged at its dtype's tolerance)")
    if first.problem is not None:
        return Attribution("cannot compare", f"cannot compare: `{first.stage}`: {first.problem}; every stage that "
                                             f"could be compared ({len(report.compared)}) is within tolerance")
    if first.geometry is not None:
        return Attribution("geometry", f"geometry: `{first.stage}`: {first.geometry}")
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
    if first.kind == "positions" or first.kind == "text_rotary" and first.local is None:
        hint = ""
        if first.stage.split(".")[0] in ("position_ids", "deltas") and "video_grid_thw" in golden.tensors:
            hint = ("; after a video, transformers 5.x starts the next text at the run's start + max(h, w) / 2, "
                    "4.x at the largest position + 1 (docs/porting.md)")
        return Attribution("positions", f"positions: `{first.stage}` differs from HF 5.x ({size}){hint}")
    tower, base = split_tower(first.stage, golden.towers)
    if first.local is not None and tower is None:  # the language model, the text rotary
        return _attribute_locally(report, golden, first, None, first.stage, size)
    if first.local is not None:
        return _attribute_locally(report, golden, first, tower, base, size)
    return _attribute_by_magnitude(report, golden, first, tower, base, size)


def _attribute_locally(report, golden, first, tower, base, size):
    """A float tower stage with a local verdict: its own difference explained, or inherited from upstream."""
    local = f"local rel {first.local:.3g}, local tolerance {first.tol.local:.2g}"
    if first.local_ok:
        from goldenlib.local_lm_stages import lm_stage_inputs
        from goldenlib.local_stages import stage_inputs

        needed = (stage_inputs(base, golden.towers[tower].depth) if tower is not None else
                  lm_stage_inputs(base, golden.model.text.num_hidden_layers))
        inputs = ", ".join(f"`{name}`" for name in needed)
        return Attribution("inherited", f"inherited: `{first.stage}` ({size}) is right for its own input ({local}): "
                                        f"the difference comes from upstream ({inputs}, or what came before them "
                                        f"outside the dump); {_image_state(report)}")
    explanation = first.explanation
    if explanation is not None and explanation.kind == "order" and tower is not None:
        block = base.split(".")[1]
        return Attribution("order", f"order: `{first.stage}` ({size}) is what block {block} gives when its "
                                    "window segments are applied to rows left in merge-block order (no window_index "
                                    "permutation before block 0): the window order; an order mistake, not a "
                                    "precision one")
    hf_error = golden.hf_errors.get(first.stage)
    hf_text = f", HF's own float32 error here {hf_error:.2g}" if hf_error is not None else ""
    if explanation is not None and explanation.kind == "precision":
        return Attribution("precision", f"precision: `{first.stage}` differs on its own ({local}), and "
                                        f"{explanation.what} explains it (residual {explanation.residual:.2g}"
                                        f"{hf_text}): computed right, in lower precision than the {first.judged_as} "
                                        f"it is judged as; {_image_state(report)}")
    if explanation is not None and explanation.kind == "positions":
        return Attribution("positions", f"positions: `{first.stage}` differs on its own ({local}): "
                                        f"{explanation.what} explains it (residual {explanation.residual:.2g})")
    if explanation is not None and explanation.kind == "order":
        return Attribution("order", f"order: `{first.stage}` ({size}): {explanation.what} explains it (residual "
                                    f"{explanation.residual:.2g}); an order mistake, not a precision one")
    hint = _tower_hint(report, golden, tower, base) if tower is not None else LM_HINTS.get(
        stage_kind(base), f"the stage {base}")
    if explanation is not None:
        return Attribution("formula", f"formula: `{first.stage}` differs on its own ({local}) and no rounding of its "
                                      f"inputs, weights or output to bfloat16 or float16 explains it; "
                                      f"{explanation.what} does (residual {explanation.residual:.2g}{hf_text}); "
                                      f"look at {hint}")
    return Attribution("formula", f"formula: `{first.stage}` differs on its own ({local}, {size}) and no rounding of "
                                  "its inputs, weights, operands or output to bfloat16 or float16 explains it: the "
                                  "computation differs (an eps, an activation approximation, a scaling, a missing "
                                  f"term); look at {hint}")


def _attribute_by_magnitude(report, golden, first, tower, base, size):
    """A tower stage without a local verdict (grid-only stages, towers whose weights are not stored):
    what its size and the golden's tables say."""
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
    for low in LOWER.get(first.judged_as, ()):
        low_bound = dump_tolerance(first.kind, low)
        if low_bound is not None and first.rel <= low_bound:
            return Attribution("precision", f"precision?: `{first.stage}` is off by rel {first.rel:.3g}, beyond the "
                                            f"{first.judged_as} tolerance ({first.tol.accumulated:.2g}) but within "
                                            f"the {low} one ({low_bound:.2g}); judged by size only (no local "
                                            f"verdict for this stage): a lower precision, or a small formula "
                                            f"difference; {_image_state(report)}")
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
    within the loosest precision's bound: ``goldenlib.local_stages``'s window-order variant, on the
    tower's weights (regenerated when not stored: a magnitude-only verdict has no local one to reuse)."""
    parts = base.split(".")
    if len(parts) != 3 or parts[0] != "blocks" or parts[2] != "attn_residual":
        return False
    config = golden.towers[tower]
    if int(parts[1]) in config.fullatt_block_indexes:
        return False
    from goldenlib.local_stages import Variant, recompute, stage_inputs
    from reference.vision import nest_weights

    from .cases import tower_weights

    inputs = {name: golden.tensors.get(f"{tower}.{name}") for name in stage_inputs(base, config.depth)}
    if any(value is None for value in inputs.values()):
        return False
    grid = golden.tensors.get("video_grid_thw", golden.tensors.get("image_grid_thw"))
    expected = recompute(base, inputs, nest_weights(tower_weights(tower), config), config, grid,
                         Variant(window_order=False))
    return abs_errors(first.values, expected)[2] <= order_bound(first.kind, 0.0, first.dtype)


# Where each language-model stage's own computation can go wrong (docs/spec.md, the language side).
LM_HINTS = {
    "text_rotary": "the text rotary: inv_freq, mrope_section (which frequencies take t, h, w), position rows",
    "lm_embeds": "the token embedding and the scatter of the vision rows into the placeholder rows (row-major "
                 "over the batch)",
    "lm_attn_residual": "the layer's attention half: RMSNorm (eps), q/k/v with biases, the multimodal rotary on q "
                        "and k, grouped-query heads, the causal mask",
    "lm_layer_output": "the layer's MLP half (gate/up/down without biases, silu) or its RMSNorm (eps)",
    "lm_norm": "the final RMSNorm (eps from the config)",
    "lm_logits": "lm_head (embed_tokens when tie_word_embeddings)",
}


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
    """The report of a dump: the table (accumulated and local verdicts), the first stage out of
    tolerance, the attribution line, the local differences and their causes, the exit code."""
    from .printing import FIRST_MARKER, fmt

    where = f", tower `{report.config}`" if report.config else ""
    lines = [f"# Stage dump vs golden: case `{report.case}`{where}", "",
             f"Dump: `{report.dump or 'in memory'}`. Expected values: {report.source}. Errors are max|a - b| "
             "(max abs, mean abs) and max|a - b| / max|golden| (rel); each stage is judged at the tolerance of "
             "its dtype in the dump (`parity.dump`, from `goldenlib.tolerances`); image, index and integer "
             "stages are exact. Local: the stage recomputed by the reference in float64 from the dump's own "
             "input to it (its own difference, whatever came before).", ""]
    for why in report.ignored:
        lines += [f"> not compared: {why}", ""]
    first = report.first_failure
    if report:
        lines += ["| stage | dump dtype | shape | max abs | mean abs | max rel | tolerance | verdict | local rel | "
                  "local tolerance | local verdict |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in report:
            stage = f"`{row.stage}`"
            if row.problem is not None:
                verdict = f"cannot compare: {row.problem}"
            elif row.geometry is not None:
                verdict = "FAIL (geometry)"
            else:
                verdict = "ok" if row.rel <= row.tol.accumulated else "FAIL"
            if row is first:
                stage, verdict = f"**{stage}**", f"**{verdict} {FIRST_MARKER}**"
            if row.order is not None:
                verdict += " (rows permuted)"
            dtype = row.dtype if row.judged_as == row.dtype or row.kind in EXACT_KINDS else \
                f"{row.dtype} (judged as {row.judged_as})"
            shape = "x".join(str(n) for n in row.shape) or "scalar"
            note = f" ({row.note})" if row.note else ""
            local = "" if row.local is None else ("ok" if row.local_ok else "FAIL: " + row.cause)
            lines.append(f"| {stage} | {dtype} | {shape} | {fmt(row.max_abs)} | {fmt(row.mean_abs)} | "
                         f"{fmt(row.rel)} | {fmt(row.tol.accumulated)} | {verdict}{note} | {fmt(row.local)} | "
                         f"{fmt(row.tol.local) if row.local is not None else 'n/a'} | {local} |")
        lines.append("")
    if first is None:
        lines.append("first stage out of tolerance: none" if report.compared else "first stage out of tolerance: n/a")
    else:
        lines.append(f"first stage out of tolerance: {first.stage} (rel {fmt(first.rel)}, tolerance "
                     f"{fmt(first.tol.accumulated)}, {first.judged_as})")
    lines.append(f"attribution: {report.attribution.line}")
    differences = report.local_differences
    lines.append("local differences: " + (", ".join(row.stage for row in differences) or "none"))
    for row in differences:
        lines.append(f"- `{row.stage}`: local rel {fmt(row.local)} > {fmt(row.tol.local)}: {row.cause}")
    lines.append(f"exit: {report.exit_code}")
    return "\n".join(lines)


__all__ = ["DumpError", "DumpReport", "DumpRow", "DumpTensor", "compare_dump", "dump_markdown", "load_golden",
           "read_dump"]
