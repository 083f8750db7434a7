"""Parity runs of a case, their attribution summary, and the report (markdown + plot).

Three kinds of run keep the contributions apart:

* interpolation only: a variant's ``pixel_values`` (``parity.variants``) through the NumPy
  reference in float64 - no precision loss, so every tower difference comes from the pixels;
* precision only: the golden ``pixel_values`` through the implementation at a dtype/device (its
  image stages come from the port's exact transform and must show 0.0);
* combined: a variant's ``pixel_values`` through the implementation at a dtype/device.

A variant on the other image backend than the golden's (``torchvision`` on a PIL golden, ``pil``
on a torchvision one) differs by design: its difference is attributed as ``BACKEND_DIFFERENCE``
with its measured size, and the variant is judged exactly against its OWN golden (the same input
stored on its backend, ``parity.cases.backend_twin``) in an ``own_golden`` run.
A case without towers (``tv_*``) has image-stage runs only; a video case runs the port's video
transform (``parity.video``) where an image case runs its image stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from goldenlib.stage_vocabulary import IMAGE_STAGES

from .cases import backend_twin, load_case, stage_key
from .implementations import ReferenceImplementation, cuda_available, load_implementation
from .stages import attribute, compare_stage, compare_tower, first_failure, is_image_stage, local_stages

# The name under which a PIL-vs-torchvision difference is reported (either direction).
BACKEND_DIFFERENCE = "backend: torchvision vs PIL resize"
BACKEND_NAMES = {"pil": "PIL", "torchvision": "torchvision"}


@dataclass
class Run:
    kind: str  # "interpolation", "precision", "combined", "own_golden"
    variant: str  # interpolation variant ("exact" for the golden pixels)
    implementation: str  # "reference float64", "torch_port bfloat16 cpu", "" (image stages only)
    dtype: str
    device: str
    rows: list = field(default_factory=list)
    backend: str | None = None  # the variant's image backend (None: float, bilinear)
    golden_backend: str | None = None  # the backend of the golden it is judged against
    golden: str = ""  # own_golden runs: the golden case it is judged against
    video: bool = False  # a video case: the variant is the port's video transform

    @property
    def title(self):
        step = "the port's video transform" if self.video else f"{self.variant} resize"
        if self.kind == "own_golden":
            return f"{step} vs its own golden `{self.golden}` (exact expected)"
        if self.kind == "interpolation":
            if not self.implementation:
                return f"image stages only: {step} (no tower golden on this case)"
            return f"interpolation only: {step} -> tower in {self.implementation}"
        if self.kind == "precision":
            return f"precision only: golden pixel_values -> {self.implementation}"
        return f"combined: {step} -> {self.implementation}"

    @property
    def backend_difference(self):
        """Whether the run's variant is on another image backend than the golden it is judged against."""
        return None not in (self.backend, self.golden_backend) and self.backend != self.golden_backend

    def row(self, stage):
        return next((r for r in self.rows if r.stage == stage), None)

    @property
    def first_failure(self):
        return first_failure(self.rows)

    @property
    def attribution(self):
        """attribute(rows), except "backend" where an image stage differs because the backends differ."""
        where = attribute(self.rows)
        return "backend" if where == "interpolation" and self.backend_difference else where


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
    """Runs of one case and tower config (None: a case without towers, image stages only);
    implementations and variant pixels computed once."""

    def __init__(self, case, config_name, impl_spec=None, log=None):
        if config_name is None and case.towers:
            raise ValueError(f"case {case.name} has tower configs {sorted(case.towers)}: name one")
        if config_name is not None and config_name not in case.towers:
            raise ValueError(f"case {case.name} has no tower config {config_name!r}; it has {sorted(case.towers)}")
        self.case, self.config_name, self.impl_spec = case, config_name, impl_spec
        self.tower = case.towers.get(config_name)
        self.log = log or (lambda message: None)
        self.notes = []
        self._variants = {}

    def _note(self, message):
        if message not in self.notes:
            self.notes.append(message)

    def variant(self, name):
        """(image rows, pixel_values, grid_thw) of interpolation variant ``name`` (computed once);
        on a video case only ``exact``: the port's video transform."""
        if name not in self._variants:
            if self.case.video is not None:
                from .video import video_rows

                self._variants[name] = video_rows(self.case)
            else:
                self._variants[name] = image_rows(self.case, name)
        rows, pixel_values, grid_thw = self._variants[name]
        return list(rows), pixel_values, grid_thw

    def _exact_image_rows(self):
        return self.variant("exact")[0] if self.case.images or self.case.video is not None else []

    def _runs_variants(self, variants):
        """The variants this case can run (images: all; video: exact; neither: none), with notes."""
        if not variants:
            return []
        if self.case.video is not None:
            skipped = [v for v in variants if v != "exact"]
            if skipped:
                self._note(f"video case {self.case.name}: only the exact variant (the port's video "
                                  f"transform) runs; {', '.join(skipped)} skipped")
            return [v for v in variants if v == "exact"]
        if not self.case.images:
            self._note(f"case {self.case.name} has no input image: interpolation variants skipped")
            return []
        return list(variants)

    def _run(self, kind, name, implementation, dtype, device, rows):
        from .variants import variant_backend

        return Run(kind, name, implementation, dtype, device, rows,
                   backend=None if self.case.video is not None else variant_backend(name, self.case),
                   golden_backend=self.case.backend, video=self.case.video is not None)

    def own_golden(self, name):
        """Variant ``name`` judged against the golden of the same input on its own backend, when the
        case's golden is on the other one (None otherwise, with a note when no such golden is stored)."""
        run = self._run("own_golden", name, "", "float32", "cpu", [])
        if not run.backend_difference:
            return None
        twin = backend_twin(self.case.name, run.backend) if self.case.name in _registry_names() else None
        if twin is None:
            self._note(f"no stored {BACKEND_NAMES[run.backend]}-backend golden of {self.case.name}'s input: "
                              f"the {name} variant is not judged against its own golden")
            return None
        self.log(f"{name}: against its own golden {twin}")
        run.rows, _, _ = image_rows(load_case(twin), name)
        run.golden, run.golden_backend = twin, run.backend
        return run

    def interpolation(self, variants):
        """Interpolation-only runs: each variant's pixels through the float64 reference (image
        stages only without a tower), then each other-backend variant against its own golden."""
        variants = self._runs_variants(variants)
        reference = None
        if variants and self.tower is not None:
            reference = ReferenceImplementation(self.tower.config, self.tower.weights(), "float64")
        runs = []
        for name in variants:
            self.log(f"interpolation {name}: " + ("reference float64" if reference else "image stages"))
            rows, pixel_values, grid_thw = self.variant(name)
            run = self._run("interpolation", name, "reference float64" if reference else "", "float64", "cpu", rows)
            if reference is not None:
                run.rows += compare_tower(reference, self.case, self.config_name, pixel_values, grid_thw)
            runs.append(run)
        runs += [run for run in map(self.own_golden, variants) if run is not None]
        return runs

    def precision(self, dtypes, devices, variants=()):
        """Precision-only runs (golden pixels), and combined runs for every non-exact variant."""
        if self.tower is None:
            if dtypes:
                self._note(f"case {self.case.name} stores no tower: precision runs skipped (the tower on "
                                  "these pixels: run the same input's PIL golden with this variant)")
            return []
        runs = []
        combined = [v for v in self._runs_variants(variants) if v != "exact"]
        for device in devices:
            for dtype in dtypes:
                self.log(f"precision {dtype} on {device}")
                impl = load_implementation(self.impl_spec, self.tower.config, self.tower.weights(), dtype, device)
                label = f"{impl.name} {dtype} {device}"
                try:
                    forced = local_stages(impl, self.tower, self.case.pixel_values, self.case.grid_thw)
                    run = self._run("precision", "exact", label, dtype, device, self._exact_image_rows())
                    run.rows += compare_tower(impl, self.case, self.config_name, forced=forced)
                    runs.append(run)
                    for name in combined:
                        self.log(f"combined {name} + {dtype} on {device}")
                        rows, pixel_values, grid_thw = self.variant(name)
                        run = self._run("combined", name, label, dtype, device, rows)
                        run.rows += compare_tower(impl, self.case, self.config_name, pixel_values, grid_thw,
                                                  forced=forced)  # local: the same golden inputs
                        runs.append(run)
                finally:
                    impl.close()
                    del impl
        return runs


