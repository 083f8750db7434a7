"""Component builders: assemble the Qwen2.5-VL vision encoder and the whole model from plain sizes.

``qwen2_5_vl`` (the whole model) imports torchtune inside the function, so this file stays
importable without torchtune.

Arguments take torchtune's names (``embed_dim``, ``num_layers``, ``num_heads``,
``intermediate_dim``, ``out_dim``, ``activation``, ``rope_base``, ``norm_eps``, ...). HF's names for
the same sizes (``hidden_size``, ``depth``, ``intermediate_size``, ``out_hidden_size``,
``hidden_act``) are accepted too, so configs written against either keep working.
"""

from types import MethodType
from typing import Callable, Optional, Union

from torch import nn

from ._activations import activation as _activation_module
from ._encoder import (
    Qwen2_5_VisionAttention,
    Qwen2_5_VisionBlock,
    Qwen2_5_VisionEncoder,
    Qwen2_5_VisionMLP,
    Qwen2_5_VisionPatchEmbed,
    Qwen2_5_VisionPatchMerger,
    Qwen2_5_VisionRMSNorm,
)
from ._positional_embeddings import Qwen2_5_VisionRotaryEmbedding

__all__ = ["qwen2_5_vision_encoder", "qwen2_5_vl", "qwen2_5_vl_decoder"]

Activation = Union[str, Callable[[], nn.Module]]


def _one_of(tune_name: str, tune_value, hf_name: str, hf_value, default=None):
    """The value given under torchtune's name or HF's (both only if equal), else ``default``."""
    if tune_value is not None and hf_value is not None and tune_value != hf_value:
        raise ValueError(
            f"qwen2_5_vision_encoder got both {tune_name}={tune_value!r} and {hf_name}={hf_value!r} "
            "(two names for one size); give one"
        )
    value = tune_value if tune_value is not None else hf_value
    if value is None:
        if default is None:
            raise TypeError(f"qwen2_5_vision_encoder needs {tune_name} (or HF's {hf_name})")
        return default
    return value


def _make_activation(act: Activation) -> nn.Module:
    """An HF ``hidden_act`` name, or (torchtune style) a callable such as ``nn.SiLU`` that makes the module."""
    return _activation_module(act) if isinstance(act, str) else act()


