"""Vision-tower goldens: run the reference tower with a trace, cross-check its stages with HF's.

Tiny towers run on every image case's ``pixel_values`` plus a two-frame input; their stages go
into the case's file under ``"{tower}.{stage}"`` (float64). The full-size tower (weights
regenerated from the seed, not stored) runs on one small image and keeps a subset of stages
(float32): enough to localise a difference to a block. Which tower runs on which case is the
case registry's (``goldenlib.cases``).
"""

import numpy as np

import reference

from .tolerances import rel_error


def run_tower(config, weights, pixel_values, grid_thw, dtype=np.float64, keep=None):
    trace = {}
    reference.vision_forward(pixel_values, grid_thw, weights, config, dtype=dtype, trace=trace)
    if keep is not None:
        trace = {key: value for key, value in trace.items() if keep(key)}
    return trace


def hf_crosscheck(config, weights, pixel_values, grid_thw, trace, implementations=("sdpa", "eager")):
    """Max relative error of every float stage of ``trace`` against HF's float32 tower."""
    from .hf_vision import build_hf_vision, hf_vision_trace

    errors = {}
    for implementation in implementations:
        model = build_hf_vision(config, weights, attn_implementation=implementation)
        hf = hf_vision_trace(model, pixel_values, grid_thw)
        del model
        for key, value in trace.items():
            if key not in hf:
                continue
            if np.issubdtype(np.asarray(value).dtype, np.integer):
                same = np.array_equal(np.asarray(hf[key]), np.asarray(value))
                errors[(implementation, key)] = 0.0 if same else float("inf")
            else:
                errors[(implementation, key)] = rel_error(value, hf[key])
    return errors
