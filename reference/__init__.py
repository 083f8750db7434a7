"""NumPy-only reference of Qwen2.5-VL: image pipeline, vision tower, multimodal positions, language model.

Imports numpy and the standard library only. Decoding image files (Pillow)
lives in :mod:`reference.io`, which nothing else here imports.

The functions here are the plain forms, the specification; :mod:`reference.fast` holds faster
forms of a few of them (same names, bit-equal results).
"""

from .bicubic import resize_bicubic
from .bicubic_torch import resize_bicubic_torch
from .color import to_rgb
from .preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, preprocess
from .video import preprocess_video
from .smart_resize import MAX_PIXELS, MIN_PIXELS, smart_resize
from .vision_config import PRESETS, SUPPORTED_ACTS, VisionConfig
from .weights import random_weights, vision_weight_shapes
from .checkpoint import load_weights
from .activations import ACTIVATIONS
from .vision import (apply_rotary, full_cu_seqlens, patch_embed, patch_merger, rms_norm, rotary_cos_sin,
                     segment_attention, vision_attention, vision_block, vision_forward, vision_mlp, window_index)
from .rope_index import rope_index
from .validate import RopeIndexLayoutError
from .mrope import apply_mrope, mrope_cos_sin
from .vision_tokens import expand_vision_tokens
from .text_config import ModelConfig, TextConfig
from .text_weights import random_text_weights, split_model_weights, text_weight_shapes
from .language import (causal_mask, decoder_layer, embed, grouped_query_attention, language_forward, lm_head,
                       scatter_vision_rows, swiglu_mlp, text_attention)
from .model import model_forward
from . import fast  # noqa: E402  (after the plain modules it builds on)
