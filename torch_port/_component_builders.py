"""Component builders: the Qwen2.5-VL vision encoder, text decoder and whole model from plain sizes.

Arguments take torchtune's names only (``embed_dim``, ``num_layers``, ``num_heads``,
``intermediate_dim``, ``out_dim``, ``activation``, ``rope_base``, ``norm_eps``, ...); an HF config's
names are translated once, where a checkpoint folder is read.

``qwen2_5_vl_decoder`` builds the text model from torchtune's modules as torchtune's own builders
do (``MultiHeadAttention`` with one ``Qwen2_5_VLRotaryPositionalEmbeddings`` shared by every layer,
``TransformerSelfAttentionLayer``, Qwen2's gated MLP) with ``_text_decoder``'s decoder and the one
RMSNorm; its LoRA twin, ``lora_qwen2_5_vl_decoder``, sits beside it and shares its body (the
adapters, torchtune's ``LoRALinear``, are the only difference). torchtune is imported inside the
decoder and whole-model builders, so the vision encoder builds without torchtune installed.
"""

from functools import partial
from typing import Callable, List, Union

from torch import nn

from ._activations import activation as _activation_module
from ._encoder import (
    Qwen2_5_VisionAttention,
    Qwen2_5_VisionBlock,
    Qwen2_5_VisionEncoder,
    Qwen2_5_VisionMLP,
    Qwen2_5_VisionPatchEmbed,
    Qwen2_5_VisionPatchMerger,
)
from ._positional_embeddings import Qwen2_5_VisionRotaryEmbedding
from ._rms_norm import Qwen2_5_VLRMSNorm

__all__ = ["lora_qwen2_5_vl_decoder", "qwen2_5_vision_encoder", "qwen2_5_vl", "qwen2_5_vl_decoder"]

Activation = Union[str, Callable[[], nn.Module]]


def _make_activation(act: Activation) -> nn.Module:
    """An HF ``hidden_act`` name, or (torchtune style) a callable such as ``nn.SiLU`` that makes the module."""
    return _activation_module(act) if isinstance(act, str) else act()


def qwen2_5_vision_encoder(
    *,
    embed_dim: int,
    num_layers: int,
    num_heads: int,
    intermediate_dim: int,
    out_dim: int,
    patch_size: int,
    temporal_patch_size: int,
    spatial_merge_size: int,
    window_size: int,
    fullatt_block_indexes: Union[list[int], tuple[int, ...]],
    in_channels: int,
    activation: Activation = "silu",
    rope_base: float = 10_000.0,
    norm_eps: float = 1e-6,
) -> Qwen2_5_VisionEncoder:
    """Build a Qwen2.5-VL vision encoder (HF ``Qwen2_5_VisionTransformerPretrainedModel``).

    Args:
        embed_dim (int): width of the blocks (HF: ``hidden_size``).
        num_layers (int): number of transformer blocks (HF: ``depth``).
        num_heads (int): attention heads; ``embed_dim / num_heads`` must be a multiple of 4.
        intermediate_dim (int): width of the gated MLP (HF: ``intermediate_size``).
        out_dim (int): output width, the LLM's hidden size (HF: ``out_hidden_size``).
        patch_size (int): patch side in pixels.
        temporal_patch_size (int): frames per patch.
        spatial_merge_size (int): merge block side in patches.
        window_size (int): attention window side in pixels.
        fullatt_block_indexes (list[int]): blocks with full (per frame) attention.
        in_channels (int): image channels.
        activation (str | Callable): MLP activation, an HF name (HF: ``hidden_act``) or a callable
            returning the module, e.g. ``nn.SiLU``. Default "silu", as every released model.
        rope_base (float): base of the 2D rotary (HF: ``rope_parameters["rope_theta"]``), 10000.
        norm_eps (float): RMSNorm epsilon (HF fixes it at 1e-6).

    Returns:
        Qwen2_5_VisionEncoder: float32, randomly initialised (load weights next).

    Raises:
        ValueError: inconsistent sizes.
    """
    if embed_dim % num_heads != 0:
        raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
    head_dim = embed_dim // num_heads
    fullatt = [int(i) for i in fullatt_block_indexes]
    bad = [i for i in fullatt if i < 0]  # indexes >= num_layers match no block (HF runs such configs)
    if bad:
        raise ValueError(f"fullatt_block_indexes {bad} are negative; blocks are numbered 0..{num_layers - 1}")
    merge_unit = spatial_merge_size**2

    def block() -> Qwen2_5_VisionBlock:
        attn = Qwen2_5_VisionAttention(
            num_heads=num_heads,
            head_dim=head_dim,
            qkv_proj=nn.Linear(embed_dim, 3 * embed_dim, bias=True),
            output_proj=nn.Linear(embed_dim, embed_dim, bias=True),
        )
        mlp = Qwen2_5_VisionMLP(
            gate_proj=nn.Linear(embed_dim, intermediate_dim, bias=True),
            down_proj=nn.Linear(intermediate_dim, embed_dim, bias=True),
            up_proj=nn.Linear(embed_dim, intermediate_dim, bias=True),
            activation=_make_activation(activation),
        )
        return Qwen2_5_VisionBlock(
            attn=attn,
            mlp=mlp,
            sa_norm=Qwen2_5_VLRMSNorm(embed_dim, eps=norm_eps),
            mlp_norm=Qwen2_5_VLRMSNorm(embed_dim, eps=norm_eps),
        )

    merger = Qwen2_5_VisionPatchMerger(
        ln_q=Qwen2_5_VLRMSNorm(embed_dim, eps=norm_eps),
        mlp=Qwen2_5_VisionMLP(
            gate_proj=nn.Linear(merge_unit * embed_dim, merge_unit * embed_dim, bias=True),
            down_proj=nn.Linear(merge_unit * embed_dim, out_dim, bias=True),
            activation=nn.GELU(),  # exact (erf) GELU, whatever the blocks use
        ),
        merge_unit=merge_unit,
    )
    return Qwen2_5_VisionEncoder(
        patch_embed=Qwen2_5_VisionPatchEmbed(
            in_channels=in_channels,
            temporal_patch_size=temporal_patch_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
        ),
        rope=Qwen2_5_VisionRotaryEmbedding(head_dim, base=rope_base),
        layers=[block() for _ in range(num_layers)],
        merger=merger,
        patch_size=patch_size,
        spatial_merge_size=spatial_merge_size,
        window_size=window_size,
        fullatt_block_indexes=fullatt,
    )


