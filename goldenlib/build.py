"""Build one golden case in memory, cross-checked against HF: what the generator writes and the
parity checks' in-memory scenarios use, from the same code.

``build_case(case)`` returns ``(tensors, metadata, report)``; it raises :class:`CrosscheckError`
when an image stage (or a positions case's integer stage) differs from HF/Pillow at all. ``report`` holds the tower stages' relative
errors against HF's float32 tower; :func:`check_crosscheck` holds them to ``HF_CROSSCHECK_BOUND``.
"""

from __future__ import annotations

import numpy as np

from .cases import TOWERS, Case, weights_case_name
from .image_goldens import case_params, crosscheck, image_metadata, run_reference
from .processor_settings import processor_settings
from .stage_vocabulary import case_stages
from .tolerances import HF_CROSSCHECK_BOUND, POSITIONS_ROTARY_VS_HF_BOUND
from .tower_goldens import hf_crosscheck, run_tower


class CrosscheckError(RuntimeError):
    """The reference disagrees with HF beyond the bounds: nothing may be written. ``stages``: the
    stage names that differ (as stored: ``resized``, ``tiny_a.output``, ...), when known."""

    def __init__(self, message, stages=()):
        super().__init__(message)
        self.stages = list(stages)


def build_weights(tower_name, weights=None):
    """The golden file of a tower's seeded weights: (tensors, metadata)."""
    tower = TOWERS[tower_name]
    name = weights_case_name(tower_name)
    return (tower.weights() if weights is None else weights), {
        "case": name, "kind": "weights", "config": tower.config.to_dict(), "seed": tower.seed,
        "description": f"seeded random weights of tiny config {tower_name} (HF vision key names)"}


def _inputs(case: Case):
    """(images or None, image stage tensors, pixel_values, grid_thw) of a case."""
    if case.make is None:
        pixel_values, grid_thw = case.inputs()
        return None, {}, pixel_values, grid_thw
    if case.kind == "video":
        from . import video_goldens

        clips, tensors = video_goldens.run_reference(case)
        diffs = video_goldens.crosscheck(case, clips, tensors)
        bad = {stage: diff for stage, diff in diffs.items() if diff != 0.0}
        if bad:
            raise CrosscheckError(f"case {case.name}: reference video stages differ from HF at {bad}")
        return clips, tensors, tensors["pixel_values_videos"], tensors["video_grid_thw"]
    images, tensors = run_reference(case)
    diffs = crosscheck(case, images, tensors)
    bad = {stage: diff for stage, diff in diffs.items() if diff != 0.0}
    if bad:
        raise CrosscheckError(f"case {case.name}: reference image stages differ from HF at {bad}", bad)
    return images, tensors, tensors["pixel_values"], tensors["image_grid_thw"]


def build_positions(case: Case):
    """A positions case: (tensors, metadata, {rotary stage: rel. error vs HF float32}). Raises
    CrosscheckError when an integer stage differs from HF or cos/sin exceed the bound."""
    from .position_goldens import crosscheck, positions_metadata, run_reference

    tensors = run_reference(case)
    differ, errors = crosscheck(case, tensors)
    if differ:
        raise CrosscheckError(f"case {case.name}: reference differs from HF at {differ}", differ)
    bad = {stage: error for stage, error in errors.items() if not error <= POSITIONS_ROTARY_VS_HF_BOUND}
    if bad:
        raise CrosscheckError(f"case {case.name}: mRoPE cos/sin differ from HF beyond "
                              f"{POSITIONS_ROTARY_VS_HF_BOUND:g}: {bad}", bad)
    metadata = {**positions_metadata(case), "stages": case_stages(tensors),
                "hf_float32_error": {stage: float(f"{error:.3g}") for stage, error in errors.items()}}
    return tensors, metadata, errors


def build_case(case: Case, towers=None, weights_of=None):
    """Compute ``case`` (a :class:`goldenlib.cases.Case`): (tensors, metadata, report).

    ``towers``: names in TOWERS to run (default: the case's own); ``weights_of(name)`` gives a
    tower's weights (default: regenerated from its seed). ``report``: [(case, tower, errors)] with
    errors {(attention, stage): max rel. error vs HF float32}."""
    if case.kind == "positions":  # no towers: its HF cross-check is exact or bounded in build_positions
        tensors, metadata, _ = build_positions(case)
        return tensors, metadata, []
    if case.kind == "model":  # a whole model: built and HF-checked through its checkpoint folder
        from .model_goldens import build_model_case

        return build_model_case(case)
    towers = case.towers if towers is None else tuple(towers)
    weights_of = weights_of or (lambda name: TOWERS[name].weights())
    images, image_tensors, pixel_values, grid_thw = _inputs(case)
    if case.kind in ("image", "video"):
        tensors = dict(image_tensors)
    else:  # a tower case keeps only what the towers read
        tensors = {"pixel_values": pixel_values, "image_grid_thw": grid_thw}
    report = []
    for name in towers:
        config, weights = TOWERS[name].config, weights_of(name)
        trace = run_tower(config, weights, pixel_values, grid_thw, keep=case.keeps)
        report.append((case.name, name, hf_crosscheck(config, weights, pixel_values, grid_thw, trace,
                                                      implementations=case.attention)))
        del weights
        for stage, value in trace.items():
            if case.tower_dtype != "float64" and np.issubdtype(np.asarray(value).dtype, np.floating):
                value = value.astype(case.tower_dtype)
            tensors[f"{name}.{stage}"] = value
    metadata = _metadata(case, towers)
    metadata["stages"] = case_stages(tensors)
    if case.make is not None:
        metadata["processor"] = processor_settings(case.kind, case_params(case) if case.kind != "video" else case.params)
    metadata["hf_float32_error"] = hf_float32_errors(report)
    return tensors, metadata, report


def hf_float32_errors(report):
    """{stored stage name: HF's float32 tower's relative error there} (the worst over the attention
    implementations cross-checked), 3 digits: what the dump verdicts hold a precision hypothesis to."""
    worst = {}
    for _, tower, errors in report:
        for (_, stage), error in errors.items():
            key = f"{tower}.{stage}"
            worst[key] = max(worst.get(key, 0.0), error)
    return {key: float(f"{error:.3g}") for key, error in sorted(worst.items())}


def _metadata(case, towers):
    tower_dtype = "float64" if case.tower_dtype == "float64" else f"{case.tower_dtype} (computed in float64)"
    common = {"tower_configs": {name: TOWERS[name].config.to_dict() for name in towers}, "tower_dtype": tower_dtype}
    if case.kind == "image":
        return {**image_metadata(case), **common, **case.metadata}
    if case.kind == "video":
        from .video_goldens import video_metadata

        return {**video_metadata(case), **common, **case.metadata}
    from .hf_image import versions

    metadata = {"case": case.name, "kind": case.kind, "description": case.description, **common,
                "versions": versions(), **case.metadata}
    if case.blocks is not None:
        metadata["stored_blocks"] = list(case.blocks)
    return metadata


def check_crosscheck(report, bound=HF_CROSSCHECK_BOUND):
    """Raise CrosscheckError listing every tower stage of ``report`` beyond ``bound``."""
    bad = [(case, config, key, err) for case, config, errors in report for key, err in errors.items()
           if not err <= bound]
    if bad:
        lines = "\n".join(f"  {case} {config} {impl} {stage}: {err:.3e}" for case, config, (impl, stage), err in bad)
        raise CrosscheckError(f"tower differs from HF beyond {bound:g}:\n{lines}",
                              [f"{config}.{stage}" for _, config, (_, stage), _ in bad])
