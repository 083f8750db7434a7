"""Component builders: the Qwen2.5-VL vision encoder, text decoder and whole model from plain sizes.

Arguments take torchtune's names only (``embed_dim``, ``num_layers``, ``num_heads``,
``intermediate_dim``, ``out_dim``, ``activation``, ``rope_base``, ``norm_eps``, ...); an HF config's
names are translated once, where a checkpoint folder is read.

``qwen2_5_vl_decoder`` builds the text model from torchtune's modules as torchtune's own builders
do (``MultiHeadAttention`` with one ``Qwen2_5_VLRotaryPositionalEmbeddings`` shared by every layer,
``TransformerSelfAttentionLayer``, Qwen2's gated MLP) with the two modules of ``_text_decoder``;
its LoRA twin, ``lora_qwen2_5_vl_decoder``, is in ``_lora``. torchtune is imported inside the
decoder and whole-model builders, so the vision encoder builds without torchtune installed.
"""

from typing import Callable, Union

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


def check_text_sizes(*, embed_dim: int, num_heads: int, num_kv_heads: int, mrope_section) -> int:
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


def text_attention(*, q_proj: nn.Module, k_proj: nn.Module, v_proj: nn.Module, output_proj: nn.Module,
                   rope: nn.Module, embed_dim: int, num_heads: int, num_kv_heads: int, max_seq_len: int):
    """HF's ``Qwen2_5_VLAttention`` as torchtune's ``MultiHeadAttention``: GQA with ``num_kv_heads``,
    head_dim = embed_dim / num_heads, scale head_dim**-0.5, the shared mRoPE ``rope`` on q and k."""
    from torchtune.modules import MultiHeadAttention

    return MultiHeadAttention(
        embed_dim=embed_dim,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=embed_dim // num_heads,
        q_proj=q_proj,
        k_proj=k_proj,
        v_proj=v_proj,
        output_proj=output_proj,
        pos_embeddings=rope,
        kv_cache=None,
        max_seq_len=max_seq_len,
        attn_dropout=0.0,
    )


def text_decoder(*, layers: list, tok_embeddings: nn.Embedding, output: nn.Module, embed_dim: int,
                 num_heads: int, max_seq_len: int, norm_eps: float):
    """The decoder around built layers: final norm, output projection (``output``)."""
    from ._text_decoder import Qwen2_5_VLTextDecoder, Qwen2_5_VLTextRMSNorm

    return Qwen2_5_VLTextDecoder(
        tok_embeddings=tok_embeddings,
        layers=nn.ModuleList(layers),
        max_seq_len=max_seq_len,
        num_heads=num_heads,
        head_dim=embed_dim // num_heads,
        norm=Qwen2_5_VLTextRMSNorm(embed_dim, eps=norm_eps),
        output=output,
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
    Qwen2's gated SiLU MLP without biases, HF's RMSNorm rounding (``Qwen2_5_VLTextRMSNorm``).

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
    from torchtune.modules import TiedLinear, TransformerSelfAttentionLayer

    from ._mrope import Qwen2_5_VLRotaryPositionalEmbeddings
    from ._text_decoder import Qwen2_5_VLTextRMSNorm

    head_dim = check_text_sizes(embed_dim=embed_dim, num_heads=num_heads, num_kv_heads=num_kv_heads,
                                mrope_section=mrope_section)
    rope = Qwen2_5_VLRotaryPositionalEmbeddings(head_dim, mrope_section, base=rope_base, max_seq_len=max_seq_len)
    layers = []
    for _ in range(num_layers):
        attn = text_attention(
            q_proj=nn.Linear(embed_dim, num_heads * head_dim, bias=True),
            k_proj=nn.Linear(embed_dim, num_kv_heads * head_dim, bias=True),
            v_proj=nn.Linear(embed_dim, num_kv_heads * head_dim, bias=True),
            output_proj=nn.Linear(embed_dim, embed_dim, bias=False),
            rope=rope, embed_dim=embed_dim, num_heads=num_heads, num_kv_heads=num_kv_heads, max_seq_len=max_seq_len,
        )
        layers.append(TransformerSelfAttentionLayer(
            attn=attn,
            mlp=qwen2_mlp(dim=embed_dim, hidden_dim=intermediate_dim),
            sa_norm=Qwen2_5_VLTextRMSNorm(embed_dim, eps=norm_eps),
            mlp_norm=Qwen2_5_VLTextRMSNorm(embed_dim, eps=norm_eps),
        ))
    tok_embeddings = nn.Embedding(vocab_size, embed_dim)
    output = TiedLinear(tok_embeddings) if tie_word_embeddings else nn.Linear(embed_dim, vocab_size, bias=False)
    return text_decoder(layers=layers, tok_embeddings=tok_embeddings, output=output, embed_dim=embed_dim,
                        num_heads=num_heads, max_seq_len=max_seq_len, norm_eps=norm_eps)


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
