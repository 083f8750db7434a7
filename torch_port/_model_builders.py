"""Model builders: one function per released Qwen2.5-VL size, plus the image transform.

The four released vision towers are identical except for ``out_hidden_size`` (the LLM width):
depth 32, hidden 1280, 16 heads (head_dim 80), intermediate 3420, patch 14, temporal patch 2,
spatial merge 2, window 112 pixels, full attention in blocks 7, 15, 23, 31, SiLU, 3 channels,
rotary base 10000.

The whole models (``qwen2_5_vl_3b`` ... ``qwen2_5_vl_72b``, torchtune's ``EarlyFusionModel``; torchtune
is imported when one is built) use the released text configs: rope theta 1e6, mrope_section
[16, 24, 24], RMSNorm eps 1e-6, image / video pad ids 151655 / 151656, and

    size  layers  width  heads  kv heads  MLP     vocab    tied
    3B    36      2048   16     2         11008   151936   yes
    7B    28      3584   28     4         18944   152064   no
    32B   64      5120   40     8         27648   152064   no
    72B   80      8192   64     8         29568   152064   no

(Checked against copies of the released config.json for 3B and 7B - the 7B's vocabulary is 152064;
the 72B row equals HF's Qwen2_5_VLTextConfig class defaults; the 32B row is not checked here.) ``max_seq_len`` (default
32768) sizes the KV cache and the cached rotary table only; positions past it are computed on
the fly, the released ``max_position_embeddings`` is 128000. Every parameter is trainable; pass
``decoder_trainable=False`` / ``encoder_trainable=False`` to freeze a part.
"""

from ._component_builders import qwen2_5_vision_encoder, qwen2_5_vl
from ._encoder import Qwen2_5_VisionEncoder

__all__ = [
    "qwen2_5_vl_3b",
    "qwen2_5_vl_7b",
    "qwen2_5_vl_32b",
    "qwen2_5_vl_72b",
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


# The text side of each release (HF config.json) and what they all share
RELEASED_TEXT_SIZES = {
    "3b": dict(num_layers=36, embed_dim=2048, num_heads=16, num_kv_heads=2, intermediate_dim=11008,
               vocab_size=151936, tie_word_embeddings=True),
    "7b": dict(num_layers=28, embed_dim=3584, num_heads=28, num_kv_heads=4, intermediate_dim=18944,
               vocab_size=152064, tie_word_embeddings=False),
    "32b": dict(num_layers=64, embed_dim=5120, num_heads=40, num_kv_heads=8, intermediate_dim=27648,
                vocab_size=152064, tie_word_embeddings=False),
    "72b": dict(num_layers=80, embed_dim=8192, num_heads=64, num_kv_heads=8, intermediate_dim=29568,
                vocab_size=152064, tie_word_embeddings=False),
}
RELEASED_TEXT_COMMON = dict(norm_eps=1e-6, rope_base=1_000_000.0, mrope_section=(16, 24, 24),
                            image_token_id=151655, video_token_id=151656)


def _released_model(size: str, **kwargs):
    sizes = RELEASED_TEXT_SIZES[size]
    return qwen2_5_vl(encoder=_released_vision_encoder(sizes["embed_dim"]),
                      max_seq_len=kwargs.pop("max_seq_len", 32768), **sizes, **RELEASED_TEXT_COMMON, **kwargs)


def qwen2_5_vl_3b(**kwargs):
    """Qwen2.5-VL-3B (tied embeddings). ``kwargs``: ``max_seq_len``, ``decoder_trainable``, ``encoder_trainable``."""
    return _released_model("3b", **kwargs)


def qwen2_5_vl_7b(**kwargs):
    """Qwen2.5-VL-7B. ``kwargs``: ``max_seq_len``, ``decoder_trainable``, ``encoder_trainable``."""
    return _released_model("7b", **kwargs)


def qwen2_5_vl_32b(**kwargs):
    """Qwen2.5-VL-32B. ``kwargs``: ``max_seq_len``, ``decoder_trainable``, ``encoder_trainable``."""
    return _released_model("32b", **kwargs)


def qwen2_5_vl_72b(**kwargs):
    """Qwen2.5-VL-72B. ``kwargs``: ``max_seq_len``, ``decoder_trainable``, ``encoder_trainable``."""
    return _released_model("72b", **kwargs)
