"""The HF side of the positions goldens: placeholder expansion as HF's processor does it, the mRoPE
position ids of ``Qwen2_5_VLModel.get_rope_index`` on a tiny HF model, and the text model's
multimodal rotary (``Qwen2_5_VLRotaryEmbedding``, float32).

No tokenizer is needed: each token id is written as a text piece (``<t123>``) and the vision
placeholders as HF's own strings, so HF's ``get_text_with_replacements`` expands them exactly as it
expands a prompt, and ``create_mm_token_type_ids`` marks the expanded ids.
"""

from __future__ import annotations

import functools
import re
from types import SimpleNamespace

import numpy as np
import torch

from . import hf_compat
from .hf_compat import expand_by_call

# Qwen2.5-VL's special token ids (the released tokenizer's).
IMAGE_TOKEN_ID = 151655  # <|image_pad|>
VIDEO_TOKEN_ID = 151656  # <|video_pad|>
VISION_START_ID = 151652  # <|vision_start|>

_IMAGE, _VIDEO = "<|image_pad|>", "<|video_pad|>"
_PIECE = re.compile(r"<\|image_pad\|>|<\|video_pad\|>|<t(\d+)>")


@functools.lru_cache(maxsize=1)
def _processor(merge_size):
    """HF's Qwen2.5-VL processor without its tokenizer and image/video processors: only what the
    placeholder expansion and the token types read (tokens, ids, merge sizes)."""
    from .hf_compat import processor_class

    processor = object.__new__(processor_class())
    processor.image_token, processor.video_token = _IMAGE, _VIDEO
    processor.image_token_id, processor.video_token_id = IMAGE_TOKEN_ID, VIDEO_TOKEN_ID
    processor.image_processor = SimpleNamespace(merge_size=merge_size)
    processor.video_processor = SimpleNamespace(merge_size=merge_size)
    return processor


def hf_expand(input_ids, image_grid_thw=None, video_grid_thw=None, merge_size=2):
    """Expand each single placeholder of ``input_ids`` (rows of ids) with HF's processor code:
    (expanded ids [b, S], mm_token_type_ids [b, S]), int64. Every row must expand to one length."""
    processor = _processor(merge_size)
    grids = {"image_grid_thw": torch.as_tensor(np.asarray(image_grid_thw if image_grid_thw is not None
                                                          else np.zeros((0, 3)), dtype=np.int64)),
             "video_grid_thw": torch.as_tensor(np.asarray(video_grid_thw if video_grid_thw is not None
                                                          else np.zeros((0, 3)), dtype=np.int64))}
    names = {IMAGE_TOKEN_ID: _IMAGE, VIDEO_TOKEN_ID: _VIDEO}
    text = ["".join(names.get(int(i), f"<t{int(i)}>") for i in row) for row in np.asarray(input_ids)]
    if not hasattr(processor, "get_text_with_replacements"):  # 4.x / early 5.x: expansion inside __call__
        rows = expand_by_call(processor, text, grids["image_grid_thw"], grids["video_grid_thw"], _tokenize)
        return _finish(rows)
    images = [processor.replace_image_token(grids, i) for i in range(len(grids["image_grid_thw"]))]
    videos = [processor.replace_video_token(grids, i) for i in range(len(grids["video_grid_thw"]))]
    text, _ = processor.get_text_with_replacements(text, images, videos)
    return _finish([_tokenize(sample) for sample in text], processor)


def _tokenize(sample):
    """The ids of an expanded text written with ``<tN>`` pieces and HF's placeholder strings."""
    return [IMAGE_TOKEN_ID if m.group(0) == _IMAGE else VIDEO_TOKEN_ID if m.group(0) == _VIDEO else int(m.group(1))
            for m in _PIECE.finditer(sample)]


def _finish(rows, processor=None):
    """(ids, mm_token_type_ids) int64 arrays; HF's ``create_mm_token_type_ids`` where it exists, else the
    4.x processor's rule (1 at image tokens, 2 at video tokens)."""
    if len({len(row) for row in rows}) != 1:
        raise ValueError(f"rows expand to different lengths {[len(r) for r in rows]}: pad the inputs")
    if processor is not None and hasattr(processor, "create_mm_token_type_ids"):
        types = processor.create_mm_token_type_ids(rows)
    else:
        ids = np.array(rows)
        types = np.where(ids == IMAGE_TOKEN_ID, 1, np.where(ids == VIDEO_TOKEN_ID, 2, 0))
    return np.array(rows, dtype=np.int64), np.array(types, dtype=np.int64)


def hf_text_config(head_dim=16, mrope_section=(2, 3, 3), theta=1e6):
    """A tiny text config whose rotary has ``head_dim`` and ``mrope_section`` (two heads)."""
    return dict(hidden_size=2 * head_dim, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                intermediate_size=2 * head_dim, vocab_size=151936, **hf_compat.text_rope_config(theta, mrope_section))


@functools.lru_cache(maxsize=4)
def hf_tiny_model(head_dim=16, mrope_section=(2, 3, 3), theta=1e6, spatial_merge_size=2, tokens_per_second=2):
    """A tiny ``Qwen2_5_VLModel`` (4.49-4.51: ``Qwen2_5_VLForConditionalGeneration``; float32, eval): its ``get_rope_index`` and its text rotary are the ones
    checked. Weights are never used, so they are left uninitialised."""
    model = hf_compat.tiny_rope_model(
        hf_text_config(head_dim, mrope_section, theta),
        dict(depth=1, hidden_size=32, num_heads=2, intermediate_size=48, out_hidden_size=2 * head_dim,
             spatial_merge_size=spatial_merge_size, tokens_per_second=tokens_per_second),
        dict(image_token_id=IMAGE_TOKEN_ID, video_token_id=VIDEO_TOKEN_ID, vision_start_token_id=VISION_START_ID))
    rotary = hf_compat.text_rotary(model)
    expect = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
    if not torch.equal(rotary.inv_freq, expect) or list(hf_compat.mrope_section_of(model)) != list(mrope_section):
        raise RuntimeError("HF text rotary is not the expected float32 table / mrope_section")
    return model


def _tensor(x, dtype):
    return None if x is None else torch.as_tensor(np.asarray(x), dtype=dtype)


def hf_rope_index(model, input_ids, mm_token_type_ids, image_grid_thw=None, video_grid_thw=None,
                  second_per_grid_ts=None, attention_mask=None):
    """HF's ``get_rope_index``: (position_ids [3, b, s], deltas [b, 1]) as int64 NumPy arrays."""
    with torch.no_grad():
        position_ids, deltas = hf_compat.get_rope_index(
            model, _tensor(input_ids, torch.long), _tensor(mm_token_type_ids, torch.int),
            image_grid_thw=_tensor(image_grid_thw, torch.long), video_grid_thw=_tensor(video_grid_thw, torch.long),
            second_per_grid_ts=_tensor(second_per_grid_ts, torch.float32),
            attention_mask=_tensor(attention_mask, torch.long))
    return position_ids.numpy().astype(np.int64), deltas.numpy().astype(np.int64)


def hf_mrope_cos_sin(model, position_ids):
    """HF's text rotary on ``position_ids`` [3, b, s]: (cos, sin) [b, s, head_dim], float32."""
    cos, sin = hf_compat.mrope_cos_sin(model, np.asarray(position_ids))
    return cos.numpy(), sin.numpy()
