"""The drift report of ``generate_golden.py --check``: recomputed cases against the stored goldens.

* Stages are listed in pipeline order (``goldenlib.stage_vocabulary``): the image stages image by
  image, the processor's outputs, the positions stages, then each tower (``TOWERS`` order) in its
  trace order.
* A drifted stage is LOCAL when the stage, recomputed from the golden's own upstream stage
  (teacher forcing: ``goldenlib.local_stages`` for the towers), still differs from the golden; it
  is INHERITED when that recomputation reproduces the golden: the stage is fine and only carries a
  drift from upstream. The first drift (per case and overall) is the first drifted row in order.
* The header lists the library versions that changed since the goldens were written (each
  golden's ``versions`` metadata, else the manifest's) and which cases each change can touch,
  derived from the case registry's kinds (:func:`touched_cases`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from . import store
from .cases import BY_NAME, TOWERS, weights_case_name
from .stage_vocabulary import IMAGE_PIPELINE, PROCESSOR_OUTPUTS, pipeline_order, tower_depths
from .stage_vocabulary import pipeline_rank as stage_rank
from .tolerances import DRIFT_BOUNDS, rel_error

# second_per_grid_ts: a positions case's float input, stored as given.
EXACT_STAGES = IMAGE_PIPELINE + PROCESSOR_OUTPUTS
WEIGHTS_CASES = tuple(weights_case_name(tower) for tower, spec in TOWERS.items() if spec.stored_weights)
VERSION_KEYS = ("numpy", "pillow", "torch", "torchvision", "transformers", "safetensors", "openblas_kernel")


@dataclass
class DriftRow:
    case: str
    stage: str
    kind: str  # "exact", "float32", "float64"; or what is wrong with the file: "missing", "stale", ...
    max_abs: float
    rel: float
    bound: float
    ok: bool
    origin: str = ""  # for a drifted stage: "local" or "inherited" (from an upstream drift)


def drift_bound(stage, value, case=None):
    """Which bound applies: image and integer stages are exact, and so is every tensor of a weights
    file (seeded: no arithmetic between the generator and the bits); tower stages by stored dtype."""
    value = np.asarray(value)
    if (not np.issubdtype(value.dtype, np.floating) or stage.split(".")[0] in EXACT_STAGES
            or case in WEIGHTS_CASES):
        return "exact"
    return "float32" if value.dtype == np.float32 else "float64"


def compare_case(name, tensors, stored):
    """Rows of recomputed ``tensors`` against the ``stored`` ones of case ``name``, in pipeline order:
    a stage missing on either side, or whose dtype or shape differs, is a failed row; exact stages
    must be equal, float stages within their ``DRIFT_BOUNDS``."""
    rows = []
    for stage in stage_order(name, set(stored) | set(tensors)):
        if stage not in stored or stage not in tensors:
            rows.append(DriftRow(name, stage, "missing" if stage not in stored else "extra", float("inf"),
                                 float("inf"), 0.0, False))
            continue
        kind = drift_bound(stage, stored[stage], name)
        new, old = np.asarray(tensors[stage]), stored[stage]
        if new.dtype != old.dtype or new.shape != old.shape:
            rows.append(DriftRow(name, stage, "dtype" if new.dtype != old.dtype else "shape", float("inf"),
                                 float("inf"), 0.0, False))
            continue
        diff = np.abs(new.astype(np.float64) - old.astype(np.float64))
        max_abs = float(diff.max()) if diff.size else 0.0
        if kind == "exact":  # bit for bit (NaN payloads and signed zeros included)
            same = new.tobytes() == old.tobytes()
            rows.append(DriftRow(name, stage, kind, max_abs, 0.0 if same else rel_error(new, old), 0.0, same))
            continue
        rel = rel_error(new, old)
        bound = DRIFT_BOUNDS[kind]
        rows.append(DriftRow(name, stage, kind, max_abs, rel, bound, rel <= bound))
    return rows


# ------------------------------------------------------------------ pipeline order


def stage_order(name, stages):
    """The stage names ``stages`` of case ``name`` in pipeline order (``goldenlib.stage_vocabulary``;
    unknown names last, sorted)."""
    return pipeline_order(list(set(stages)))


def pipeline_rank(row):
    """Where ``row``'s stage sits in the pipeline, comparable across cases: file problems first, then
    the vocabulary's order."""
    if row.stage.startswith("("):
        return (0,)
    return (1,) + stage_rank(row.stage, tower_depths([row.stage]))


