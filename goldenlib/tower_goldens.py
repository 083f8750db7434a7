"""Vision-tower goldens: tiny configs with stored weights, and the full-size tower from a seed.

Tiny towers run on every image case's ``pixel_values`` plus a two-frame input; their stages
go into the image case's file under ``"{config}.{stage}"`` (float64). The full-size tower
(weights regenerated from the seed, not stored) runs on one small image and keeps a subset
of stages (float32) — enough to localise a difference to a block.
"""

import numpy as np

import reference
from reference import VisionConfig

WEIGHT_SEED = 20251127

# Each tiny config has window blocks and full-attention blocks (a tiny depth that never
# reaches an index in fullatt_block_indexes would leave full attention untested).
TINY_CONFIGS = {
    "tiny_a": VisionConfig(depth=4, hidden_size=64, num_heads=4, intermediate_size=96, out_hidden_size=48,
                           window_size=112, fullatt_block_indexes=(1, 3)),
    "tiny_b": VisionConfig(depth=3, hidden_size=48, num_heads=2, intermediate_size=80, out_hidden_size=32,
                           window_size=56, fullatt_block_indexes=(0,)),
}
FULL_CONFIG_NAME = "3b"
FULL_SEED = 0
# Full-size stages kept: every 8th block (0, 8, 16, 24), the last (31), the full-attention
# block 7, and the block before each of 7, 8, 16, 24, 31 so that each can be teacher-forced.
FULL_BLOCKS = (0, 6, 7, 8, 15, 16, 23, 24, 30, 31)


def tiny_weights(name):
    return reference.random_weights(TINY_CONFIGS[name], seed=WEIGHT_SEED + sorted(TINY_CONFIGS).index(name))


def two_frame_input(seed=7, grid=(2, 4, 8)):
    """A two-frame input (grid_t = 2): two different frames' patches, pixel_values-like values."""
    t, h, w = grid
    rng = np.random.default_rng(seed)
    pixel_values = rng.standard_normal((t * h * w, 3 * 2 * 14 * 14)).astype(np.float32)
    return pixel_values, np.array([grid], dtype=np.int64)


def run_tower(config, weights, pixel_values, grid_thw, dtype=np.float64, keep=None):
    trace = {}
    reference.vision_forward(pixel_values, grid_thw, weights, config, dtype=dtype, trace=trace)
    if keep is not None:
        trace = {key: value for key, value in trace.items() if keep(key)}
    return trace


def keep_full_stage(key):
    if not key.startswith("blocks."):
        return True
    return int(key.split(".")[1]) in FULL_BLOCKS


def rel_error(expected, actual):
    """max |a - b| / max |b|: the per-stage error measure used everywhere in this project."""
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if expected.shape != actual.shape:
        return float("inf")
    scale = np.max(np.abs(expected)) if expected.size else 0.0
    diff = np.max(np.abs(expected - actual)) if expected.size else 0.0
    return float(diff / scale) if scale > 0 else float(diff)


def hf_crosscheck(config, weights, pixel_values, grid_thw, trace, implementations=("sdpa", "eager")):
    """Max relative error of every float stage of ``trace`` against HF's float32 tower."""
    from hfcheck.hf_vision import build_hf_vision, hf_vision_trace

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
                errors[(implementation, key)] = rel_error(hf[key], value)
    return errors
