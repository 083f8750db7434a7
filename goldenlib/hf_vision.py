"""The HF side of the tower goldens: HF's Qwen2.5-VL vision tower, built from a `reference.VisionConfig`
and a weight dict, with a trace of the same stages the NumPy reference records (in original patch order)."""

from __future__ import annotations

import numpy as np
import torch

from reference.vision import patch_rows
from reference.vision_config import VisionConfig
from reference.weights import describe_problems, weight_problems

from . import hf_compat


def hf_config_dict(config: VisionConfig) -> dict:
    """Keyword arguments for `Qwen2_5_VLVisionConfig`. Every size is set explicitly: HF's defaults
    (hidden_size 3584, out_hidden_size 3584) are not the released tower's."""
    return {
        "depth": config.depth,
        "hidden_size": config.hidden_size,
        "num_heads": config.num_heads,
        "intermediate_size": config.intermediate_size,
        "out_hidden_size": config.out_hidden_size,
        "patch_size": config.patch_size,
        "temporal_patch_size": config.temporal_patch_size,
        "spatial_merge_size": config.spatial_merge_size,
        "window_size": config.window_size,
        "fullatt_block_indexes": [int(i) for i in config.fullatt_block_indexes],
        "in_channels": config.in_channels,
        "hidden_act": config.hidden_act,
        "rope_parameters": {"rope_type": "axial", "rope_theta": float(config.rope_theta)},
    }


def build_hf_vision(config: VisionConfig, weights: dict, attn_implementation: str = "sdpa"):
    """`Qwen2_5_VisionTransformerPretrainedModel` in float32, eval mode, holding exactly `weights`."""
    missing, extra, misshaped = weight_problems(weights, config)
    if missing or extra or misshaped:
        raise ValueError("weights do not fit the config:\n" + describe_problems(missing, extra, misshaped))
    hf_cfg = hf_compat.vision_config_class()(**hf_config_dict(config))
    with hf_compat.no_init_weights():  # every parameter is overwritten below; skip the random init
        model = hf_compat.vision_tower_class()._from_config(
            hf_cfg, attn_implementation=attn_implementation, **hf_compat.dtype_kwarg(torch.float32))
    state = {name: torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)) for name, w in weights.items()}
    model.load_state_dict(state, strict=True)
    model.eval()
    # the rotary buffer is computed in __init__ (not a parameter): make sure skipping init kept it
    rot = model.rotary_pos_emb
    half = config.head_dim // 2
    expect = 1.0 / (config.rope_theta ** (torch.arange(0, half, 2, dtype=torch.float) / half))
    if not torch.equal(rot.inv_freq, expect):
        raise RuntimeError("HF rotary inv_freq is not the expected float32 table")
    assert model.config._attn_implementation == attn_implementation, model.config._attn_implementation
    return model


def hf_vision_trace(model, pixel_values, grid_thw) -> dict:
    """Run `model` and return its stages as float64 NumPy arrays (int64 for indexes), named as in
    `reference.vision.vision_forward`'s trace, all in original patch order.

    HF keeps the block outputs and the merger's norm in window order; they are put back with the
    inverse of window_index expanded to patch rows.
    """
    cfg = model.config
    unit = cfg.spatial_merge_size ** 2
    pixel_values = torch.as_tensor(np.asarray(pixel_values), dtype=torch.float32)
    grid = torch.as_tensor(np.asarray(grid_thw), dtype=torch.int64).reshape(-1, 3)

    captured: dict = {}
    cu_used: dict = {}
    hooks = []

    def keep(name):
        def hook(module, args, output):
            captured[name] = output.detach().clone()
        return hook

    hooks.append(model.patch_embed.register_forward_hook(keep("patch_embed")))
    for i, blk in enumerate(model.blocks):
        hooks.append(blk.register_forward_hook(keep(f"blocks.{i}.output")))
        # norm2's input is x + attn(norm1(x)), the residual stream after attention
        hooks.append(blk.norm2.register_forward_pre_hook(
            lambda m, args, i=i: captured.__setitem__(f"blocks.{i}.attn_residual", args[0].detach().clone())))
        hooks.append(blk.register_forward_pre_hook(
            lambda m, args, kwargs, i=i: cu_used.__setitem__(i, kwargs["cu_seqlens"].detach().clone()),
            with_kwargs=True))
    # the rotary (cos, sin) every block receives, in window order (the rotary module's own output is
    # per patch in late 5.x but a per-position table in 4.x, so it is read at the blocks' input)
    hooks.append(model.blocks[0].register_forward_pre_hook(
        lambda m, args, kwargs: captured.update(rotary_cos=kwargs["position_embeddings"][0].detach().clone(),
                                                rotary_sin=kwargs["position_embeddings"][1].detach().clone()),
        with_kwargs=True))
    hooks.append(model.merger.ln_q.register_forward_hook(keep("merger.ln_q")))
    try:
        with torch.no_grad():
            out = model(pixel_values, grid_thw=grid)
    finally:
        for h in hooks:
            h.remove()

    # the index tensors, as the model's forward computes them
    window_index, cu_window = hf_compat.vision_window_index(model, grid)
    cu_full = hf_compat.vision_cu_seqlens(grid)
    # check them against what the blocks actually received
    for i, cu in cu_used.items():
        expect = cu_full if i in cfg.fullatt_block_indexes else cu_window
        if not torch.equal(cu.long(), expect.long()):
            raise RuntimeError(f"block {i} got cu_seqlens {cu.tolist()}, expected {expect.tolist()}")

    rows = torch.from_numpy(patch_rows(window_index.long().numpy(), unit))  # original row at each window position
    inverse = torch.argsort(rows)  # window order -> original order
    trace = {}
    for name, value in captured.items():
        if name.startswith("blocks.") or name in ("merger.ln_q", "rotary_cos", "rotary_sin"):
            value = value[inverse]
        trace[name] = value.double().numpy()
    trace["output"] = hf_compat.tower_output(out).detach().double().numpy()
    trace["window_index"] = window_index.long().numpy()
    trace["cu_seqlens"] = cu_full.long().numpy()
    trace["cu_window_seqlens"] = cu_window.long().numpy()
    return trace
