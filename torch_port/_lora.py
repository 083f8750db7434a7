"""LoRA and QLoRA Qwen2.5-VL: the LoRA twins of the component and model builders, as torchtune's.

* ``lora_qwen2_5_vl_decoder``: ``qwen2_5_vl_decoder`` with torchtune ``LoRALinear`` adapters on the
  chosen attention projections (and the MLP, the untied output), as torchtune's ``lora_qwen2``;
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

from torch import nn

from ._component_builders import check_text_sizes, text_attention, text_decoder
from ._encoder import Qwen2_5_VisionEncoder
from ._model_builders import qwen2_5_vl_3b_vision_encoder, qwen2_5_vl_7b_vision_encoder

__all__ = [
    "lora_qwen2_5_vl",
    "lora_qwen2_5_vl_3b",
    "lora_qwen2_5_vl_7b",
    "lora_qwen2_5_vl_decoder",
    "qlora_qwen2_5_vl_3b",
    "qlora_qwen2_5_vl_7b",
]

LORA_ATTN_MODULES = ("q_proj", "k_proj", "v_proj", "output_proj")
# torchao's to_nf4 defaults: 64 weights per scale, 256 scales per second-level scale
NF4_BLOCK = 64 * 256


def _check_lora_options(lora_attn_modules, use_dora: bool) -> None:
    unknown = sorted(set(lora_attn_modules) - set(LORA_ATTN_MODULES))
    if unknown or not lora_attn_modules:
        raise ValueError(f"lora_attn_modules must be a non-empty subset of {list(LORA_ATTN_MODULES)}, "
                         f"got {list(lora_attn_modules)}")
    if use_dora:
        raise ValueError("use_dora=True is not supported by lora_qwen2_5_vl (DoRA is not verified here); use LoRA")


def _check_nf4(name: str, in_dim: int, out_dim: int) -> None:
    """torchao's ``to_nf4`` asserts whole blocks; say which projection has none, and its size."""
    if (in_dim * out_dim) % NF4_BLOCK:
        raise ValueError(f"quantize_base=True: {name} ({out_dim} x {in_dim} = {in_dim * out_dim} weights) is not "
                         f"a multiple of {NF4_BLOCK} weights (NF4 blocks of 64, scales in blocks of 256)")


def _adapter_or_linear(name: str, lora: bool, in_dim: int, out_dim: int, *, bias: bool, lora_rank: int,
                       lora_alpha: float, lora_dropout: float, quantize_base: bool) -> nn.Module:
    """torchtune's ``LoRALinear`` when ``lora``, else a plain ``nn.Linear`` (never quantized)."""
    from torchtune.modules.peft import LoRALinear

    if not lora:
        return nn.Linear(in_dim, out_dim, bias=bias)
    if quantize_base:
        _check_nf4(name, in_dim, out_dim)
    return LoRALinear(in_dim, out_dim, rank=lora_rank, alpha=lora_alpha, dropout=lora_dropout, use_bias=bias,
                      quantize_base=quantize_base)


