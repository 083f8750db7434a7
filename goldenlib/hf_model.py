"""The HF side of the whole-model goldens: `Qwen2_5_VLForConditionalGeneration`'s forward with hooks that
record the same stages `reference.model_forward` traces (float64 NumPy; int64 for positions).

HF is always fed `mm_token_type_ids` (without them HF 5.x silently uses 1-D positions). The tower's
stages of each run are read with `goldenlib.hf_vision.hf_vision_trace` on the model's own tower.
"""

from __future__ import annotations

import numpy as np
import torch

from .hf_vision import hf_vision_trace


def parts(model):
    """(tower, text model) of a Qwen2_5_VLForConditionalGeneration: transformers 4.52+ keep both under
    ``model.model``; 4.49-4.51 kept the tower at ``model.visual`` and the text model at ``model.model``."""
    inner = model.model
    text = getattr(inner, "language_model", inner)
    visual = getattr(inner, "visual", None) or getattr(model, "visual")
    return visual, text


def _tensor(x, dtype):
    return None if x is None else torch.as_tensor(np.asarray(x), dtype=dtype)


def hf_model_trace(model, input_ids, mm_token_type_ids, *, pixel_values=None, image_grid_thw=None,
                   pixel_values_videos=None, video_grid_thw=None, second_per_grid_ts=None, attention_mask=None,
                   tower=True):
    """Run ``model`` (any float dtype) once and return its stages by the reference's names. ``tower``:
    also the tower's own stages (``visual.*`` / ``visual_video.*``, one extra tower run per medium)."""
    visual, text = parts(model)
    dtype = next(model.parameters()).dtype
    captured, hooks = {}, []

    def keep(name):
        return lambda module, args, output: captured.__setitem__(name, output.detach().clone())

    def keep_kwargs(module, args, kwargs):
        captured["lm.inputs_embeds"] = kwargs["inputs_embeds"].detach().clone()
        captured["position_ids"] = kwargs["position_ids"]

    hooks.append(text.register_forward_pre_hook(keep_kwargs, with_kwargs=True))
    hooks.append(text.rotary_emb.register_forward_hook(
        lambda m, args, output: captured.update(mrope_cos=output[0].detach().clone(),
                                                mrope_sin=output[1].detach().clone())))
    for i, layer in enumerate(text.layers):
        hooks.append(layer.register_forward_hook(keep(f"lm.layers.{i}.output")))
        hooks.append(layer.post_attention_layernorm.register_forward_pre_hook(
            lambda m, args, i=i: captured.__setitem__(f"lm.layers.{i}.attn_residual", args[0].detach().clone())))
    hooks.append(text.norm.register_forward_hook(keep("lm.norm")))
    try:
        with torch.no_grad():
            out = model(input_ids=_tensor(input_ids, torch.long), mm_token_type_ids=_tensor(mm_token_type_ids, torch.int),
                        pixel_values=_tensor(pixel_values, dtype), image_grid_thw=_tensor(image_grid_thw, torch.long),
                        pixel_values_videos=_tensor(pixel_values_videos, dtype),
                        video_grid_thw=_tensor(video_grid_thw, torch.long),
                        second_per_grid_ts=_tensor(second_per_grid_ts, torch.float32),
                        attention_mask=_tensor(attention_mask, torch.long), use_cache=False)
    finally:
        for hook in hooks:
            hook.remove()
    stages = {name: value.double().numpy() for name, value in captured.items() if name != "position_ids"}
    position_ids = captured["position_ids"]
    b, s = np.shape(input_ids)
    if position_ids is None:  # no grid: HF's text model makes 0..s-1 itself
        position_ids = torch.arange(s).view(1, 1, -1).expand(3, b, -1)
    stages["position_ids"] = position_ids.long().numpy()
    stages["lm.logits"] = out.logits.detach().double().numpy()
    if tower:
        for prefix, pixels, grid in (("visual.", pixel_values, image_grid_thw),
                                     ("visual_video.", pixel_values_videos, video_grid_thw)):
            if pixels is not None:
                trace = hf_vision_trace(visual, pixels, grid)  # the tower casts them to its own dtype
                stages.update({prefix + name: value for name, value in trace.items()})
    return stages
