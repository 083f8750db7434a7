"""Stage dumps of the whole-model goldens written as a porter would: HF's own Qwen2.5-VL model (the
golden's tiny model, loaded from its HF folder in any dtype) run with hooks (``goldenlib.hf_model``) on
the golden's inputs, with a mistake planted where asked."""

from __future__ import annotations

import functools
import tempfile

import torch

from goldenlib import store
from goldenlib.hf_model import hf_model_trace, parts
from goldenlib.model_folders import write_model_folder

INPUTS = ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts")
INTEGER = ("input_ids", "mm_token_type_ids", "position_ids", "visual.window_index", "visual.cu_seqlens",
           "visual.cu_window_seqlens", "visual_video.window_index", "visual_video.cu_seqlens",
           "visual_video.cu_window_seqlens")


@functools.cache
def hf_model(name, dtype="float32"):
    """HF's Qwen2_5_VLForConditionalGeneration of tiny model ``name`` from its folder, in ``dtype``."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    with tempfile.TemporaryDirectory() as folder:
        write_model_folder(name, folder)
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, dtype=getattr(torch, dtype))
    return model.eval()


# HF keeps the tower's rotary tables in float32 whatever the model's dtype (its text rotary it casts).
FLOAT32_STAGES = ("visual.rotary_cos", "visual.rotary_sin", "visual_video.rotary_cos", "visual_video.rotary_sin")


def _scatter_shifted(ids, token_ids, shift):
    """A pre-hook on the text model: the vision rows moved ``shift`` rows after their placeholders, the
    placeholders' own rows back to the token embedding (a port's off-by-one scatter)."""
    ids = torch.as_tensor(ids)
    mask = torch.isin(ids, torch.tensor(token_ids))

    def hook(module, args, kwargs):
        x = kwargs["inputs_embeds"]
        out = module.embed_tokens(ids).to(x.dtype)
        b, s = mask.nonzero(as_tuple=True)
        out[b, (s + shift).clamp(0, x.shape[1] - 1)] = x[b, s]
        kwargs["inputs_embeds"] = out
        return args, kwargs

    return hook


def hf_dump(case, dtype="float32", *, positions_1d=False, sections=None, eps=None, scatter_shift=0):
    """{stage: tensor in ``dtype`` (integers as int64; the tower's rotary tables float32, as HF keeps them)}
    of HF's model on golden ``case``'s inputs. Planted: ``positions_1d`` (called without mm_token_type_ids:
    HF's 1-D fallback), ``sections`` (the rotary's mrope_section replaced), ``eps`` (every text RMSNorm's eps
    replaced), ``scatter_shift`` (the vision rows scattered that many rows after their placeholders)."""
    tensors, meta = store.read_case(case)
    model = hf_model(meta["model"], dtype)
    _, text = parts(model)
    norms = [m for m in text.modules() if type(m).__name__.endswith("RMSNorm")]
    saved = text.rotary_emb.mrope_section, [m.variance_epsilon for m in norms]
    hook = None
    if scatter_shift:
        hook = text.register_forward_pre_hook(_scatter_shifted(tensors["input_ids"], [
            model.config.image_token_id, model.config.video_token_id], scatter_shift), with_kwargs=True)
    try:
        if sections is not None:
            text.rotary_emb.mrope_section = list(sections)
        if eps is not None:
            for m in norms:
                m.variance_epsilon = eps
        model.model.rope_deltas = None
        trace = hf_model_trace(model, tensors["input_ids"], None if positions_1d else tensors["mm_token_type_ids"],
                               **{k: tensors[k] for k in INPUTS if k in tensors})
    finally:
        if hook is not None:
            hook.remove()
        text.rotary_emb.mrope_section = saved[0]
        for m, e in zip(norms, saved[1]):
            m.variance_epsilon = e
    out = {}
    for name, value in trace.items():
        value = torch.from_numpy(value)
        out[name] = value.long() if name in INTEGER else value.to(
            torch.float32 if name in FLOAT32_STAGES else getattr(torch, dtype))
    if positions_1d:
        out["mm_token_type_ids"] = torch.from_numpy(tensors["mm_token_type_ids"])  # what the processor gave
    return out
