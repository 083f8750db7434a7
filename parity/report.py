"""Parity runs of a case, their attribution summary, and the report (markdown + plot).

Three kinds of run keep the contributions apart:

* interpolation only: a variant's ``pixel_values`` (``parity.variants``) through the NumPy
  reference in float64 - no precision loss, so every tower difference comes from the pixels;
* precision only: the golden ``pixel_values`` through the implementation at a dtype/device (its
  image stages come from the port's exact transform and must show 0.0);
* combined: a variant's ``pixel_values`` through the implementation at a dtype/device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .cases import IMAGE_STAGES, stage_key
from .implementations import ReferenceImplementation, cuda_available, load_implementation
from .stages import attribute, compare_stage, compare_tower, first_failure, is_image_stage, local_stages


@dataclass
class Run:
    kind: str  # "interpolation", "precision", "combined"
    variant: str  # interpolation variant ("exact" for the golden pixels)
    implementation: str  # "reference float64", "torch_port bfloat16 cpu", ...
    dtype: str
    device: str
    rows: list = field(default_factory=list)

    @property
    def title(self):
        if self.kind == "interpolation":
            return f"interpolation only: {self.variant} resize -> tower in {self.implementation}"
        if self.kind == "precision":
            return f"precision only: golden pixel_values -> {self.implementation}"
        return f"combined: {self.variant} resize -> {self.implementation}"

    def row(self, stage):
        return next((r for r in self.rows if r.stage == stage), None)

    @property
    def first_failure(self):
        return first_failure(self.rows)

    @property
    def attribution(self):
        return attribute(self.rows)


def image_rows(case, variant, dtype="float32"):
    """Rows for the image stages of ``case`` through interpolation ``variant``. Image stages are
    judged exactly whatever ``dtype`` (the table's image entries are 0 for every dtype)."""
    from .variants import run_variant

    accumulated, local, pixel_values, grid_thw = run_variant(variant, case)
    golden = case.expected_image_stages()
    n = case.n_images
    order = [stage_key(stage, i, n) for i in range(n) for stage in IMAGE_STAGES] + ["pixel_values", "image_grid_thw"]
    rows = []
    for stage in order:
        if stage not in golden or stage not in accumulated:
            continue  # e.g. the exact transform has no separate rescale stage, full_size_3b stores no image stages
        rows.append(compare_stage(stage, golden[stage], accumulated[stage], local.get(stage), dtype))
    return rows, pixel_values, grid_thw


class Session:
    """Runs of one case and tower config; implementations and variant pixels computed once."""

    def __init__(self, case, config_name, impl_spec=None, log=None):
        if config_name not in case.towers:
            raise ValueError(f"case {case.name} has no tower config {config_name!r}; it has {sorted(case.towers)}")
        self.case, self.config_name, self.impl_spec = case, config_name, impl_spec
        self.tower = case.towers[config_name]
        self.log = log or (lambda message: None)
        self.notes = []
        self._variants = {}

    def variant(self, name):
        """(image rows, pixel_values, grid_thw) of interpolation variant ``name`` (computed once)."""
        if name not in self._variants:
            self._variants[name] = image_rows(self.case, name)
        rows, pixel_values, grid_thw = self._variants[name]
        return list(rows), pixel_values, grid_thw

    def _exact_image_rows(self):
        return self.variant("exact")[0] if self.case.images else []

    def interpolation(self, variants):
        """Interpolation-only runs: each variant's pixels through the float64 reference."""
        if not variants:
            return []
        if not self.case.images:
            self.notes.append(f"case {self.case.name} has no input image: interpolation variants skipped")
            return []
        reference = ReferenceImplementation(self.tower.config, self.tower.weights(), "float64")
        runs = []
        for name in variants:
            self.log(f"interpolation {name}: reference float64")
            rows, pixel_values, grid_thw = self.variant(name)
            run = Run("interpolation", name, "reference float64", "float64", "cpu", rows)
            run.rows += compare_tower(reference, self.case, self.config_name, pixel_values, grid_thw)
            runs.append(run)
        return runs

    def precision(self, dtypes, devices, variants=()):
        """Precision-only runs (golden pixels), and combined runs for every non-exact variant."""
        runs = []
        combined = [v for v in variants if v != "exact"] if self.case.images else []
        for device in devices:
            for dtype in dtypes:
                self.log(f"precision {dtype} on {device}")
                impl = load_implementation(self.impl_spec, self.tower.config, self.tower.weights(), dtype, device)
                label = f"{impl.name} {dtype} {device}"
                try:
                    forced = local_stages(impl, self.tower, self.case.pixel_values, self.case.grid_thw)
                    run = Run("precision", "exact", label, dtype, device, self._exact_image_rows())
                    run.rows += compare_tower(impl, self.case, self.config_name, forced=forced)
                    runs.append(run)
                    for name in combined:
                        self.log(f"combined {name} + {dtype} on {device}")
                        rows, pixel_values, grid_thw = self.variant(name)
                        run = Run("combined", name, label, dtype, device, rows)
                        run.rows += compare_tower(impl, self.case, self.config_name, pixel_values, grid_thw,
                                                  forced=forced)  # local: the same golden inputs
                        runs.append(run)
                finally:
                    impl.close()
                    del impl
        return runs


def resolve_devices(devices):
    """Keep cpu; keep cuda only when available (noted otherwise)."""
    kept, notes = [], []
    for device in devices:
        if device == "cuda" and not cuda_available():
            notes.append("cuda requested but torch.cuda.is_available() is False: skipped")
            continue
        kept.append(device)
    return kept, notes


# ------------------------------------------------------------------ attribution summary


def _output_rel(run):
    row = run.row("output")
    return float("nan") if row is None else row.rel


def _pixel_stats(run):
    row = run.row("pixel_values")
    return (float("nan"), float("nan")) if row is None else (row.max_abs, row.mean_abs)


def _not_resized(run):
    """Whether every image of the run keeps its size (rgb and resized stages of equal shape)."""
    pairs = [(r, run.row(r.stage.replace("rgb", "resized", 1))) for r in run.rows if r.stage.split(".")[0] == "rgb"]
    return bool(pairs) and all(b is not None and a.shape[:2] == b.shape[:2] for a, b in pairs)


def attribution_lines(runs):
    """One line per run: where its difference comes from, and how big it is at the output."""
    lines = []
    interp = {r.variant: r for r in runs if r.kind == "interpolation"}
    prec = {(r.dtype, r.device): r for r in runs if r.kind == "precision"}
    for run in runs:
        first = run.first_failure
        where = "all stages within tolerance" if first is None else f"first stage out of tolerance: {first.stage}"
        if run.kind == "interpolation":
            pmax, pmean = _pixel_stats(run)
            cause = {"none": "no difference", "interpolation": "attributed to the resize/image stages",
                     "tower": "image stages exact; the tower differs"}[run.attribution]
            if run.variant != "exact" and _not_resized(run):
                cause += " (the input already has smart_resize's size: nothing is resized)"
            lines.append(f"- interpolation ({run.variant}): pixel_values max {pmax:.4g} mean {pmean:.4g} -> "
                         f"output rel {_output_rel(run):.3g} (tower in float64); {where}; {cause}")
        elif run.kind == "precision":
            image_exact = all(r.max_abs == 0 for r in run.rows if is_image_stage(r.stage))
            lines.append(f"- precision ({run.dtype}, {run.device}): output rel {_output_rel(run):.3g}; image stages "
                         f"{'exact (0.0)' if image_exact else 'NOT exact'}; {where} "
                         f"(judged against the {run.dtype} tolerances)")
        else:
            alone_i = interp.get(run.variant)
            alone_p = prec.get((run.dtype, run.device))
            parts = []
            if alone_i is not None:
                parts.append(f"interpolation alone {_output_rel(alone_i):.3g}")
            if alone_p is not None:
                parts.append(f"precision alone {_output_rel(alone_p):.3g}")
            pmax, pmean = _pixel_stats(run)
            lines.append(f"- combined ({run.variant} + {run.dtype}, {run.device}): pixel_values max {pmax:.4g} "
                         f"mean {pmean:.4g} -> output rel {_output_rel(run):.3g}"
                         + (f" ({', '.join(parts)})" if parts else "") + f"; {where}")
    return lines


# ------------------------------------------------------------------ the whole report


def build_runs(case, config_name, *, dtypes=("float32",), devices=("cpu",), variants=(), impl_spec=None, log=None):
    session = Session(case, config_name, impl_spec, log)
    devices, notes = resolve_devices(devices)
    runs = session.interpolation(variants)
    runs += session.precision(dtypes, devices, variants)
    return runs, notes + session.notes + case.notes


def report_markdown(case, config_name, runs, notes=()):
    from .printing import markdown_table

    intro = (f"Expected values: {case.source}. Errors are max|a - b| / max|golden| (rel); "
             "local = the stage fed the golden input of that stage (teacher forcing), accumulated = the whole "
             "pipeline run from the input. Tolerances: `goldenlib.tolerances.PARITY_TOLERANCES`.")
    lines = [f"# Parity report: case `{case.name}`, tower `{config_name}`", "", intro, ""]
    for note in notes:
        lines += [f"> {note}", ""]
    for run in runs:
        lines += [f"## {run.title}", "", markdown_table(run.rows), ""]
    lines += ["## Attribution", ""] + attribution_lines(runs) + [""]
    return "\n".join(lines)