def _check_text_sizes(*, embed_dim: int, num_heads: int, num_kv_heads: int, mrope_section) -> int:
    """The head dim of a text decoder's sizes, refused by name when they do not fit together."""
    if embed_dim % num_heads:
        raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
    if num_heads % num_kv_heads:
        raise ValueError(f"num_heads {num_heads} is not divisible by num_kv_heads {num_kv_heads}")
    head_dim = embed_dim // num_heads
    if sum(int(n) for n in mrope_section) != head_dim // 2:
        raise ValueError(f"mrope_section {list(mrope_section)} must sum to head_dim // 2 = {head_dim // 2} "
                         f"(head_dim = embed_dim {embed_dim} / num_heads {num_heads})")
    return head_dim


def _text_decoder(*, vocab_size: int, num_layers: int, num_heads: int, num_kv_heads: int, embed_dim: int,
                  intermediate_dim: int, max_seq_len: int, norm_eps: float, rope_base: float, mrope_section,
                  tie_word_embeddings: bool, projection: Callable, mlp: Callable, output: Callable):
    """The one body of ``qwen2_5_vl_decoder`` and its LoRA twin: the sizes checked, one mRoPE shared
    by every layer, HF's ``Qwen2_5_VLAttention`` as torchtune's ``MultiHeadAttention`` (GQA, scale
    head_dim**-0.5, q/k/v biases, no output bias), the norms, the token embedding and the output.
    What differs is made by the callables: ``projection(name, in_dim, out_dim, bias)`` an attention
    projection (``name`` in ``LORA_ATTN_MODULES``), ``mlp()`` a layer's MLP, ``output(embedding)``
    the untied output projection."""
    from torchtune.modules import MultiHeadAttention, TiedLinear, TransformerSelfAttentionLayer

    from ._mrope import Qwen2_5_VLRotaryPositionalEmbeddings
    from ._text_decoder import Qwen2_5_VLTextDecoder

    head_dim = _check_text_sizes(embed_dim=embed_dim, num_heads=num_heads, num_kv_heads=num_kv_heads,
                                 mrope_section=mrope_section)
    rope = Qwen2_5_VLRotaryPositionalEmbeddings(head_dim, mrope_section, base=rope_base, max_seq_len=max_seq_len)
    layers = []
    for _ in range(num_layers):
        attn = MultiHeadAttention(
            embed_dim=embed_dim,
            num_heads=num_heads,
            num_kv_heads=num_kv_heads,
            head_dim=head_dim,
            q_proj=projection("q_proj", embed_dim, num_heads * head_dim, True),
            k_proj=projection("k_proj", embed_dim, num_kv_heads * head_dim, True),
            v_proj=projection("v_proj", embed_dim, num_kv_heads * head_dim, True),
            output_proj=projection("output_proj", embed_dim, embed_dim, False),
            pos_embeddings=rope,
            kv_cache=None,
            max_seq_len=max_seq_len,
            attn_dropout=0.0,
        )
        layers.append(TransformerSelfAttentionLayer(
            attn=attn,
            mlp=mlp(),
            sa_norm=Qwen2_5_VLRMSNorm(embed_dim, eps=norm_eps),
            mlp_norm=Qwen2_5_VLRMSNorm(embed_dim, eps=norm_eps),
        ))
    tok_embeddings = nn.Embedding(vocab_size, embed_dim)
    return Qwen2_5_VLTextDecoder(
        tok_embeddings=tok_embeddings,
        layers=nn.ModuleList(layers),
        max_seq_len=max_seq_len,
        num_heads=num_heads,
        head_dim=head_dim,
        norm=Qwen2_5_VLRMSNorm(embed_dim, eps=norm_eps),
        output=TiedLinear(tok_embeddings) if tie_word_embeddings else output(tok_embeddings),
    )