# ------------------------------------------------------------------ teacher forcing


def _image_local(stored, stage):
    """An image stage recomputed by the reference from the golden's own previous stage (None: none)."""
    import reference
    from reference.preprocess import normalize, patchify, rescale

    base, _, index = stage.partition(".")
    suffix = f".{index}" if index else ""
    if base == "rgb" and "input" + suffix in stored:
        return reference.to_rgb(stored["input" + suffix])
    if base == "resized" and "rgb" + suffix in stored:
        height, width = stored[stage].shape[:2]
        return reference.resize_bicubic(stored["rgb" + suffix], height, width)
    if base == "rescaled" and "resized" + suffix in stored:
        return rescale(stored["resized" + suffix].transpose(2, 0, 1))
    if base == "normalized" and "rescaled" + suffix in stored:
        return normalize(stored["rescaled" + suffix], reference.OPENAI_CLIP_MEAN, reference.OPENAI_CLIP_STD)
    if base in ("pixel_values", "image_grid_thw"):
        images = [k for k in stored if k == "normalized" or k.startswith("normalized.")]
        if not images:
            return None
        images.sort(key=lambda k: int(k.split(".")[1]) if "." in k else 0)
        parts = [patchify(stored[k]) for k in images]
        if base == "pixel_values":
            return np.concatenate([p[0] for p in parts])
        return np.array([[1, gh, gw] for _, gh, gw in parts], dtype=np.int64)
    return None


def _tower_local(name, stored, tower, weights_of):
    """{stage: value} of tower ``tower`` fed the golden's own stage inputs (``goldenlib.local_stages``)."""
    from reference.vision import nest_weights

    from .local_stages import tower_local

    prefix = tower + "."
    stages = {k[len(prefix):]: v for k, v in stored.items() if k.startswith(prefix)}
    config = TOWERS[tower].config
    video = "pixel_values_videos" in stored  # a video case: the towers ran on the video grid
    local = tower_local(stages, stored["pixel_values_videos" if video else "pixel_values"],
                        stored["video_grid_thw" if video else "image_grid_thw"],
                        nest_weights(weights_of(tower), config), config)
    return {prefix + k: v for k, v in local.items()}


def _positions_local(name, stored, stage):
    """position_ids / deltas from the golden's expanded ids and token types; cos/sin from its position_ids."""
    import reference

    from .cases import POSITION_PARAMS, ROTARY

    inputs = BY_NAME[name].inputs()
    if stage in ("mrope_cos", "mrope_sin") and "position_ids" in stored:
        cos, sin = reference.mrope_cos_sin(stored["position_ids"], ROTARY["head_dim"], ROTARY["mrope_section"],
                                           theta=ROTARY["rope_theta"], dtype=np.float64)
        return cos if stage == "mrope_cos" else sin
    if stage in ("position_ids", "deltas") and {"expanded_input_ids", "mm_token_type_ids"} <= set(stored):
        position_ids, deltas = reference.rope_index(
            stored["expanded_input_ids"], stored["mm_token_type_ids"], inputs.image_grid_thw, inputs.video_grid_thw,
            inputs.second_per_grid_ts, inputs.attention_mask, spatial_merge_size=POSITION_PARAMS["spatial_merge_size"],
            tokens_per_second=POSITION_PARAMS["tokens_per_second"])
        return np.asarray(position_ids if stage == "position_ids" else deltas)
    return None


def mark_origins(rows, stored_of, weights_of):
    """Set ``origin`` of every drifted stage row: "inherited" when the stage recomputed from the
    golden's own upstream stage is within its bound, else "local"."""
    towers_done = {}
    for row in rows:
        if row.ok or row.stage.startswith("("):
            continue
        stored = stored_of(row.case)
        local, tower = None, row.stage.split(".")[0]
        case = BY_NAME.get(row.case)
        if tower in TOWERS and case is not None and case.kind != "weights":
            if (row.case, tower) not in towers_done:
                towers_done[(row.case, tower)] = _tower_local(row.case, stored, tower, weights_of)
            local = towers_done[(row.case, tower)].get(row.stage)
        elif case is not None and case.kind == "positions":
            local = _positions_local(row.case, stored, row.stage)
        else:
            local = _image_local(stored, row.stage)
        row.origin = "local" if local is None or not _within(local, stored[row.stage], row) else "inherited"
    return rows


