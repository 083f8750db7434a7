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
32768) sizes the KV cache only; the rotary takes any position, the released
``max_position_embeddings`` is 128000. Every parameter is trainable; pass
``decoder_trainable=False`` / ``encoder_trainable=False`` to freeze a part. The LoRA and QLoRA
builders of the released sizes are in ``_lora``.
"""

from typing import TYPE_CHECKING

from ._component_builders import qwen2_5_vision_encoder, qwen2_5_vl
from ._encoder import Qwen2_5_VisionEncoder

if TYPE_CHECKING:
    from ._fusion import Qwen2_5_VLEarlyFusionModel

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


def qwen2_5_vl_3b_vision_encoder() -> Qwen2_5_VisionEncoder:
    """Vision tower of Qwen2.5-VL-3B (output width 2048)."""
    return qwen2_5_vision_encoder(
        embed_dim=1280,
        num_layers=32,
        num_heads=16,
        intermediate_dim=3420,
        out_dim=2048,
        patch_size=14,
        temporal_patch_size=2,
        spatial_merge_size=2,
        window_size=112,
        fullatt_block_indexes=[7, 15, 23, 31],
        in_channels=3,
        activation="silu",
        rope_base=10_000.0,
        norm_eps=1e-6,
    )


def qwen2_5_vl_7b_vision_encoder() -> Qwen2_5_VisionEncoder:
    """Vision tower of Qwen2.5-VL-7B (output width 3584)."""
    return qwen2_5_vision_encoder(
        embed_dim=1280,
        num_layers=32,
        num_heads=16,
        intermediate_dim=3420,
        out_dim=3584,
        patch_size=14,
        temporal_patch_size=2,
        spatial_merge_size=2,
        window_size=112,
        fullatt_block_indexes=[7, 15, 23, 31],
        in_channels=3,
        activation="silu",
        rope_base=10_000.0,
        norm_eps=1e-6,
    )


def qwen2_5_vl_32b_vision_encoder() -> Qwen2_5_VisionEncoder:
    """Vision tower of Qwen2.5-VL-32B (output width 5120)."""
    return qwen2_5_vision_encoder(
        embed_dim=1280,
        num_layers=32,
        num_heads=16,
        intermediate_dim=3420,
        out_dim=5120,
        patch_size=14,
        temporal_patch_size=2,
        spatial_merge_size=2,
        window_size=112,
        fullatt_block_indexes=[7, 15, 23, 31],
        in_channels=3,
        activation="silu",
        rope_base=10_000.0,
        norm_eps=1e-6,
    )


def qwen2_5_vl_72b_vision_encoder() -> Qwen2_5_VisionEncoder:
    """Vision tower of Qwen2.5-VL-72B (output width 8192)."""
    return qwen2_5_vision_encoder(
        embed_dim=1280,
        num_layers=32,
        num_heads=16,
        intermediate_dim=3420,
        out_dim=8192,
        patch_size=14,
        temporal_patch_size=2,
        spatial_merge_size=2,
        window_size=112,
        fullatt_block_indexes=[7, 15, 23, 31],
        in_channels=3,
        activation="silu",
        rope_base=10_000.0,
        norm_eps=1e-6,
    )


def qwen2_5_vl_image_transform(**kwargs):
    """``Qwen2_5_VLImageTransform(**kwargs)`` (the image processor of ``torch_port._transform``)."""
    from ._transform import Qwen2_5_VLImageTransform

    return Qwen2_5_VLImageTransform(**kwargs)


def qwen2_5_vl_3b(
    max_seq_len: int = 32768, decoder_trainable: bool = True, encoder_trainable: bool = True
) -> "Qwen2_5_VLEarlyFusionModel":
    """Qwen2.5-VL-3B (tied embeddings).

    Args:
        max_seq_len (int): KV-cache length (the released ``max_position_embeddings`` is 128000).
        decoder_trainable, encoder_trainable (bool): False freezes that part.
    """
    return qwen2_5_vl(
        encoder=qwen2_5_vl_3b_vision_encoder(),
        vocab_size=151936,
        num_layers=36,
        num_heads=16,
        num_kv_heads=2,
        embed_dim=2048,
        intermediate_dim=11008,
        max_seq_len=max_seq_len,
        norm_eps=1e-6,
        rope_base=1_000_000.0,
        mrope_section=[16, 24, 24],
        tie_word_embeddings=True,
        image_token_id=151655,
        video_token_id=151656,
        decoder_trainable=decoder_trainable,
        encoder_trainable=encoder_trainable,
    )


def qwen2_5_vl_7b(
    max_seq_len: int = 32768, decoder_trainable: bool = True, encoder_trainable: bool = True
) -> "Qwen2_5_VLEarlyFusionModel":
    """Qwen2.5-VL-7B.

    Args:
        max_seq_len (int): KV-cache length (the released ``max_position_embeddings`` is 128000).
        decoder_trainable, encoder_trainable (bool): False freezes that part.
    """
    return qwen2_5_vl(
        encoder=qwen2_5_vl_7b_vision_encoder(),
        vocab_size=152064,
        num_layers=28,
        num_heads=28,
        num_kv_heads=4,
        embed_dim=3584,
        intermediate_dim=18944,
        max_seq_len=max_seq_len,
        norm_eps=1e-6,
        rope_base=1_000_000.0,
        mrope_section=[16, 24, 24],
        tie_word_embeddings=False,
        image_token_id=151655,
        video_token_id=151656,
        decoder_trainable=decoder_trainable,
        encoder_trainable=encoder_trainable,
    )


def qwen2_5_vl_32b(
    max_seq_len: int = 32768, decoder_trainable: bool = True, encoder_trainable: bool = True
) -> "Qwen2_5_VLEarlyFusionModel":
    """Qwen2.5-VL-32B.

    Args:
        max_seq_len (int): KV-cache length (the released ``max_position_embeddings`` is 128000).
        decoder_trainable, encoder_trainable (bool): False freezes that part.
    """
    return qwen2_5_vl(
        encoder=qwen2_5_vl_32b_vision_encoder(),
        vocab_size=152064,
        num_layers=64,
        num_heads=40,
        num_kv_heads=8,
        embed_dim=5120,
        intermediate_dim=27648,
        max_seq_len=max_seq_len,
        norm_eps=1e-6,
        rope_base=1_000_000.0,
        mrope_section=[16, 24, 24],
        tie_word_embeddings=False,
        image_token_id=151655,
        video_token_id=151656,
        decoder_trainable=decoder_trainable,
        encoder_trainable=encoder_trainable,
    )


def qwen2_5_vl_72b(
    max_seq_len: int = 32768, decoder_trainable: bool = True, encoder_trainable: bool = True
) -> "Qwen2_5_VLEarlyFusionModel":
    """Qwen2.5-VL-72B.

    Args:
        max_seq_len (int): KV-cache length (the released ``max_position_embeddings`` is 128000).
        decoder_trainable, encoder_trainable (bool): False freezes that part.
    """
    return qwen2_5_vl(
        encoder=qwen2_5_vl_72b_vision_encoder(),
        vocab_size=152064,
        num_layers=80,
        num_heads=64,
        num_kv_heads=8,
        embed_dim=8192,
        intermediate_dim=29568,
        max_seq_len=max_seq_len,
        norm_eps=1e-6,
        rope_base=1_000_000.0,
        mrope_section=[16, 24, 24],
        tie_word_embeddings=False,
        image_token_id=151655,
        video_token_id=151656,
        decoder_trainable=decoder_trainable,
        encoder_trainable=encoder_trainable,
    )