def _registry_names():
    from goldenlib.cases import BY_NAME

    return BY_NAME


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
    row = run.row("pixel_values") or run.row("pixel_values_videos")
    return (float("nan"), float("nan")) if row is None else (row.max_abs, row.mean_abs)


def _not_resized(run):
    """Whether every image of the run keeps its size (rgb and resized stages of equal shape)."""
    pairs = [(r, run.row(r.stage.replace("rgb", "resized", 1))) for r in run.rows if r.stage.split(".")[0] == "rgb"]
    return bool(pairs) and all(b is not None and a.shape[:2] == b.shape[:2] for a, b in pairs)


def _backend_text(run):
    """The named backend difference of ``run`` and its direction."""
    return (f"{BACKEND_DIFFERENCE} (variant on {BACKEND_NAMES[run.backend]}, golden on "
            f"{BACKEND_NAMES[run.golden_backend]}): HF's two processors differ by design, not an error of the resize")


def attribution_lines(runs):
    """One line per run: where its difference comes from, and how big it is at the output."""
    lines = []
    interp = {r.variant: r for r in runs if r.kind == "interpolation"}
    prec = {(r.dtype, r.device): r for r in runs if r.kind == "precision"}
    for run in runs:
        first = run.first_failure
        where = "all stages within tolerance" if first is None else f"first stage out of tolerance: {first.stage}"
        pmax, pmean = _pixel_stats(run)
        tower = f" -> output rel {_output_rel(run):.3g} (tower in float64)" if run.row("output") else ""
        if run.kind == "own_golden":
            verdict = ("exact (0.0 at every image stage)" if first is None else
                       f"NOT exact: {where} (max abs {first.max_abs:.4g}): the {run.variant} variant or the port "
                       "is wrong")
            lines.append(f"- {run.variant} vs its own golden {run.golden}: {verdict}")
        elif run.kind == "interpolation":
            cause = {"none": "no difference", "interpolation": "attributed to the resize/image stages",
                     "tower": "image stages exact; the tower differs",
                     "backend": _backend_text(run) if run.backend_difference else ""}[run.attribution]
            if run.variant != "exact" and _not_resized(run):
                cause += " (the input already has smart_resize's size: nothing is resized)"
            lines.append(f"- interpolation ({run.variant}): pixel_values max {pmax:.4g} mean {pmean:.4g}{tower}; "
                         f"{where}; {cause}")
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
            lines.append(f"- combined ({run.variant} + {run.dtype}, {run.device}): pixel_values max {pmax:.4g} "
                         f"mean {pmean:.4g} -> output rel {_output_rel(run):.3g}"
                         + (f" ({', '.join(parts)})" if parts else "") + f"; {where}"
                         + (f"; {BACKEND_DIFFERENCE}" if run.attribution == "backend" else ""))
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
    backend = f", {BACKEND_NAMES[case.backend]} backend" if case.backend else ""
    tower = f"tower `{config_name}`" if config_name else "no tower stored"
    lines = [f"# Parity report: case `{case.name}`{backend}, {tower}", "", intro, ""]
    for note in notes:
        lines += [f"> {note}", ""]
    for run in runs:
        lines += [f"## {run.title}", "", markdown_table(run.rows), ""]
    lines += ["## Attribution", ""] + attribution_lines(runs) + [""]
    return "\n".join(lines)