def _within(value, expected, row):
    value = np.asarray(value)
    if value.shape != expected.shape:
        return False
    value = value.astype(expected.dtype)
    if row.kind == "exact":
        return np.array_equal(value, expected)
    return rel_error(value, expected) <= row.bound


# ------------------------------------------------------------------ the table


def drift_table(cases, folder=None, complete=False, weights_of=None):
    """Compare recomputed ``cases`` ({name: (tensors, metadata)}) with the stored ones, in pipeline
    order: a list of :class:`DriftRow`. ``complete``: every case was recomputed, so a stored file
    that none matches is stale. ``weights_of(tower)``: a tower's weights, for teacher forcing."""
    folder = store.GOLDEN_DIR if folder is None else folder
    rows, stored_cases = [], {}
    manifest = store.load_manifest(folder)
    if complete:
        for stale in sorted(set(manifest["files"]) - {f"{name}.safetensors" for name in cases}):
            rows.append(DriftRow(stale.removesuffix(".safetensors"), "(file)", "stale: no case of the registry writes it",
                                 float("inf"), float("inf"), 0.0, False))
    for name, (tensors, _) in cases.items():
        if f"{name}.safetensors" not in manifest["files"]:
            why = manifest.get("not_generated", {}).get(f"{name}.safetensors")
            kind = f"not generated ({why})" if why else "missing"
            rows.append(DriftRow(name, "(file)", kind, float("inf"), float("inf"), 0.0, False))
            continue
        try:
            stored, _ = store.read_case(name, folder)
        except store.GoldenIntegrityError as error:
            print(f"integrity: {error}", file=sys.stderr)
            rows.append(DriftRow(name, "(sha256)", "integrity", float("inf"), float("inf"), 0.0, False))
            continue
        stored_cases[name] = stored
        rows += compare_case(name, tensors, stored)
    if weights_of is None:
        weights_of = lambda tower: TOWERS[tower].weights()  # noqa: E731
    return mark_origins(rows, stored_cases.__getitem__, weights_of)


# ------------------------------------------------------------------ versions


def touched_cases(library):
    """The stored cases a change of ``library`` can touch, derived from the registry's kinds."""
    from .cases import CASES

    stored = [c for c in CASES if c.stored]
    if library == "pillow":  # the bicubic resize of every case made from an image
        return [c.name for c in stored if c.make is not None]
    if library == "openblas_kernel":  # float64 matmul rounding: the towers (and full_size_3b's float32 cast)
        return [c.name for c in stored if c.towers]
    if library in ("torch", "transformers"):  # the HF side of every cross-check (towers, processor, positions)
        return [c.name for c in stored]
    if library == "torchvision":  # HF's default image processor and its video processor
        return [c.name for c in stored if c.kind == "video" or c.params.get("backend") == "torchvision"]
    return [c.name for c in stored] + [f"weights_{t}" for t, spec in TOWERS.items() if spec.stored_weights]


TOUCHES = {
    "pillow": "resized (and everything after it) of the cases made from an image",
    "numpy": "every stage (the reference is NumPy; also the seeded weights)",
    "openblas_kernel": "the tower stages (float64; full_size_3b's float32 cast), within DRIFT_BOUNDS",
    "torch": "the HF cross-check (HF's tower and rotary run in torch); full_size_3b's float32 cast",
    "transformers": "the HF cross-check of every case (processor, tower, get_rope_index)",
    "torchvision": "the HF cross-check of the torchvision-backend image cases and the video cases",
    "safetensors": "reading the files only",
}


def version_changes(folder, installed):
    """{library: (written, installed, [files])} for every library whose version differs."""
    folder = store.GOLDEN_DIR if folder is None else folder
    manifest = store.load_manifest(folder)
    written = {}
    for file in manifest["files"]:
        versions = dict(manifest.get("versions", {}))
        try:
            from safetensors import safe_open

            with safe_open(str(store.Path(folder) / file), framework="numpy") as handle:
                meta = handle.metadata() or {}
            import json

            versions.update(json.loads(meta["versions"]) if "versions" in meta else {})
        except Exception:  # noqa: BLE001 - an unreadable file is reported by the integrity check
            pass
        for library in VERSION_KEYS:
            if library in versions and library in installed and versions[library] != installed[library]:
                written.setdefault((library, versions[library]), []).append(file.removesuffix(".safetensors"))
    return {library: (old, installed[library], files) for (library, old), files in sorted(written.items())}


