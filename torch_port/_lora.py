"""LoRA and QLoRA Qwen2.5-VL: the LoRA twins of the model builders, as torchtune's.

* ``lora_qwen2_5_vl_decoder`` (in ``_component_builders``, beside its twin ``qwen2_5_vl_decoder``):
  torchtune ``LoRALinear`` adapters on the chosen attention projections (and the MLP, the untied
  output), as torchtune's ``lora_qwen2``;
* ``lora_qwen2_5_vl``: that decoder + this port's vision tower, frozen by default;
* ``lora_qwen2_5_vl_3b`` / ``_7b``: the released sizes; ``qlora_qwen2_5_vl_3b`` / ``_7b``: the same
  with ``quantize_base=True`` (``functools.partial``, as torchtune's ``qlora_*`` builders).

The LoRA arguments are torchtune's (``lora_attn_modules``, ``apply_lora_to_mlp``,
``apply_lora_to_output``, ``lora_rank``, ``lora_alpha``, ``lora_dropout``, ``quantize_base``);
torchtune's recipes read them from the config's ``model`` section and merge the adapters with
``get_merged_lora_ckpt`` before saving, which gives the plain ``qwen2_5_vl`` state dict (LoRA layers
keep the base ``weight`` / ``bias`` keys).

QLoRA (``quantize_base=True``) is torchtune's: the base weight of every decoder linear that has an
adapter is a torchao ``NF4Tensor`` (4-bit NormalFloat, blocks of 64 weights, double-quantized
scales; ``LoRALinear(quantize_base=True)``); linears without an adapter, the token embedding, the
output projection (torchtune does not quantize it) and the norms stay in the model dtype. The
vision tower is not quantized either: it stays in the model dtype (the checkpoint's, bf16 in the
configs) and frozen unless ``encoder_trainable=True``; it has no adapters. ``state_dict()``
dequantizes the NF4 weights back to the model dtype on the CPU (torchtune's
``reparametrize_as_dtype_state_dict_post_hook``), so the merged save is a plain bf16 checkpoint.

Refused (a ValueError names the argument): ``use_dora``, which torchtune's builder accepts but which
this port has not checked against a reference (DoRA's magnitude vector needs its own handling).

torchtune is imported inside the functions, so this file imports without it.
"""

from functools import partial
from typing import List, Union

from ._component_builders import check_lora_options, lora_qwen2_5_vl_decoder
from ._encoder import Qwen2_5_VisionEncoder
from ._model_builders import qwen2_5_vl_3b_vision_encoder, qwen2_5_vl_7b_vision_encoder

__all__ = [
    "lora_qwen2_5_vl",
    "lora_qwen2_5_vl_3b",
    "lora_qwen2_5_vl_7b",
    "qlora_qwen2_5_vl_3b",
    "qlora_qwen2_5_vl_7b",
]


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
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, lora_rank, lora_alpha,
            lora_dropout, use_dora, quantize_base: as :func:`lora_qwen2_5_vl_decoder`.
        encoder, vocab_size, ..., video_token_id: as :func:`torch_port.qwen2_5_vl`.
        encoder_trainable (bool): False (default) freezes the vision tower; torchtune's LoRA
            recipes train the adapters only (``set_trainable_params``) whatever this says.

    Returns:
        Qwen2_5_VLEarlyFusionModel: its ``state_dict()`` is ``qwen2_5_vl``'s plus
        ``*.lora_a.weight`` / ``*.lora_b.weight``; ``[b, s]`` tokens -> ``[b, s, vocab]`` logits.

    Raises:
        ValueError: what :func:`lora_qwen2_5_vl_decoder` refuses, or a tower of another width.
    """
    from ._fusion import Qwen2_5_VLEarlyFusionModel

    check_lora_options(lora_attn_modules, use_dora)
    out_dim = encoder.merger.mlp.w2.out_features
    if out_dim != embed_dim:
        raise ValueError(f"the vision encoder outputs width {out_dim}, the decoder's embed_dim is {embed_dim}")
    decoder = lora_qwen2_5_vl_decoder(
        list(lora_attn_modules), apply_lora_to_mlp, apply_lora_to_output,
        vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        embed_dim=embed_dim, intermediate_dim=intermediate_dim, max_seq_len=max_seq_len, norm_eps=norm_eps,
        rope_base=rope_base, mrope_section=mrope_section, tie_word_embeddings=tie_word_embeddings,
        lora_rank=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
        quantize_base=quantize_base,
    )
    return Qwen2_5_VLEarlyFusionModel(
        decoder, encoder, image_token_id=image_token_id, video_token_id=video_token_id,
        decoder_trainable=True, encoder_trainable=encoder_trainable,
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
    max_seq_len: int = 32768,
    encoder_trainable: bool = False,
):
    """LoRA Qwen2.5-VL-3B (sizes as :func:`torch_port.qwen2_5_vl_3b`; tied embeddings, so
    ``apply_lora_to_output`` must be False). Arguments as :func:`lora_qwen2_5_vl`."""
    return lora_qwen2_5_vl(
        lora_attn_modules,
        apply_lora_to_mlp,
        apply_lora_to_output,
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
        lora_rank=lora_rank,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        use_dora=use_dora,
        quantize_base=quantize_base,
        image_token_id=151655,
        video_token_id=151656,
        encoder_trainable=encoder_trainable,
    )


def lora_qwen2_5_vl_7b(
    lora_attn_modules: List[str],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
    max_seq_len: int = 32768,
    encoder_trainable: bool = False,
):
    """LoRA Qwen2.5-VL-7B (sizes as :func:`torch_port.qwen2_5_vl_7b`). Arguments as :func:`lora_qwen2_5_vl`."""
    return lora_qwen2_5_vl(
        lora_attn_modules,
        apply_lora_to_mlp,
        apply_lora_to_output,
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
        lora_rank=lora_rank,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        use_dora=use_dora,
        quantize_base=quantize_base,
        image_token_id=151655,
        video_token_id=151656,
        encoder_trainable=encoder_trainable,
    )


qlora_qwen2_5_vl_3b = partial(lora_qwen2_5_vl_3b, quantize_base=True)
qlora_qwen2_5_vl_3b.__doc__ = """QLoRA Qwen2.5-VL-3B: :func:`lora_qwen2_5_vl_3b` with ``quantize_base=True`` (NF4 base
weights in the decoder linears that have adapters; see the module note of ``torch_port._lora``)."""

qlora_qwen2_5_vl_7b = partial(lora_qwen2_5_vl_7b, quantize_base=True)
qlora_qwen2_5_vl_7b.__doc__ = """QLoRA Qwen2.5-VL-7B: :func:`lora_qwen2_5_vl_7b` with ``quantize_base=True`` (NF4 base
weights in the decoder linears that have adapters; see the module note of ``torch_port._lora``)."""
