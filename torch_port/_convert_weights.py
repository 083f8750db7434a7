"""Convert Qwen2.5-VL weights between HF Transformers and this port: the vision tower, and whole
checkpoints (``qwen2_5_vl_hf_to_tune`` / ``qwen2_5_vl_tune_to_hf``, table at the end of the file).

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
    "TIED_OUTPUT_KEY",
    "hf_key_name",
    "is_hf_vision_key",
    "qwen2_5_vl_hf_to_tune",
    "qwen2_5_vl_tune_to_hf",
    "qwen2_5_vision_hf_to_tune",
    "qwen2_5_vision_hf_to_tune_with_origin",
    "qwen2_5_vision_tune_to_hf",
    "qwen2_5_vl_hf_to_tune_with_origin",
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


def qwen2_5_vision_hf_to_tune_with_origin(state_dict: dict) -> tuple[dict, dict, list[str]]:
    """Convert what can be converted; return (port state dict, port key -> HF key, problems): the
    loaders add their own problems (missing, misshaped keys) and raise once for all of them."""
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
    converted, _, problems = qwen2_5_vision_hf_to_tune_with_origin(state_dict)
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


# ------------------------------------------------------------------ whole checkpoints
#
# Text keys (HF key after the language-model prefix -> port key under ``decoder.``), the table
# torchtune's Qwen2 conversion also walks:
#
#     embed_tokens.weight                          tok_embeddings.weight
#     layers.{}.self_attn.{q,k,v}_proj.{weight,bias}  layers.{}.attn.{q,k,v}_proj.{weight,bias}
#     layers.{}.self_attn.o_proj.weight            layers.{}.attn.output_proj.weight
#     layers.{}.mlp.gate_proj.weight               layers.{}.mlp.w1.weight
#     layers.{}.mlp.down_proj.weight               layers.{}.mlp.w2.weight
#     layers.{}.mlp.up_proj.weight                 layers.{}.mlp.w3.weight
#     layers.{}.input_layernorm.weight             layers.{}.sa_norm.scale
#     layers.{}.post_attention_layernorm.weight    layers.{}.mlp_norm.scale
#     norm.weight                                  norm.scale
#     (lm_head.weight, no prefix)                  output.weight
#
# Language-model prefix: ``model.`` (released checkpoints) or ``model.language_model.``
# (transformers 5.x ``state_dict()``). Vision keys: ``visual.*`` / ``model.visual.*`` -> ``encoders.image.*``
# through the vision table above. Rotary ``inv_freq`` buffers are skipped.

_TEXT_FROM_HF = {
    "embed_tokens.weight": "tok_embeddings.weight",
    "norm.weight": "norm.scale",
    "layers.{}.input_layernorm.weight": "layers.{}.sa_norm.scale",
    "layers.{}.post_attention_layernorm.weight": "layers.{}.mlp_norm.scale",
    "layers.{}.self_attn.o_proj.weight": "layers.{}.attn.output_proj.weight",
    "layers.{}.mlp.gate_proj.weight": "layers.{}.mlp.w1.weight",
    "layers.{}.mlp.down_proj.weight": "layers.{}.mlp.w2.weight",
    "layers.{}.mlp.up_proj.weight": "layers.{}.mlp.w3.weight",
    **{
        f"layers.{{}}.self_attn.{p}_proj.{kind}": f"layers.{{}}.attn.{p}_proj.{kind}"
        for p in "qkv"
        for kind in ("weight", "bias")
    },
}
_TEXT_TO_HF = {tune: hf for hf, tune in _TEXT_FROM_HF.items()}
_LM_HEAD, _OUTPUT = "lm_head.weight", "output.weight"
_DECODER, _ENCODER = "decoder.", "encoders.image."
_HF_TEXT_PREFIXES = ("model.language_model.", "model.")  # the longer one first
_HF_VISION_PREFIXES_WHOLE = ("model.visual.", "visual.")
TIED_OUTPUT_KEY = _DECODER + _OUTPUT  # what a tied model lacks (its output is the token embedding)


def hf_key_name(tune_key: str) -> str:
    """The HF name (released layout) of a port key, whole-model or vision-encoder, for error
    messages; a key that maps to nothing is returned as is."""
    if tune_key.startswith(_DECODER):
        rest = tune_key[len(_DECODER) :]
        if rest == _OUTPUT:
            return _LM_HEAD
        hf = _map_key(rest, _TEXT_TO_HF)
        return tune_key if hf is None else "model." + hf
    if tune_key.startswith(_ENCODER):
        hf = _map_key(tune_key[len(_ENCODER) :], _TO_HF)
        return tune_key if hf is None else "visual." + hf
    return _map_key(tune_key, _TO_HF) or tune_key


def _split_hf_key(key: str) -> tuple[str, str | None]:
    """("vision" | "text" | "head", key without prefix), or ("unknown", None)."""
    for prefix in _HF_VISION_PREFIXES_WHOLE:
        if key.startswith(prefix):
            return "vision", key[len(prefix) :]
    if key == _LM_HEAD:
        return "head", key
    for prefix in _HF_TEXT_PREFIXES:
        if key.startswith(prefix):
            return "text", key[len(prefix) :]
    return "unknown", None


def qwen2_5_vl_hf_to_tune_with_origin(state_dict: dict) -> tuple[dict, dict]:
    """``qwen2_5_vl_hf_to_tune`` that also returns port key -> HF key (for error messages)."""
    out, origin, problems, vision = {}, {}, [], {}
    for key, value in state_dict.items():
        kind, rest = _split_hf_key(key)
        if kind == "vision":
            vision[key] = value  # the vision conversion strips either prefix itself
            continue
        if kind == "unknown" or rest.endswith("inv_freq"):
            if kind == "unknown":
                problems.append(f"unexpected key {key!r} (not under model., model.language_model., visual., "
                                "model.visual., nor lm_head.weight)")
            continue
        tune_key = _OUTPUT if kind == "head" else _map_key(rest, _TEXT_FROM_HF)
        if tune_key is None:
            problems.append(f"unexpected text key {key!r}")
            continue
        tune_key = _DECODER + tune_key
        if tune_key in out:
            problems.append(f"duplicate key {key!r} (also given as {origin[tune_key]!r})")
            continue
        out[tune_key], origin[tune_key] = value, key
    converted, vision_origin, vision_problems = qwen2_5_vision_hf_to_tune_with_origin(vision)
    problems += vision_problems
    for tune_key, value in converted.items():
        hf_key = vision_origin[tune_key]
        if _ENCODER + tune_key in out:
            problems.append(f"duplicate key {hf_key!r} (also given as {origin[_ENCODER + tune_key]!r})")
            continue
        out[_ENCODER + tune_key], origin[_ENCODER + tune_key] = value, hf_key
    if problems:
        raise ValueError("cannot convert HF Qwen2.5-VL state dict:\n  " + "\n  ".join(problems))
    return out, origin


def drop_tied_output(state_dict: dict[str, torch.Tensor]) -> bool:
    """Remove ``decoder.output.weight`` from a converted state dict of a tied model (released tied
    checkpoints may still carry ``lm_head.weight``). Returns whether it was absent or equal to the
    token embedding; False means the checkpoint is not really tied."""
    head = state_dict.pop(TIED_OUTPUT_KEY, None)
    if head is None:
        return True
    embed = state_dict.get(_DECODER + "tok_embeddings.weight")
    return embed is not None and head.shape == embed.shape and bool(torch.equal(head, embed))


def qwen2_5_vl_hf_to_tune(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Whole HF Qwen2.5-VL state dict -> state dict of ``qwen2_5_vl(...)`` (``Qwen2_5_VLEarlyFusionModel``).

    Args:
        state_dict (dict[str, torch.Tensor]): either HF layout: released checkpoints (``model.layers.*``,
            ``model.embed_tokens.*``, ``model.norm.*``, ``visual.*``, ``lm_head.*``) or transformers 5.x
            ``state_dict()`` (``model.language_model.*``, ``model.visual.*``, ``lm_head.*``). A tied
            checkpoint may lack ``lm_head.weight``; one that has it gets ``decoder.output.weight``
            (the tied model has no such key: ``load_hf_model`` checks it equals the embedding and drops it).

    Returns:
        dict[str, torch.Tensor]: ``decoder.*`` and ``encoders.image.*`` keys; the tensors are the
        inputs (the Conv3d patch weight a reshaped view).

    Raises:
        ValueError: listing every key that does not map (named), and duplicates.
    """
    return qwen2_5_vl_hf_to_tune_with_origin(state_dict)[0]


