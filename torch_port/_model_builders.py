"""Model builders: one function per released Qwen2.5-VL size, plus the image transform.

The four released vision towers are identical except for ``out_hidden_size`` (the LLM width):
depth 32, hidden 1280, 16 heads (head_dim 80), intermediate 3420, patch 14, temporal patch 2,
spatial merge 2, window 112 pixels, full attention in blocks 7, 15, 23, 31, SiLU, 3 channels,
rotary base 10000.
"""

from ._component_builders import qwen2_5_vision_encoder
from ._encoder import Qwen2_5_VisionEncoder

__all__ = [
    "qwen2_5_vl_3b_vision_encoder",
    "qwen2_5_vl_7b_vision_encoder",
    "qwen2_5_vl_32b_vision_encoder",
    "qwen2_5_vl_72b_vision_encoder",
    "qwen2_5_vl_image_transform",
]


def _released_vision_encoder(out_dim: int) -> Qwen2_5_VisionEncoder:
    return qwen2_5_vision_encoder(
        num_layers=32,
        embed_dim=1280,
        num_heads=16,
        intermediate_dim=3420,
        out_dim=out_dim,
        patch_size=14,
        temporal_patch_size=2,
        spatial_merge_size=2,
        window_size=112,
        fullatt_block_indexes=(7, 15, 23, 31),
        in_channels=3,
        activation="silu",
        rope_base=10_000.0,
    )


def qwen2_5_vl_3b_vision_encoder() -> Qwen2_5_VisionEncoder:
    """Vision tower of Qwen2.5-VL-3B (output width 2048)."""
    return _released_vision_encoder(2048)


def qwen2_5_vl_7b_vision_encoder() -> Qwen2_5_VisionEncoder:
    """Vision tower of Qwen2.5-VL-7B (output width 3584)."""
    return _released_vision_encoder(3584)


def qwen2_5_vl_32b_vision_encoder() -> Qwen2_5_VisionEncoder:
    """Vision tower of Qwen2.5-VL-32B (output width 5120)."""
    return _released_vision_encoder(5120)


def qwen2_5_vl_72b_vision_encoder() -> Qwen2_5_VisionEncoder:
    """Vision tower of Qwen2.5-VL-72B (output width 8192)."""
    return _released_vision_encoder(8192)


def qwen2_5_vl_image_transform(**kwargs):
    """``Qwen2_5_VLImageTransform(**kwargs)`` (the image processor of ``torch_port._transform``)."""
    from ._transform import Qwen2_5_VLImageTransform

    return Qwen2_5_VLImageTransform(**kwargs)
