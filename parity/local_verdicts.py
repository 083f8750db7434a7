"""Local verdicts of a stage dump: every tower stage recomputed by the reference in float64 from the
dump's OWN input to it (``goldenlib.local_stages``), so each stage's own difference is named even
after an earlier stage drifted; a stage beyond its local tolerance is then explained, where a
rounding or a named formula change explains it (``parity.hypotheses``).

Inputs a dump does not hold are taken from the golden (said in the row's note): the verdict is then
the stage's own only if the port's input equals the golden's.
"""

from __future__ import annotations

import numpy as np

from goldenlib.local_lm_stages import lm_stage_inputs, recompute_lm
from goldenlib.local_stages import MERGER_ACT, recompute, stage_inputs
from goldenlib.stage_vocabulary import MODEL_TOWERS
from goldenlib.tolerances import DUMP_FLOAT32_LOCAL_FLOORS, PARITY_TOLERANCES, Tol, rel_error

from .hypotheses import explain, explain_lm

GRID_ONLY = ("rotary", "index")  # no input but the grid: local = accumulated
LM_LOCAL_KINDS = ("text_rotary", "lm_embeds", "lm_attn_residual", "lm_layer_output", "lm_norm", "lm_logits")


def local_bound(kind, dtype):
    """The local bound for a stage of ``kind`` judged at ``dtype``, or None (no entry). float32:
    never below what HF's own float32 tower measures locally (``DUMP_FLOAT32_LOCAL_FLOORS``)."""
    tol = PARITY_TOLERANCES.get((dtype, kind))
    if tol is None:
        return None
    return max(tol.local, DUMP_FLOAT32_LOCAL_FLOORS.get(kind, 0.0)) if dtype == "float32" else tol.local


def hypothesis_threshold(kind, judged, hf_error):
    """How close an explaining recomputation must be: the float32 local bound, or HF's own float32
    error at this stage (as the golden records it), whichever is larger; a low-precision judged stage
    keeps its dtype's bound."""
    if judged in ("float32", "float64"):
        return max(local_bound(kind, "float32") or 0.0, hf_error or 0.0)
    return local_bound(kind, judged) or 0.0


def _add_note(row, text):
    row.note = "; ".join(filter(None, [row.note, text]))


def _dump_values(rows):
    """{stage: the dump's values} of the rows that could be compared."""
    return {row.stage: row.values for row in rows if getattr(row, "values", None) is not None and row.problem is None}


def _judge(row, expected, bound, from_golden):
    """Set the row's local error and bound (and say which inputs came from the golden); whether it is a
    local difference."""
    row.local = rel_error(row.values, expected)
    row.tol = Tol(bound, row.tol.accumulated)
    if from_golden:
        _add_note(row, "local from the golden's " + ", ".join(f"`{k}`" for k in from_golden) + " (not in the dump)")
    return row.local > bound


def _inputs(row, tower, golden, values):
    """({input stage: float64 array}, [inputs taken from the golden]) of ``row``'s stage."""
    base = row.stage[len(tower) + 1:]
    config = golden.towers[tower]
    inputs, from_golden = {}, []
    for name in stage_inputs(base, config.depth) or ():
        keys = ("pixel_values_videos", "pixel_values") if name == "pixel_values" else (f"{tower}.{name}",)
        key = next((k for k in keys if k in values), None)
        if key is None:
            key = next((k for k in keys if k in golden.tensors), None)
            if key is None:
                return None, [name]
            from_golden.append(key)
            inputs[name] = np.asarray(golden.tensors[key], np.float64)
        else:
            inputs[name] = values[key]
    return inputs, from_golden


def add_local_verdicts(rows, golden, weights_of):
    """Set ``local``, the local bound (``tol.local``), ``explanation`` and a note on every float tower
    row of ``rows`` whose tower's weights ``weights_of(tower)`` gives (None: not available)."""
    values = _dump_values(rows)
    grid = golden.tensors.get("video_grid_thw", golden.tensors.get("image_grid_thw"))
    hf_errors = golden.hf_errors
    for tower, config in golden.towers.items():
        own = [row for row in rows if row.stage.startswith(tower + ".") and row.problem is None]
        if not any(row.kind not in GRID_ONLY for row in own):
            continue
        weights = weights_of(tower)
        if weights is None:
            for row in own:
                _add_note(row, "no local verdict: this tower's weights are not stored")
            continue
        for row in own:
            if row.kind in GRID_ONLY:
                continue
            bound = local_bound(row.kind, row.judged_as)
            inputs, from_golden = _inputs(row, tower, golden, values)
            if inputs is None or bound is None:
                continue
            base = row.stage[len(tower) + 1:]
            if _judge(row, recompute(base, inputs, weights, config, grid), bound, from_golden):
                threshold = hypothesis_threshold(row.kind, row.judged_as, hf_errors.get(row.stage))
                act = MERGER_ACT if base == "output" else config.hidden_act
                row.explanation = explain(base, row.kind, row.values, row.local, inputs, weights, config, grid,
                                          threshold, act, local_bound)


def _lm_inputs(stage, golden, values, num_layers):
    """({input: float64 array}, [inputs taken from the golden]) of a language-model stage: its own
    inputs (``lm_stage_inputs``), plus what its hypotheses read (position_ids, the towers' outputs)."""
    needed = list(lm_stage_inputs(stage, num_layers) or ())
    optional = []
    if stage == "lm.inputs_embeds":
        optional = [f"{tower}.output" for tower in MODEL_TOWERS if f"{tower}.output" in golden.tensors]
    if stage.endswith(".attn_residual"):
        optional = ["position_ids", "attention_mask"]
    inputs, from_golden = {}, []
    for name in needed + optional:
        if name in values:
            inputs[name] = values[name]
        elif name in golden.tensors:
            inputs[name] = np.asarray(golden.tensors[name])
            if name in needed or name.endswith(".output"):
                from_golden.append(name)
        elif name in needed:
            return None, [name]
    return inputs, from_golden


def add_lm_local_verdicts(rows, golden, model):
    """The language side of :func:`add_local_verdicts`: ``model`` is (``reference.ModelConfig``, the
    language model's weights), or None (no local verdicts: said in the rows)."""
    own = [row for row in rows if row.kind in LM_LOCAL_KINDS and row.problem is None]
    if not own:
        return
    if model is None:
        for row in own:
            _add_note(row, "no local verdict: the model's weights are not at hand")
        return
    config, weights = model
    values = _dump_values(rows)
    for row in own:
        # the text rotary from the dump's own positions: the accumulated bound (it grows with the position)
        bound = row.tol.accumulated if row.kind == "text_rotary" else local_bound(row.kind, row.judged_as)
        inputs, from_golden = _lm_inputs(row.stage, golden, values, config.text.num_hidden_layers)
        if inputs is None or bound is None:
            continue
        expected = recompute_lm(row.stage, inputs, weights, config)
        if expected is None or np.shape(expected) != np.shape(row.values):
            continue
        if _judge(row, expected, bound, from_golden):
            threshold = bound if row.kind == "text_rotary" else hypothesis_threshold(
                row.kind, row.judged_as, golden.hf_errors.get(row.stage))
            row.explanation = explain_lm(row.stage, row.kind, row.values, row.local, inputs, weights, config,
                                         threshold, local_bound)
