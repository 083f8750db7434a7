"""Qwen2.5-VL vision encoder and image transform in torch, laid out like a torchtune model folder.

Self-contained (torch, numpy, Pillow, safetensors): the folder can be copied into a torchtune
checkout as ``torchtune/models/qwen2_5_vision/``. The whole model (torchtune's ``EarlyFusionModel``
with the Qwen2 decoder) needs torchtune; its names are imported on first use (``_LAZY``), so
``import torch_port``, the vision encoder and the transforms work without torchtune installed.
"""

import importlib

import warnings

from ._activations import ACTIVATIONS
from ._checkpoint import load_hf_checkpoint, load_hf_vision
from ._video_checkpoint import load_hf_video_transform
from ._component_builders import qwen2_5_vision_encoder, qwen2_5_vl
from ._convert_weights import (
    qwen2_5_vision_hf_to_tune,
    qwen2_5_vision_tune_to_hf,
    qwen2_5_vl_hf_to_tune,
    qwen2_5_vl_tune_to_hf,
)
from ._encoder import (
    Qwen2_5_VisionAttention,
    Qwen2_5_VisionBlock,
    Qwen2_5_VisionEncoder,
    Qwen2_5_VisionMLP,
    Qwen2_5_VisionPatchEmbed,
    Qwen2_5_VisionPatchMerger,
    Qwen2_5_VisionRMSNorm,
    SegmentGroup,
    VisionLayout,
    segment_attention,
)
from ._model_builders import (
    qwen2_5_vl_3b,
    qwen2_5_vl_7b,
    qwen2_5_vl_32b,
    qwen2_5_vl_72b,
    qwen2_5_vl_3b_vision_encoder,
    qwen2_5_vl_7b_vision_encoder,
    qwen2_5_vl_32b_vision_encoder,
    qwen2_5_vl_72b_vision_encoder,
    qwen2_5_vl_image_transform,
)
from ._model_loading import load_hf_model
from ._mrope import Qwen2_5_VLRotaryPositionalEmbeddings
from ._positional_embeddings import Qwen2_5_VisionRotaryEmbedding, apply_rotary_emb, vision_position_ids
from ._rope_index import RopeIndexLayoutError, qwen2_5_vl_rope_index
from ._transform import Qwen2_5_VLImageTransform
from ._video_transform import Qwen2_5_VLVideoTransform
from ._vision_tokens import expand_vision_tokens

__all__ = [
    "ACTIVATIONS",
    "Qwen2_5_VLImageTransform",
    "Qwen2_5_VLRotaryPositionalEmbeddings",
    "Qwen2_5_VLVideoTransform",
    "Qwen2_5_VisionAttention",
    "Qwen2_5_VisionBlock",
    "Qwen2_5_VisionEncoder",
    "Qwen2_5_VisionMLP",
    "Qwen2_5_VisionPatchEmbed",
    "Qwen2_5_VisionPatchMerger",
    "Qwen2_5_VisionRMSNorm",
    "Qwen2_5_VisionRotaryEmbedding",
    "RopeIndexLayoutError",
    "SegmentGroup",
    "VisionLayout",
    "apply_rotary_emb",
    "expand_vision_tokens",
    "load_hf_checkpoint",
    "load_hf_model",
    "load_hf_vision",
    "load_hf_video_transform",
    "qwen2_5_vision_encoder",
    "qwen2_5_vision_hf_to_tune",
    "qwen2_5_vision_tune_to_hf",
    "qwen2_5_vl_3b_vision_encoder",
    "qwen2_5_vl_7b_vision_encoder",
    "qwen2_5_vl_32b_vision_encoder",
    "qwen2_5_vl_72b_vision_encoder",
    "qwen2_5_vl",
    "qwen2_5_vl_3b",
    "qwen2_5_vl_7b",
    "qwen2_5_vl_32b",
    "qwen2_5_vl_72b",
    "qwen2_5_vl_hf_to_tune",
    "qwen2_5_vl_tune_to_hf",
    "qwen2_5_vl_rope_index",
    "qwen2_5_vl_image_transform",
    "segment_attention",
    "vision_position_ids",
]

# Old names that would shadow torchtune's modules of the same name once dropped into torchtune
_RENAMED = {"RMSNorm": "Qwen2_5_VisionRMSNorm", "FeedForward": "Qwen2_5_VisionMLP"}


# Names whose modules import torchtune: loaded on first access (name -> module of this folder)
_LAZY: dict[str, str] = {
    "Qwen2_5_VLEarlyFusionModel": "._fusion",
    "Qwen2_5_VLTransform": "._model_transform",
    "generate": "._generation",
    "load_hf_model_checkpoint": "._model_checkpoint",
    "padded_collate_qwen2_5_vl": "._collate",
    "Qwen2_5_VLHFCheckpointer": "._checkpointer",
    "qwen2_5_vl_chat_dataset": "._dataset",
    "lora_qwen2_5_vl": "._lora",
    "lora_qwen2_5_vl_3b": "._lora",
    "lora_qwen2_5_vl_7b": "._lora",
    "qwen2_5_vl_from_hf_config": "._hf_config_builders",
    "lora_qwen2_5_vl_from_hf_config": "._hf_config_builders",
}

__all__ += sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    if name in _RENAMED:
        new = _RENAMED[name]
        warnings.warn(f"torch_port.{name} is deprecated; use torch_port.{new}", DeprecationWarning, stacklevel=2)
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
