"""Convert Qwen2.5-VL vision weights between HF Transformers and this port.

Key table (HF key without prefix -> port key; ``{}`` is the block number)::

    HF (Qwen2_5_VisionTransformerPretrainedModel)   port (Qwen2_5_VisionEncoder)
    ---------------------------------------------   ---------------------------------
    patch_embed.proj.weight [h, C, tp, p, p]        patch_embed.proj.weight [h, C*tp*p*p]
    blocks.{}.norm1.weight                          layers.{}.sa_norm.scale
    blocks.{}.norm2.weight                          layers.{}.mlp_norm.scale
    blocks.{}.attn.qkv.{weight,bias}                layers.{}.attn.qkv_proj.{weight,bias}
    blocks.{}.attn.proj.{weight,bias}               layers.{}.attn.output_proj.{weight,bias}
    blocks.{}.mlp.gate_proj.{weight,bias}           layers.{}.mlp.w1.{weight,bias}
    blocks.{}.mlp.down_proj.{weight,bias}           layers.{}.mlp.w2.{weight,bias}
    blocks.{}.mlp.up_proj.{weight,bias}             layers.{}.mlp.w3.{weight,bias}
    merger.ln_q.weight                              merger.ln_q.scale
    merger.mlp.0.{weight,bias}                      merger.mlp.w1.{weight,bias}
    merger.mlp.2.{weight,bias}                      merger.mlp.w2.{weight,bias}
    rotary_pos_emb.*inv_freq                        (skipped: the port computes it on the fly)

Special cases, handled in the functions:

* prefixes: HF keys may carry ``visual.`` (released checkpoints) or ``model.visual.``
  (transformers 5.x models); both are stripped. Unprefixed keys are vision keys when their first
  component is one of the vision tower's modules (``patch_embed``, ``blocks``, ``merger``,
  ``rotary_pos_emb``); every other key (the language model, ``lm_head``...) is ignored.
* the Conv3d patch weight ``[h, C, tp, p, p]`` becomes ``[h, C*tp*p*p]`` (a reshape: the flatten
  order of a ``pixel_values`` row); back, it needs the patch geometry, the released one by default.
* ``qkv`` stays fused, so every other tensor passes through untouched (same object, same dtype):
  ``tune_to_hf(hf_to_tune(sd))`` is ``sd`` exactly for an unprefixed HF vision state dict.
"""

import re

import torch

__all__ = [
    "is_hf_vision_key",
    "qwen2_5_vision_hf_to_tune",
    "qwen2_5_vision_tune_to_hf",
]

_FROM_HF = {
    "patch_embed.proj.weight": "patch_embed.proj.weight",
    "blocks.{}.norm1.weight": "layers.{}.sa_norm.scale",
    "blocks.{}.norm2.weight": "layers.{}.mlp_norm.scale",
    "blocks.{}.attn.qkv.weight": "layers.{}.attn.qkv_proj.weight",
    "blocks.{}.attn.qkv.bias": "layers.{}.attn.qkv_proj.bias",
    "blocks.{}.attn.proj.weight": "layers.{}.attn.output_proj.weight",
    "blocks.{}.attn.proj.bias": "layers.{}.attn.output_proj.bias",
    "blocks.{}.mlp.gate_proj.weight": "layers.{}.mlp.w1.weight",
    "blocks.{}.mlp.gate_proj.bias": "layers.{}.mlp.w1.bias",
    "blocks.{}.mlp.down_proj.weight": "layers.{}.mlp.w2.weight",
    "blocks.{}.mlp.down_proj.bias": "layers.{}.mlp.w2.bias",
    "blocks.{}.mlp.up_proj.weight": "layers.{}.mlp.w3.weight",
    "blocks.{}.mlp.up_proj.bias": "layers.{}.mlp.w3.bias",
    "merger.ln_q.weight": "merger.ln_q.scale",
    "merger.mlp.0.weight": "merger.mlp.w1.weight",
    "merger.mlp.0.bias": "merger.mlp.w1.bias",
    "merger.mlp.2.weight": "merger.mlp.w2.weight",
    "merger.mlp.2.bias": "merger.mlp.w2.bias",
}
_TO_HF = {tune: hf for hf, tune in _FROM_HF.items()}

