"""The vision tower's state dict: expected names and shapes, and random test weights.

Names are HF's, without the "visual." / "model.visual." prefix.
"""

from __future__ import annotations

import zlib

import numpy as np

from .vision_config import VisionConfig


def vision_weight_shapes(config: VisionConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of `Qwen2_5_VisionTransformerPretrainedModel.state_dict()` and its shape."""
    c = config
    h, inter, merged = c.hidden_size, c.intermediate_size, c.hidden_size * c.merge_unit
    shapes = {
        # Conv3d(C -> hidden, kernel = stride = (tp, p, p)), no bias
        "patch_embed.proj.weight": (h, c.in_channels, c.temporal_patch_size, c.patch_size, c.patch_size),
    }
    for i in range(c.depth):
        b = f"blocks.{i}."
        shapes.update({
            b + "norm1.weight": (h,),
            b + "norm2.weight": (h,),
            b + "attn.qkv.weight": (3 * h, h),
            b + "attn.qkv.bias": (3 * h,),
            b + "attn.proj.weight": (h, h),
            b + "attn.proj.bias": (h,),
            b + "mlp.gate_proj.weight": (inter, h),
            b + "mlp.gate_proj.bias": (inter,),
            b + "mlp.up_proj.weight": (inter, h),
            b + "mlp.up_proj.bias": (inter,),
            b + "mlp.down_proj.weight": (h, inter),
            b + "mlp.down_proj.bias": (h,),
        })
    shapes.update({
        "merger.ln_q.weight": (h,),
        "merger.mlp.0.weight": (merged, merged),
        "merger.mlp.0.bias": (merged,),
        "merger.mlp.2.weight": (c.out_hidden_size, merged),
        "merger.mlp.2.bias": (c.out_hidden_size,),
    })
    return shapes


def weight_problems(weights: dict, config: VisionConfig) -> tuple[list[str], list[str], list[str]]:
    """(missing names, extra names, "name: shape X, expected Y" lines) against `vision_weight_shapes`."""
    expected = vision_weight_shapes(config)
    missing = [name for name in expected if name not in weights]
    extra = sorted(name for name in weights if name not in expected)
    misshaped = [f"{name}: shape {tuple(np.shape(weights[name]))}, expected {_shapes_text(name, shape)}"
                 for name, shape in expected.items()
                 if name in weights and tuple(np.shape(weights[name])) not in _accepted_shapes(name, shape)]
    return missing, extra, misshaped


def _accepted_shapes(name: str, shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    # Newer transformers releases store the patch embedding as a Linear [hidden, C*tp*p*p]
    # instead of the Conv3d [hidden, C, tp, p, p]: the same numbers, read row-major either way.
    if name == "patch_embed.proj.weight":
        return shape, (shape[0], int(np.prod(shape[1:])))
    return (shape,)


def _shapes_text(name: str, shape: tuple[int, ...]) -> str:
    return " or ".join(str(s) for s in _accepted_shapes(name, shape))


def describe_problems(missing: list[str], extra: list[str], misshaped: list[str]) -> str:
    lines = []
    if missing:
        lines.append(f"{len(missing)} missing: " + ", ".join(missing))
    if extra:
        lines.append(f"{len(extra)} unexpected: " + ", ".join(extra))
    if misshaped:
        lines.append(f"{len(misshaped)} wrongly shaped: " + "; ".join(misshaped))
    return "\n".join(lines)


def _rng(seed: int, name: str) -> np.random.Generator:
    # One stream per (seed, tensor name): the values of a tensor do not depend on which other
    # tensors exist or on the order they are drawn in, and PCG64 gives the same bits everywhere.
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, zlib.crc32(name.encode())])))


def seeded_normal(seed: int, name: str, shape) -> np.ndarray:
    """Standard-normal float32 values of tensor `name`, from the stream of (seed, name)."""
    return _rng(int(seed), name).standard_normal(shape, dtype=np.float32)


def random_weights(config: VisionConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 weights under HF names; reproducible across platforms.

    Every tensor is random (no zero biases, no unit norms), so a term that a port forgets
    shows up as an error instead of vanishing. Scales keep activations O(1) through 32 blocks:
    matrices ~ N(0, 1/fan_in), biases ~ 0.05 N(0, 1), norm weights ~ 1 + 0.1 N(0, 1).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    weights = {}
    for name, shape in vision_weight_shapes(config).items():
        w = _rng(int(seed), name).standard_normal(shape, dtype=np.float32)
        if name.endswith(("norm1.weight", "norm2.weight", "ln_q.weight")):
            w *= np.float32(0.1)
            w += np.float32(1.0)
        elif name.endswith(".bias"):
            w *= np.float32(0.05)
        else:  # a matrix (or the conv kernel): fan_in = everything but the output axis
            w *= np.float32(1.0 / np.sqrt(np.prod(shape[1:])))
        weights[name] = w
    return weights