def qwen2_5_vl_decoder(
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
    mrope_section: Union[list[int], tuple[int, ...]],
    tie_word_embeddings: bool,
):
    """Build the Qwen2.5-VL text decoder (HF ``Qwen2_5_VLTextModel`` + ``lm_head``).

    Each of the ``num_layers`` layers is a torchtune ``TransformerSelfAttentionLayer``: attention
    with q/k/v biases and no output bias, every layer's rotary the one shared
    ``Qwen2_5_VLRotaryPositionalEmbeddings(head_dim, mrope_section, rope_base, max_seq_len)``,
    Qwen2's gated SiLU MLP without biases, HF's RMSNorm rounding (``Qwen2_5_VLRMSNorm``).

    Args:
        vocab_size, num_layers, num_heads, num_kv_heads, embed_dim, intermediate_dim (int): HF's
            vocab_size, num_hidden_layers, num_attention_heads, num_key_value_heads, hidden_size,
            intermediate_size.
        max_seq_len (int): longest sequence (the KV cache's size).
        norm_eps (float): RMSNorm epsilon (HF: rms_norm_eps).
        rope_base (float): rotary base (HF: rope_theta).
        mrope_section (list[int]): frequencies per axis (t, h, w), summing to head_dim / 2.
        tie_word_embeddings (bool): the output projection is the token embedding (torchtune's
            ``TiedLinear``, no weight of its own).

    Returns:
        Qwen2_5_VLTextDecoder: ``[b, s]`` tokens (or ``[b, s, embed_dim]`` embeddings through the
        fusion model) and ``[3, b, s]`` positions -> ``[b, s, vocab_size]`` logits. State-dict keys
        are torchtune's ``qwen2`` ones.

    Raises:
        ValueError: sizes that do not divide (heads, kv heads) or an mrope_section of another sum.
    """
    from torchtune.models.qwen2._component_builders import qwen2_mlp

    return _text_decoder(
        vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        embed_dim=embed_dim, intermediate_dim=intermediate_dim, max_seq_len=max_seq_len, norm_eps=norm_eps,
        rope_base=rope_base, mrope_section=mrope_section, tie_word_embeddings=tie_word_embeddings,
        projection=lambda name, in_dim, out_dim, bias: nn.Linear(in_dim, out_dim, bias=bias),
        mlp=lambda: qwen2_mlp(dim=embed_dim, hidden_dim=intermediate_dim),
        output=lambda embedding: nn.Linear(embed_dim, vocab_size, bias=False),
    )


LORA_ATTN_MODULES = ("q_proj", "k_proj", "v_proj", "output_proj")
# torchao's to_nf4 defaults: 64 weights per scale, 256 scales per second-level scale
NF4_BLOCK = 64 * 256