_HF_PREFIXES = ("model.visual.", "visual.")
_HF_VISION_MODULES = ("patch_embed", "blocks", "merger", "rotary_pos_emb")
_PATCH_EMBED = "patch_embed.proj.weight"
_LAYER_NUMBER = re.compile(r"\.(\d+)\.")


def _strip_prefix(key: str) -> str | None:
    """The HF vision key without its prefix, or None for a non-vision key."""
    for prefix in _HF_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key if key.split(".", 1)[0] in _HF_VISION_MODULES else None


def is_hf_vision_key(key: str) -> bool:
    """Whether an HF state-dict key (with or without ``visual.``/``model.visual.``) is a vision key."""
    return _strip_prefix(key) is not None


def _map_key(key: str, table: dict[str, str]) -> str | None:
    """Look ``key`` up in ``table``, exactly or with its first layer number abstracted to ``{}``."""
    if key in table:
        return table[key]
    match = _LAYER_NUMBER.search(key)
    if match is None:
        return None
    abstract = key[: match.start()] + ".{}." + key[match.end() :]
    target = table.get(abstract)
    return None if target is None else target.format(match.group(1))


def _hf_to_tune(state_dict: dict) -> tuple[dict, dict, list[str]]:
    """Convert what can be converted; return (port state dict, port key -> HF key, problems)."""
    converted, origin, problems = {}, {}, []
    for key, value in state_dict.items():
        vision_key = _strip_prefix(key)
        if vision_key is None or vision_key.endswith("inv_freq"):
            continue  # not part of the vision tower, or a rotary buffer the port recomputes
        tune_key = _map_key(vision_key, _FROM_HF)
        if tune_key is None:
            problems.append(f"unexpected vision key {key!r}")
            continue
        if tune_key in converted:
            problems.append(f"duplicate vision key {key!r} (also given as {origin[tune_key]!r})")
            continue
        if tune_key == _PATCH_EMBED and value.ndim == 5:
            value = value.reshape(value.shape[0], -1)  # Conv3d [h, C, tp, p, p] -> Linear [h, C*tp*p*p]
        converted[tune_key] = value
        origin[tune_key] = key
    return converted, origin, problems


def qwen2_5_vision_hf_to_tune(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF vision state dict -> port state dict.

    Args:
        state_dict (dict[str, torch.Tensor]): HF keys with or without ``visual.`` /
            ``model.visual.``; non-vision keys are ignored, rotary ``inv_freq`` buffers skipped.

    Returns:
        dict[str, torch.Tensor]: port keys; tensors are the inputs (the patch weight a reshaped view).

    Raises:
        ValueError: listing every vision key that does not map, and duplicates.
    """
    converted, _, problems = _hf_to_tune(state_dict)
    if problems:
        raise ValueError("cannot convert HF vision state dict:\n  " + "\n  ".join(problems))
    return converted


def qwen2_5_vision_tune_to_hf(
    state_dict: dict[str, torch.Tensor],
    *,
    in_channels: int = 3,
    temporal_patch_size: int = 2,
    patch_size: int = 14,
) -> dict[str, torch.Tensor]:
    """Port state dict -> HF vision state dict without prefix (the inverse of the above).

    Args:
        state_dict (dict[str, torch.Tensor]): port keys.
        in_channels (int): patch geometry to restore the Conv3d weight (released: 3).
        temporal_patch_size (int): released: 2.
        patch_size (int): released: 14.

    Returns:
        dict[str, torch.Tensor]: HF keys (``patch_embed.proj.weight`` as ``[h, C, tp, p, p]``).

    Raises:
        ValueError: on keys that do not map, or a patch weight that does not fit the geometry.
    """
    out, unknown = {}, []
    for key, value in state_dict.items():
        hf_key = _map_key(key, _TO_HF)
        if hf_key is None:
            unknown.append(key)
            continue
        if key == _PATCH_EMBED and value.ndim == 2:
            geometry = (in_channels, temporal_patch_size, patch_size, patch_size)
            if value.shape[1] != in_channels * temporal_patch_size * patch_size * patch_size:
                raise ValueError(
                    f"patch_embed.proj.weight has {value.shape[1]} inputs, not C*tp*p*p for "
                    f"(C, tp, p) = {geometry[:3]}; pass in_channels/temporal_patch_size/patch_size"
                )
            value = value.reshape(value.shape[0], *geometry)  # Linear -> Conv3d weight
        out[hf_key] = value
    if unknown:
        raise ValueError(f"unexpected port keys: {unknown}")
    return out
