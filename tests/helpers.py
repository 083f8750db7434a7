"""What several test files share: the tiny tower configs and grids, Pillow's resize, golden cases.

Bounds and the error metric are not here: they live with every other bound in
``goldenlib/tolerances.py``.
"""

import functools

import numpy as np
import PIL.Image

from goldenlib.hf_vision import hf_config_dict
from parity.cases import load_case
from reference import VisionConfig

# Tiny towers for the tests against HF (reference and port alike). Each has at least one
# full-attention and one window block; head_dim 8 / 16 / 24, window 56 / 112 / 168 px
# (2 / 4 / 6 merged tokens a side), full attention first / last / in the middle, and one other
# patch geometry (patch 7, one frame per patch).
TINY_CONFIGS = {
    "hd8_win112_full_first": VisionConfig(depth=3, hidden_size=32, num_heads=4, intermediate_size=40,
                                          out_hidden_size=24, window_size=112, fullatt_block_indexes=(0,)),
    "hd16_win56_full_last": VisionConfig(depth=3, hidden_size=64, num_heads=4, intermediate_size=72,
                                         out_hidden_size=40, window_size=56, fullatt_block_indexes=(2,)),
    "hd24_win168_full_mid_last": VisionConfig(depth=4, hidden_size=48, num_heads=2, intermediate_size=56,
                                              out_hidden_size=32, window_size=168, fullatt_block_indexes=(1, 3)),
    "hd8_win56_full_first": VisionConfig(depth=2, hidden_size=16, num_heads=2, intermediate_size=24,
                                         out_hidden_size=20, window_size=56, fullatt_block_indexes=(0,)),
    "hd16_win112_full_last": VisionConfig(depth=3, hidden_size=32, num_heads=2, intermediate_size=40,
                                          out_hidden_size=24, window_size=112, fullatt_block_indexes=(2,)),
    "hd24_win168_full_first_last": VisionConfig(depth=4, hidden_size=72, num_heads=3, intermediate_size=56,
                                                out_hidden_size=32, window_size=168, fullatt_block_indexes=(0, 3)),
    "hd16_patch7_t1_full_last": VisionConfig(depth=2, hidden_size=48, num_heads=3, intermediate_size=40,
                                             out_hidden_size=16, window_size=56, fullatt_block_indexes=(1,),
                                             patch_size=7, temporal_patch_size=1),
}


def hf_sizes(name):
    """Keyword arguments of HF's `Qwen2_5_VLVisionConfig` for a tiny config."""
    return hf_config_dict(TINY_CONFIGS[name])


# grid_thw in patches; merged grids 6x10, 9x5, 5x5 (not whole windows), 8x8 (exactly 4k),
# two images in one call, and two-frame videos whose frames differ.
GRIDS = {
    "12x20": [[1, 12, 20]],
    "18x10": [[1, 18, 10]],
    "10x10": [[1, 10, 10]],
    "16x16": [[1, 16, 16]],
    "two_images": [[1, 8, 12], [1, 10, 6]],
    "video_t2_8x12": [[2, 8, 12]],
    "video_t2_12x8": [[2, 12, 8]],
}


def pil_resize(image, height, width):
    """What HF's PIL processor does to a uint8 image: Pillow's BICUBIC resize."""
    return np.asarray(PIL.Image.fromarray(image).resize((width, height), PIL.Image.Resampling.BICUBIC))


@functools.cache
def case_of(name):
    """A golden case (sha256-verified), read once per test session."""
    return load_case(name)
