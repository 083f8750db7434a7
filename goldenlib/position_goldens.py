"""The positions goldens: the reference's placeholder expansion, mRoPE position ids and text rotary
on a positions case, and their cross-check against HF (``goldenlib.hf_positions``).

Stored tensors: the inputs (``input_ids`` with single placeholders, ``image_grid_thw``,
``video_grid_thw``, ``second_per_grid_ts``, ``attention_mask``: those the case has), then
``expanded_input_ids``, ``mm_token_type_ids``, ``position_ids`` [3, b, s], ``deltas`` [b, 1] and
``mrope_cos`` / ``mrope_sin`` [b, s, head_dim] (float64).
"""

from __future__ import annotations

import numpy as np

from .cases import IMAGE_PAD, POSITION_PARAMS, ROTARY, VIDEO_PAD, Case
from .tolerances import POSITIONS_ROTARY_VS_HF_BOUND, rel_error

INTEGER_STAGES = ("expanded_input_ids", "mm_token_type_ids", "position_ids", "deltas")
ROTARY_STAGES = ("mrope_cos", "mrope_sin")


def run_reference(case: Case):
    """Every stage of a positions case, computed by the NumPy reference: {name: array}."""
    import reference

    inputs = case.inputs()
    tensors = dict(inputs.arrays())
    merge = POSITION_PARAMS["spatial_merge_size"]
    ids, types = reference.expand_vision_tokens(inputs.input_ids, inputs.image_grid_thw, inputs.video_grid_thw,
                                                image_token_id=IMAGE_PAD, video_token_id=VIDEO_PAD,
                                                merge_size=merge)
    position_ids, deltas = reference.rope_index(ids, types, inputs.image_grid_thw, inputs.video_grid_thw,
                                                inputs.second_per_grid_ts, inputs.attention_mask,
                                                spatial_merge_size=merge,
                                                tokens_per_second=POSITION_PARAMS["tokens_per_second"])
    cos, sin = reference.mrope_cos_sin(position_ids, ROTARY["head_dim"], ROTARY["mrope_section"],
                                       theta=ROTARY["rope_theta"], dtype=np.float64)
    tensors.update(expanded_input_ids=np.asarray(ids, dtype=np.int64),
                   mm_token_type_ids=np.asarray(types, dtype=np.int64),
                   position_ids=np.asarray(position_ids), deltas=np.asarray(deltas), mrope_cos=cos, mrope_sin=sin)
    return tensors


def hf_stages(case: Case):
    """The same stages as HF computes them (expansion by HF's processor code, positions by
    ``get_rope_index`` on a tiny model, cos/sin by its float32 text rotary)."""
    from .hf_positions import hf_expand, hf_mrope_cos_sin, hf_rope_index, hf_tiny_model

    inputs = case.inputs()
    model = hf_tiny_model(ROTARY["head_dim"], tuple(ROTARY["mrope_section"]), ROTARY["rope_theta"],
                          POSITION_PARAMS["spatial_merge_size"], POSITION_PARAMS["tokens_per_second"])
    ids, types = hf_expand(inputs.input_ids, inputs.image_grid_thw, inputs.video_grid_thw,
                           merge_size=POSITION_PARAMS["spatial_merge_size"])
    position_ids, deltas = hf_rope_index(model, ids, types, inputs.image_grid_thw, inputs.video_grid_thw,
                                         inputs.second_per_grid_ts, inputs.attention_mask)
    cos, sin = hf_mrope_cos_sin(model, position_ids)
    return {"expanded_input_ids": ids, "mm_token_type_ids": types, "position_ids": position_ids,
            "deltas": deltas, "mrope_cos": cos, "mrope_sin": sin}


def crosscheck(case: Case, tensors):
    """(integer stages that differ from HF, {rotary stage: rel. error vs HF float32}). Integer
    stages must be equal (dtype, shape, values); the cos/sin errors are bounded by the caller."""
    expected = hf_stages(case)
    differ = []
    for stage in INTEGER_STAGES:
        ours, theirs = np.asarray(tensors[stage]), np.asarray(expected[stage])
        if ours.dtype != np.int64 or ours.shape != theirs.shape or not np.array_equal(ours, theirs):
            differ.append(stage)
    errors = {stage: rel_error(tensors[stage], expected[stage]) for stage in ROTARY_STAGES}
    return differ, errors


def positions_metadata(case: Case):
    from .hf_image import versions

    return {"case": case.name, "kind": case.kind, "description": case.description, "versions": versions(),
            "rotary": ROTARY, "position_params": POSITION_PARAMS,
            "token_ids": {"image_pad": IMAGE_PAD, "video_pad": VIDEO_PAD},
            "hf_crosscheck": "Qwen2_5_VLModel.get_rope_index (equal), Qwen2_5_VLProcessor placeholder expansion "
                             "and mm_token_type_ids (equal), Qwen2_5_VLRotaryEmbedding float32 (cos/sin within "
                             f"{POSITIONS_ROTARY_VS_HF_BOUND:g})",
            "stages": sorted(INTEGER_STAGES + ROTARY_STAGES), **case.metadata}
