"""LoRA Qwen2.5-VL: torchtune's ``lora_qwen2`` decoder with mRoPE, this port's vision tower (frozen by default).

torchtune is imported inside the functions, so this file imports without it. The LoRA arguments
are torchtune's (``lora_attn_modules``, ``apply_lora_to_mlp``, ``apply_lora_to_output``,
``lora_rank``, ``lora_alpha``, ``lora_dropout``); torchtune's recipes read them from the config's
``model`` section and merge the adapters with ``get_merged_lora_ckpt`` before saving, which gives
the plain ``qwen2_5_vl`` state dict (LoRA layers keep the base ``weight`` / ``bias`` keys).

Refused (a ValueError names the argument): ``use_dora`` and ``quantize_base`` (QLoRA), which
torchtune's builder accepts but which this port has not verified against HF (DoRA's magnitude
vector and NF4 weights would need their own checkpoint handling).
"""

from typing import List, Union

from ._component_builders import as_qwen2_5_vl_decoder
from ._encoder import Qwen2_5_VisionEncoder
from ._model_builders import RELEASED_TEXT_COMMON, RELEASED_TEXT_SIZES, _released_vision_encoder

__all__ = ["lora_qwen2_5_vl", "lora_qwen2_5_vl_3b", "lora_qwen2_5_vl_7b"]

LORA_ATTN_MODULES = ("q_proj", "k_proj", "v_proj", "output_proj")


def lora_qwen2_5_vl(
    lora_attn_modules: List[str],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    *,
    encoder: Qwen2_5_VisionEncoder,
    vocab_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    embed_dim: int,
    intermediate_dim: int,
    max_seq_len: int,
    norm_eps: float,
    rope_base: float,
    mrope_section: Union[List[int], tuple],
    tie_word_embeddings: bool,
    lora_rank: int,
    lora_alpha: float,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
    image_token_id: int = 151655,
    video_token_id: int = 151656,
    encoder_trainable: bool = False,
):
    """Qwen2.5-VL with LoRA adapters in the decoder (``qwen2_5_vl``'s sizes + torchtune's LoRA arguments).

    Args:
        lora_attn_modules (list[str]): attention projections with adapters, a subset of
            ``q_proj``, ``k_proj``, ``v_proj``, ``output_proj``.
        apply_lora_to_mlp (bool): adapters on the MLP's w1/w2/w3.
        apply_lora_to_output (bool): an adapter on the output projection (untied models only).
        encoder, vocab_size, ..., video_token_id: as :func:`torch_port.qwen2_5_vl`.
        lora_rank (int), lora_alpha (float), lora_dropout (float): the adapters' rank, scale
            numerator (scale = alpha / rank) and dropout.
        use_dora, quantize_base (bool): must be False (see the module note).
        encoder_trainable (bool): False (default) freezes the vision tower; torchtune's LoRA
            recipes train the adapters only (``set_trainable_params``) whatever this says.

    Returns:
        Qwen2_5_VLEarlyFusionModel: its ``state_dict()`` is ``qwen2_5_vl``'s plus
        ``*.lora_a.weight`` / ``*.lora_b.weight``; ``[b, s]`` tokens -> ``[b, s, vocab]`` logits.

    Raises:
        ValueError: an unknown attention module, ``use_dora`` / ``quantize_base``, LoRA on a tied
            output, or the sizes ``qwen2_5_vl`` refuses.
    """
    from torchtune.models.qwen2._component_builders import lora_qwen2

    from ._fusion import Qwen2_5_VLEarlyFusionModel

    unknown = sorted(set(lora_attn_modules) - set(LORA_ATTN_MODULES))
    if unknown or not lora_attn_modules:
        raise ValueError(f"lora_attn_modules must be a non-empty subset of {list(LORA_ATTN_MODULES)}, "
                         f"got {list(lora_attn_modules)}")
    if use_dora:
        raise ValueError("use_dora=True is not supported by lora_qwen2_5_vl (DoRA is not verified here); use LoRA")
    if quantize_base:
        raise ValueError("quantize_base=True (QLoRA) is not supported by lora_qwen2_5_vl; use quantize_base=False")
    if embed_dim % num_heads:
        raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
    out_dim = encoder.merger.mlp.w2.out_features
    if out_dim != embed_dim:
        raise ValueError(f"the vision encoder outputs width {out_dim}, the decoder's embed_dim is {embed_dim}")
    decoder = lora_qwen2(
        list(lora_attn_modules), apply_lora_to_mlp, apply_lora_to_output,
        vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        embed_dim=embed_dim, intermediate_dim=intermediate_dim, max_seq_len=max_seq_len, norm_eps=norm_eps,
        rope_base=rope_base, tie_word_embeddings=tie_word_embeddings,
        lora_rank=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
    )
    # lora_qwen2 builds a 1-D rotary per layer and torchtune's norms: the same wiring as qwen2_5_vl's
    decoder = as_qwen2_5_vl_decoder(decoder, head_dim=embed_dim // num_heads, mrope_section=mrope_section,
                                    rope_base=rope_base, max_seq_len=max_seq_len, norm_eps=norm_eps)
    return Qwen2_5_VLEarlyFusionModel(
        decoder, encoder, image_token_id=image_token_id, video_token_id=video_token_id,
        decoder_trainable=True, encoder_trainable=encoder_trainable,
    )


def _released_lora(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, *, size: str, **kwargs):
    sizes = RELEASED_TEXT_SIZES[size]
    return lora_qwen2_5_vl(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output,
        encoder=_released_vision_encoder(sizes["embed_dim"]), max_seq_len=kwargs.pop("max_seq_len", 32768),
        **sizes, **RELEASED_TEXT_COMMON, **kwargs,
    )


def lora_qwen2_5_vl_3b(
    lora_attn_modules: List[str],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
    **kwargs,
):
    """LoRA Qwen2.5-VL-3B (tied embeddings: ``apply_lora_to_output`` must be False).
    ``kwargs``: ``max_seq_len``, ``encoder_trainable``."""
    return _released_lora(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, size="3b",
                          lora_rank=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                          use_dora=use_dora, quantize_base=quantize_base, **kwargs)


def lora_qwen2_5_vl_7b(
    lora_attn_modules: List[str],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
    **kwargs,
):
    """LoRA Qwen2.5-VL-7B. ``kwargs``: ``max_seq_len``, ``encoder_trainable``."""
    return _released_lora(lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, size="7b",
                          lora_rank=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                          use_dora=use_dora, quantize_base=quantize_base, **kwargs)