def lora_qwen2_5_vl_decoder(
    lora_attn_modules: List[str],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    *,
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
):
    """``qwen2_5_vl_decoder`` with LoRA adapters (torchtune's ``lora_qwen2`` layout, this model's
    mRoPE, norms and output).

    Args:
        lora_attn_modules (list[str]): attention projections with adapters, a subset of
            ``q_proj``, ``k_proj``, ``v_proj``, ``output_proj``.
        apply_lora_to_mlp (bool): adapters on the MLP's w1/w2/w3.
        apply_lora_to_output (bool): an adapter on the output projection (untied models only).
        vocab_size, ..., tie_word_embeddings: as :func:`torch_port.qwen2_5_vl_decoder`.
        lora_rank (int), lora_alpha (float), lora_dropout (float): the adapters' rank, scale
            numerator (scale = alpha / rank) and dropout.
        use_dora (bool): must be False (see the module note).
        quantize_base (bool): NF4 base weights in the linears with adapters (QLoRA).

    Returns:
        Qwen2_5_VLTextDecoder: ``qwen2_5_vl_decoder``'s state-dict keys plus
        ``*.lora_a.weight`` / ``*.lora_b.weight``.

    Raises:
        ValueError: an unknown attention module, ``use_dora``, LoRA on a tied output, a quantized
            linear whose size is not whole NF4 blocks, or the sizes ``qwen2_5_vl_decoder`` refuses.
    """
    from torchtune.models.qwen2._component_builders import lora_qwen2_mlp, qwen2_mlp
    from torchtune.modules import TiedLinear, TransformerSelfAttentionLayer
    from torchtune.modules.common_utils import reparametrize_as_dtype_state_dict_post_hook

    from ._mrope import Qwen2_5_VLRotaryPositionalEmbeddings
    from ._text_decoder import Qwen2_5_VLTextRMSNorm

    _check_lora_options(lora_attn_modules, use_dora)
    if tie_word_embeddings and apply_lora_to_output:
        raise ValueError("apply_lora_to_output=True with tie_word_embeddings=True: a tied model has no output "
                         "projection of its own to adapt")
    head_dim = check_text_sizes(embed_dim=embed_dim, num_heads=num_heads, num_kv_heads=num_kv_heads,
                                mrope_section=mrope_section)
    lora = dict(lora_rank=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout, quantize_base=quantize_base)
    if apply_lora_to_mlp and quantize_base:  # lora_qwen2_mlp builds w1 / w3 (dim -> hidden) and w2 (hidden -> dim)
        _check_nf4("mlp.w1", embed_dim, intermediate_dim)
    rope = Qwen2_5_VLRotaryPositionalEmbeddings(head_dim, mrope_section, base=rope_base, max_seq_len=max_seq_len)
    layers = []
    for _ in range(num_layers):
        attn = text_attention(
            q_proj=_adapter_or_linear("q_proj", "q_proj" in lora_attn_modules, embed_dim, num_heads * head_dim,
                                      bias=True, **lora),
            k_proj=_adapter_or_linear("k_proj", "k_proj" in lora_attn_modules, embed_dim, num_kv_heads * head_dim,
                                      bias=True, **lora),
            v_proj=_adapter_or_linear("v_proj", "v_proj" in lora_attn_modules, embed_dim, num_kv_heads * head_dim,
                                      bias=True, **lora),
            output_proj=_adapter_or_linear("output_proj", "output_proj" in lora_attn_modules, embed_dim, embed_dim,
                                           bias=False, **lora),
            rope=rope, embed_dim=embed_dim, num_heads=num_heads, num_kv_heads=num_kv_heads, max_seq_len=max_seq_len,
        )
        mlp = (lora_qwen2_mlp(dim=embed_dim, hidden_dim=intermediate_dim, **lora) if apply_lora_to_mlp
               else qwen2_mlp(dim=embed_dim, hidden_dim=intermediate_dim))
        layers.append(TransformerSelfAttentionLayer(
            attn=attn,
            mlp=mlp,
            sa_norm=Qwen2_5_VLTextRMSNorm(embed_dim, eps=norm_eps),
            mlp_norm=Qwen2_5_VLTextRMSNorm(embed_dim, eps=norm_eps),
        ))
    tok_embeddings = nn.Embedding(vocab_size, embed_dim)
    if tie_word_embeddings:
        output = TiedLinear(tok_embeddings)
    else:  # as torchtune, the output projection's base weight is never quantized
        output = _adapter_or_linear("output", apply_lora_to_output, embed_dim, vocab_size, bias=False,
                                    **{**lora, "quantize_base": False})
    decoder = text_decoder(layers=layers, tok_embeddings=tok_embeddings, output=output, embed_dim=embed_dim,
                           num_heads=num_heads, max_seq_len=max_seq_len, norm_eps=norm_eps)
    if quantize_base:
        # torchtune's QLoRA hook: state_dict() gives the NF4 weights back in the model dtype, on the CPU
        decoder._register_state_dict_hook(partial(reparametrize_as_dtype_state_dict_post_hook,
                                                  dtype=tok_embeddings.weight.dtype, offload_to_cpu=True))
    return decoder


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

    _check_lora_options(lora_attn_modules, use_dora)
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