def qwen2_5_vl_tune_to_hf(
    state_dict: dict[str, torch.Tensor],
    *,
    in_channels: int = 3,
    temporal_patch_size: int = 2,
    patch_size: int = 14,
) -> dict[str, torch.Tensor]:
    """Port state dict -> HF state dict in the RELEASED layout (``model.*``, ``visual.*``, ``lm_head.*``).

    The inverse of ``qwen2_5_vl_hf_to_tune``: exact (same tensors) for a released-layout dict; a
    transformers-5 dict comes back under the released names. A tied model has no ``lm_head.weight``
    (as released tied checkpoints). The patch geometry restores the Conv3d weight (released defaults).

    Raises:
        ValueError: a key outside ``decoder.*`` / ``encoders.image.*`` or one that does not map, named.
    """
    out, vision, unknown = {}, {}, []
    for key, value in state_dict.items():
        if key.startswith(_ENCODER):
            vision[key[len(_ENCODER) :]] = value
            continue
        rest = key[len(_DECODER) :] if key.startswith(_DECODER) else None
        if rest == _OUTPUT:
            out[_LM_HEAD] = value
            continue
        hf_key = None if rest is None else _map_key(rest, _TEXT_TO_HF)
        if hf_key is None:
            unknown.append(key)
            continue
        out["model." + hf_key] = value
    if unknown:
        raise ValueError(f"unexpected port keys (not decoder.* / encoders.image.* of Qwen2.5-VL): {unknown}")
    converted = qwen2_5_vision_tune_to_hf(
        vision, in_channels=in_channels, temporal_patch_size=temporal_patch_size, patch_size=patch_size
    )
    out.update({"visual." + k: v for k, v in converted.items()})
    return out
