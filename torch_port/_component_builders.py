"""Component builders: assemble the Qwen2.5-VL vision encoder from plain sizes (no hidden defaults)."""

from torch import nn

from ._encoder import (
    FeedForward,
    Qwen2_5_VisionAttention,
    Qwen2_5_VisionBlock,
    Qwen2_5_VisionEncoder,
    Qwen2_5_VisionPatchEmbed,
    Qwen2_5_VisionPatchMerger,
    RMSNorm,
)
from ._positional_embeddings import Qwen2_5_VisionRotaryEmbedding

__all__ = ["qwen2_5_vision_encoder"]

# HF ``hidden_act`` names -> activation modules ("gelu" is the exact erf GELU, as in HF's ACT2FN)
_ACTIVATIONS = {
    "silu": lambda: nn.SiLU(),
    "swish": lambda: nn.SiLU(),
    "gelu": lambda: nn.GELU(),
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
    "relu": lambda: nn.ReLU(),
}


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"unsupported hidden_act {name!r}; supported: {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


def qwen2_5_vision_encoder(
    *,
    depth: int,
    hidden_size: int,
    num_heads: int,
    intermediate_size: int,
    out_hidden_size: int,
    patch_size: int,
    temporal_patch_size: int,
    spatial_merge_size: int,
    window_size: int,
    fullatt_block_indexes: list[int] | tuple[int, ...],
    in_channels: int,
    hidden_act: str = "silu",
) -> Qwen2_5_VisionEncoder:
    """Build a Qwen2.5-VL vision encoder (HF ``Qwen2_5_VisionTransformerPretrainedModel``).

    Args:
        depth (int): number of transformer blocks.
        hidden_size (int): width of the blocks.
        num_heads (int): attention heads; ``hidden_size / num_heads`` must be a multiple of 4.
        intermediate_size (int): width of the gated MLP.
        out_hidden_size (int): output width (the LLM's hidden size).
        patch_size (int): patch side in pixels.
        temporal_patch_size (int): frames per patch.
        spatial_merge_size (int): merge block side in patches.
        window_size (int): attention window side in pixels.
        fullatt_block_indexes (list[int]): blocks with full (per frame) attention.
        in_channels (int): image channels.
        hidden_act (str): MLP activation ("silu" in every released model).

    Returns:
        Qwen2_5_VisionEncoder: float32, randomly initialised (load weights next).

    Raises:
        ValueError: on inconsistent sizes.
    """
    if hidden_size % num_heads != 0:
        raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
    head_dim = hidden_size // num_heads
    fullatt = [int(i) for i in fullatt_block_indexes]
    bad = [i for i in fullatt if not 0 <= i < depth]
    if bad:
        raise ValueError(f"fullatt_block_indexes {bad} out of range for depth {depth}")
    merge_unit = spatial_merge_size**2

    def block() -> Qwen2_5_VisionBlock:
        attn = Qwen2_5_VisionAttention(
            num_heads=num_heads,
            head_dim=head_dim,
            qkv_proj=nn.Linear(hidden_size, 3 * hidden_size, bias=True),
            output_proj=nn.Linear(hidden_size, hidden_size, bias=True),
        )
        mlp = FeedForward(
            gate_proj=nn.Linear(hidden_size, intermediate_size, bias=True),
            down_proj=nn.Linear(intermediate_size, hidden_size, bias=True),
            up_proj=nn.Linear(hidden_size, intermediate_size, bias=True),
            activation=_activation(hidden_act),
        )
        return Qwen2_5_VisionBlock(
            attn=attn, mlp=mlp, sa_norm=RMSNorm(hidden_size, eps=1e-6), mlp_norm=RMSNorm(hidden_size, eps=1e-6)
        )

    merger = Qwen2_5_VisionPatchMerger(
        ln_q=RMSNorm(hidden_size, eps=1e-6),
        mlp=FeedForward(
            gate_proj=nn.Linear(merge_unit * hidden_size, merge_unit * hidden_size, bias=True),
            down_proj=nn.Linear(merge_unit * hidden_size, out_hidden_size, bias=True),
            activation=nn.GELU(),  # exact (erf) GELU
        ),
        merge_unit=merge_unit,
    )
    return Qwen2_5_VisionEncoder(
        patch_embed=Qwen2_5_VisionPatchEmbed(
            in_channels=in_channels,
            temporal_patch_size=temporal_patch_size,
            patch_size=patch_size,
            embed_dim=hidden_size,
        ),
        rope=Qwen2_5_VisionRotaryEmbedding(head_dim),
        layers=[block() for _ in range(depth)],
        merger=merger,
        patch_size=patch_size,
        spatial_merge_size=spatial_merge_size,
        window_size=window_size,
        fullatt_block_indexes=fullatt,
    )