def qwen2_5_vision_encoder(
    *,
    embed_dim: Optional[int] = None,
    num_layers: Optional[int] = None,
    num_heads: int,
    intermediate_dim: Optional[int] = None,
    out_dim: Optional[int] = None,
    patch_size: int,
    temporal_patch_size: int,
    spatial_merge_size: int,
    window_size: int,
    fullatt_block_indexes: Union[list[int], tuple[int, ...]],
    in_channels: int,
    activation: Optional[Activation] = None,
    rope_base: float = 10_000.0,
    norm_eps: float = 1e-6,
    hidden_size: Optional[int] = None,
    depth: Optional[int] = None,
    intermediate_size: Optional[int] = None,
    out_hidden_size: Optional[int] = None,
    hidden_act: Optional[str] = None,
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
        hidden_size, depth, intermediate_size, out_hidden_size, hidden_act: HF's names for the
            sizes above; either name may be given, both only with the same value.

    Returns:
        Qwen2_5_VisionEncoder: float32, randomly initialised (load weights next).

    Raises:
        TypeError: a size given under neither name.
        ValueError: inconsistent sizes, or one size given twice with two values.
    """
    embed_dim = _one_of("embed_dim", embed_dim, "hidden_size", hidden_size)
    num_layers = _one_of("num_layers", num_layers, "depth", depth)
    intermediate_dim = _one_of("intermediate_dim", intermediate_dim, "intermediate_size", intermediate_size)
    out_dim = _one_of("out_dim", out_dim, "out_hidden_size", out_hidden_size)
    activation = _one_of("activation", activation, "hidden_act", hidden_act, default="silu")
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
            sa_norm=Qwen2_5_VisionRMSNorm(embed_dim, eps=norm_eps),
            mlp_norm=Qwen2_5_VisionRMSNorm(embed_dim, eps=norm_eps),
        )

    merger = Qwen2_5_VisionPatchMerger(
        ln_q=Qwen2_5_VisionRMSNorm(embed_dim, eps=norm_eps),
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
) -> nn.Module:
    """The Qwen2.5-VL text decoder: torchtune's ``qwen2`` with mRoPE in every layer.

    torchtune's ``qwen2`` builds one 1-D ``Qwen2RotaryPositionalEmbeddings`` shared by all layers;
    it is replaced by one shared ``Qwen2_5_VLRotaryPositionalEmbeddings(head_dim, mrope_section,
    rope_base, max_seq_len)``. Attention matches HF's ``Qwen2_5_VLAttention``: q/k/v with bias,
    output without, head_dim = embed_dim / num_heads, GQA with ``num_kv_heads``, scale head_dim**-0.5.

    Returns:
        torchtune ``TransformerDecoder``: ``[b, s, embed_dim]`` embeddings (after fusion) ->
        ``[b, s, vocab_size]`` logits.
    """
    from torchtune.models.qwen2._component_builders import qwen2

    if embed_dim % num_heads:
        raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
    if num_heads % num_kv_heads:
        raise ValueError(f"num_heads {num_heads} is not divisible by num_kv_heads {num_kv_heads}")
    decoder = qwen2(
        vocab_size=vocab_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        embed_dim=embed_dim,
        intermediate_dim=intermediate_dim,
        max_seq_len=max_seq_len,
        norm_eps=norm_eps,
        rope_base=rope_base,
        tie_word_embeddings=tie_word_embeddings,
    )
    return as_qwen2_5_vl_decoder(decoder, head_dim=embed_dim // num_heads, mrope_section=mrope_section,
                                 rope_base=rope_base, max_seq_len=max_seq_len, norm_eps=norm_eps)


def as_qwen2_5_vl_decoder(decoder, *, head_dim: int, mrope_section, rope_base: float, max_seq_len: int,
                          norm_eps: float):
    """Make a torchtune Qwen2 decoder (``qwen2`` or ``lora_qwen2``) compute what HF's Qwen2.5-VL text
    model computes, in place; the state-dict keys do not change. Returns the decoder.

    * one ``Qwen2_5_VLRotaryPositionalEmbeddings`` shared by every layer (mRoPE, [3, b, s] positions);
    * HF's RMSNorm: torchtune's multiplies the float32 normal by the (bf16) scale in float32, one
      rounding, and F.rms_norm warns on the dtype mix; HF's Qwen2_5_VLRMSNorm casts back first and
      multiplies in the model dtype (same parameter name, ``scale``);
    * the output projection run once, then chunked (see :func:`_output_then_chunk`).
    """
    from ._mrope import Qwen2_5_VLRotaryPositionalEmbeddings

    embed_dim = decoder.norm.scale.shape[0]
    rope = Qwen2_5_VLRotaryPositionalEmbeddings(head_dim, mrope_section, base=rope_base, max_seq_len=max_seq_len)
    for layer in decoder.layers:
        layer.attn.pos_embeddings = rope
        layer.sa_norm = Qwen2_5_VisionRMSNorm(embed_dim, eps=norm_eps)
        layer.mlp_norm = Qwen2_5_VisionRMSNorm(embed_dim, eps=norm_eps)
    decoder.norm = Qwen2_5_VisionRMSNorm(embed_dim, eps=norm_eps)
    decoder.chunked_output = MethodType(_output_then_chunk, decoder)
    return decoder


def _output_then_chunk(decoder, last_hidden_state):
    """torchtune's ``chunked_output`` with the projection done once, then chunked alike
    (``.chunk(num_output_chunks, dim=1)``): per-chunk projections make the backward compute the
    [vocab, dim] weight gradient once per chunk from thin [s / chunks] products and sum them (with a
    151936 vocabulary, 1.5 s of a 5 s training step on 2 cores). The float32 upcast, which the
    chunks exist to bound, still happens chunk by chunk in ``CEWithChunkedOutputLoss``.
    [b, s, dim] -> list of [b, s / chunks, vocab] in the model dtype."""
    return list(decoder.output(last_hidden_state).chunk(decoder.num_output_chunks, dim=1))


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
        max_seq_len (int): longest sequence (KV cache size, cached rotary table).
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
