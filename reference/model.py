"""The whole `Qwen2_5_VLForConditionalGeneration` forward in NumPy: input_ids (+ pixel values and grids
of images and videos) -> logits.

    pixel_values [S, C*tp*p*p], image_grid_thw ---vision_forward---> image rows [S/M, h]
    pixel_values_videos, video_grid_thw -------vision_forward---> video rows
    input_ids [b, s] -embed-> [b, s, h] -> image rows into the image placeholders, video rows into the
                                          video placeholders (row-major over the batch)
    input_ids, mm_token_type_ids, grids -rope_index-> position_ids [3, b, s]
    -> language_forward -> logits [b, s, V]

Positions follow HF 5.x fed `mm_token_type_ids` (what its processor returns): 3-D mRoPE positions
whenever the prompt has images or videos; `mm_token_type_ids` defaults to the types of the
placeholder ids (HF without them silently falls back to 1-D positions). A prompt without any grid
gets HF's plain positions 0..s-1 on all three rows (for a padded batch too: HF does not shift them).

The trace (a dict) receives, by name: `input_ids`, `mm_token_type_ids`, `position_ids`, `mrope_cos`,
`mrope_sin`, the tower's stages (`vision_forward`'s names) prefixed `visual.` for the images' run and
`visual_video.` for the videos' run, and the language model's `lm.inputs_embeds`,
`lm.layers.{i}.attn_residual`, `lm.layers.{i}.output`, `lm.norm`, `lm.logits`.
"""

from __future__ import annotations

import numpy as np

from .language import embed, language_forward, scatter_vision_rows
from .rope_index import rope_index
from .text_config import ModelConfig
from .vision import vision_forward


def token_types(input_ids, config: ModelConfig):  # [b, s] -> [b, s] int64: 0 text, 1 image, 2 video
    ids = np.asarray(input_ids)
    return (np.where(ids == config.image_token_id, 1, 0) + np.where(ids == config.video_token_id, 2, 0)).astype(
        np.int64)


def text_positions(batch, seq):  # -> [3, b, s]: HF's positions when there is no grid
    return np.broadcast_to(np.arange(seq, dtype=np.int64), (3, batch, seq)).copy()


class Prefixed:
    """Where a tower run records its stages: straight into `trace`, each name prefixed."""

    def __init__(self, trace, prefix):
        self.trace, self.prefix = trace, prefix

    def __setitem__(self, name, value):
        self.trace[self.prefix + name] = value


def tower_rows(pixel_values, grid_thw, vision_weights, config, dtype, trace, prefix, vision):
    stages = None if trace is None else Prefixed(trace, prefix)
    return vision(pixel_values, grid_thw, vision_weights, config.vision, dtype=dtype, trace=stages)


def model_forward(input_ids, vision_weights, text_weights, config: ModelConfig, *, pixel_values=None,
                  image_grid_thw=None, pixel_values_videos=None, video_grid_thw=None, second_per_grid_ts=None,
                  attention_mask=None, mm_token_type_ids=None, position_ids=None, dtype=np.float64, trace=None,
                  vision=vision_forward):
    """input_ids [b, s] (placeholders already expanded, as the processor returns them) -> logits [b, s, V].

    `vision_weights` / `text_weights`: mappings under `reference.weights` / `reference.text_weights`
    names (`reference.split_model_weights` splits a whole state dict). `vision`: the tower function
    (reference.fast's is bit-equal). `position_ids` [3, b, s], when given, replace the computed ones (as in HF)."""
    ids = np.asarray(input_ids)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"input_ids must be integer token ids [batch, seq], got shape {ids.shape} dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= config.text.vocab_size):
        raise ValueError(f"input_ids hold ids outside the vocabulary 0..{config.text.vocab_size - 1}: "
                         f"min {ids.min()}, max {ids.max()}")
    types = token_types(ids, config) if mm_token_type_ids is None else np.asarray(mm_token_type_ids, np.int64)
    stages = {} if trace is None else trace
    stages.update(input_ids=ids.astype(np.int64), mm_token_type_ids=types)

    x = embed(ids, text_weights["embed_tokens.weight"], dtype)  # [b, s, h]
    media = (("image", pixel_values, image_grid_thw, config.image_token_id, "visual."),
             ("video", pixel_values_videos, video_grid_thw, config.video_token_id, "visual_video."))
    for what, pixels, grid, token_id, prefix in media:
        if (pixels is None) != (grid is None):
            raise ValueError(f"{what}: pixel values and grid_thw go together; got only "
                             f"{'the grid' if pixels is None else 'the pixel values'}")
        if pixels is None:
            scatter_vision_rows(x, ids, token_id, np.zeros((0, x.shape[-1])), what)  # no placeholder either
            continue
        rows = tower_rows(pixels, grid, vision_weights, config, dtype, trace, prefix, vision)  # [n, h]
        x = scatter_vision_rows(x, ids, token_id, rows, what)

    if position_ids is not None:
        position_ids = np.broadcast_to(np.asarray(position_ids, np.int64), (3,) + ids.shape)
    elif image_grid_thw is None and video_grid_thw is None:
        position_ids = text_positions(*ids.shape)
    else:
        position_ids, _ = rope_index(ids, types, image_grid_thw, video_grid_thw, second_per_grid_ts, attention_mask,
                                     spatial_merge_size=config.vision.spatial_merge_size,
                                     tokens_per_second=config.tokens_per_second)
    stages["position_ids"] = position_ids
    return language_forward(x, position_ids, text_weights, config.text, attention_mask=attention_mask, dtype=dtype,
                            trace=stages)