def check_lora_options(lora_attn_modules, use_dora: bool) -> None:
    """Refuse, by name, attention modules other than ``LORA_ATTN_MODULES`` (or none) and DoRA."""
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
        vocab_size, ..., tie_word_embeddings: as :func:`qwen2_5_vl_decoder`.
        lora_rank (int), lora_alpha (float), lora_dropout (float): the adapters' rank, scale
            numerator (scale = alpha / rank) and dropout.
        use_dora (bool): must be False (DoRA is not verified against a reference here).
        quantize_base (bool): NF4 base weights in the linears with adapters (QLoRA, see ``_lora``).

    Returns:
        Qwen2_5_VLTextDecoder: ``qwen2_5_vl_decoder``'s state-dict keys plus
        ``*.lora_a.weight`` / ``*.lora_b.weight``.

    Raises:
        ValueError: an unknown attention module, ``use_dora``, LoRA on a tied output, a quantized
            linear whose size is not whole NF4 blocks, or the sizes ``qwen2_5_vl_decoder`` refuses.
    """
    from torchtune.models.qwen2._component_builders import lora_qwen2_mlp, qwen2_mlp
    from torchtune.modules.common_utils import reparametrize_as_dtype_state_dict_post_hook

    check_lora_options(lora_attn_modules, use_dora)
    if tie_word_embeddings and apply_lora_to_output:
        raise ValueError("apply_lora_to_output=True with tie_word_embeddings=True: a tied model has no output "
                         "projection of its own to adapt")
    lora = dict(lora_rank=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout, quantize_base=quantize_base)
    if apply_lora_to_mlp and quantize_base:  # lora_qwen2_mlp builds w1 / w3 (dim -> hidden) and w2 (hidden -> dim)
        _check_nf4("mlp.w1", embed_dim, intermediate_dim)
    decoder = _text_decoder(
        vocab_size=vocab_size, num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
        embed_dim=embed_dim, intermediate_dim=intermediate_dim, max_seq_len=max_seq_len, norm_eps=norm_eps,
        rope_base=rope_base, mrope_section=mrope_section, tie_word_embeddings=tie_word_embeddings,
        projection=lambda name, in_dim, out_dim, bias: _adapter_or_linear(
            name, name in lora_attn_modules, in_dim, out_dim, bias=bias, **lora),
        mlp=lambda: (lora_qwen2_mlp(dim=embed_dim, hidden_dim=intermediate_dim, **lora) if apply_lora_to_mlp
                     else qwen2_mlp(dim=embed_dim, hidden_dim=intermediate_dim)),
        # as torchtune, the output projection's base weight is never quantized
        output=lambda embedding: _adapter_or_linear("output", apply_lora_to_output, embed_dim, vocab_size,
                                                    bias=False, **{**lora, "quantize_base": False}),
    )
    if quantize_base:
        # torchtune's QLoRA hook: state_dict() gives the NF4 weights back in the model dtype, on the CPU
        decoder._register_state_dict_hook(partial(reparametrize_as_dtype_state_dict_post_hook,
                                                  dtype=decoder.tok_embeddings.weight.dtype, offload_to_cpu=True))
    return decoder


def qwen2_5_vl(
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
    mrope_section: Union[list[int], tuple[int, ...]],
    tie_word_embeddings: bool,
    image_token_id: int = 151655,
    video_token_id: int = 151656,
    decoder_trainable: bool = True,
    encoder_trainable: bool = True,
):
    """Build Qwen2.5-VL: a torchtune ``EarlyFusionModel`` of the mRoPE Qwen2 decoder and ``encoder``.

    The vision tower is passed built (``qwen2_5_vision_encoder(...)`` or a ``*_vision_encoder``
    model builder), so its sizes are not repeated here; its output width must be ``embed_dim``.

    Args:
        encoder (Qwen2_5_VisionEncoder): the vision tower, used for images and videos alike.
        vocab_size, num_layers, num_heads, num_kv_heads, embed_dim, intermediate_dim (int): decoder
            sizes (HF: vocab_size, num_hidden_layers, num_attention_heads, num_key_value_heads,
            hidden_size, intermediate_size).
        max_seq_len (int): longest sequence (the KV cache size).
        norm_eps (float): RMSNorm epsilon (HF: rms_norm_eps).
        rope_base (float): rotary base (HF: rope_theta).
        mrope_section (list[int]): frequencies per axis (t, h, w), summing to head_dim / 2.
        tie_word_embeddings (bool): output projection shares the token embedding (no separate weight).
        image_token_id, video_token_id (int): placeholder ids (HF config; released 151655, 151656).
        decoder_trainable, encoder_trainable (bool): False freezes that part. Default: all trainable.

    Returns:
        Qwen2_5_VLEarlyFusionModel: state-dict keys ``decoder.*`` (with ``decoder.tok_embeddings``)
        and ``encoders.image.*`` (the one vision tower).
    """
    from ._fusion import Qwen2_5_VLEarlyFusionModel

    out_dim = encoder.merger.mlp.w2.out_features
    if out_dim != embed_dim:
        raise ValueError(f"the vision encoder outputs width {out_dim}, the decoder's embed_dim is {embed_dim}")
    decoder = qwen2_5_vl_decoder(
        vocab_size=vocab_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        embed_dim=embed_dim,
        intermediate_dim=intermediate_dim,
        max_seq_len=max_seq_len,
        norm_eps=norm_eps,
        rope_base=rope_base,
        mrope_section=mrope_section,
        tie_word_embeddings=tie_word_embeddings,
    )
    return Qwen2_5_VLEarlyFusionModel(
        decoder,
        encoder,
        image_token_id=image_token_id,
        video_token_id=video_token_id,
        decoder_trainable=decoder_trainable,
        encoder_trainable=encoder_trainable,
    )