def header(changes):
    """Markdown lines: which library versions changed and which cases each can touch."""
    if not changes:
        return ["No library version changed since the goldens were written."]
    lines = ["Library versions changed since the goldens were written:", "",
             "| library | goldens written with | installed | cases it can touch |", "|---|---|---|---|"]
    for library, (old, new, files) in changes.items():
        cases = ", ".join(touched_cases(library)) or "none"
        lines.append(f"| {library} | {old} | {new} | {TOUCHES.get(library, '')}: {cases} |")
    return lines


# the libraries whose change moves float stages within their bounds (the reference's float arithmetic)
FLOAT_CAUSES = {"openblas_kernel": "BLAS kernel", "numpy": "numpy", "torch": "torch"}


def noise_lines(rows, changes):
    """One markdown line per (stage kind, cause) for the float stages that changed within their
    bound: how many cases and stages, the bound, the worst relative change and the cause, i.e. the
    changed versions that can move that case's float stages (``changes`` of :func:`version_changes`)."""
    groups = {}
    for row in rows:
        if not row.ok or row.max_abs == 0 or row.kind == "exact":
            continue
        causes = [f"{FLOAT_CAUSES[library]} {old} -> {new}" for library, (old, new, files) in changes.items()
                  if library in FLOAT_CAUSES and row.case in files]
        cause = ", ".join(causes) or ("no library version or BLAS kernel changed since the goldens were written "
                                      "(another CPU, NumPy build or thread count)")
        group = groups.setdefault((row.kind, row.bound, cause), {"cases": set(), "stages": 0, "rel": 0.0})
        group["cases"].add(row.case)
        group["stages"] += 1
        group["rel"] = max(group["rel"], row.rel)
    return [f"- {_count(len(g['cases']), 'case')}, {_count(g['stages'], kind + ' stage')} within {bound:g} "
            f"(max rel {g['rel']:.2g}): {cause}" for (kind, bound, cause), g in groups.items()]


def _count(n, noun):
    return f"{n} {noun}{'' if n == 1 else 's'}"


def report(rows, changes, show_all=False):
    """The markdown drift report: version header; a row per stage beyond its bound or exact stage
    that changed (``show_all``: every stage); one line per cause for the float stages that moved
    within their bounds; the first drifts."""
    lines = ["## Drift against stored goldens", ""] + header(changes) + [""]
    listed = [row for row in rows if show_all or not row.ok]
    if listed:
        lines += ["| case | stage | kind | max abs | max rel | bound | verdict |", "|---|---|---|---|---|---|---|"]
    else:
        lines += ["No stage beyond its bound, no exact stage changed."]
    for row in listed:
        verdict = "ok" if row.ok else ("**DRIFT** (inherited)" if row.origin == "inherited" else "**DRIFT**")
        lines.append(f"| {row.case} | {row.stage} | {row.kind} | {row.max_abs:.3g} | {row.rel:.3g} | "
                     f"{row.bound:g} | {verdict} |")
    noise = noise_lines(rows, changes)
    if noise:
        lines += ["", "Float stages that changed within their bounds (not listed per stage; `--all-stages` lists "
                  "them; on their own they never make a regeneration rewrite a golden):", ""] + noise
    drifted = [row for row in rows if not row.ok]
    changed = sum(1 for row in rows if row.max_abs > 0 or not row.ok)
    lines += ["", f"{len(rows)} stages compared, {changed} changed, {len(drifted)} beyond tolerance"]
    firsts = {}
    for row in drifted:
        firsts.setdefault(row.case, row)
    if firsts:
        lines += ["", "First drift per case (pipeline order; later drifted stages of a case that only carry it "
                  "are marked inherited):", ""]
        for name, row in firsts.items():
            local = sum(1 for r in drifted if r.case == name and r.origin != "inherited")
            lines.append(f"- {name}: {row.stage} ({local} local, "
                         f"{sum(1 for r in drifted if r.case == name) - local} inherited)")
        first = min(firsts.values(), key=pipeline_rank)  # ties: the registry's first case
        lines += ["", f"first drift: case {first.case}, stage {first.stage}"]
    return "\n".join(lines)
