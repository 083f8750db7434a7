"""Qwen2.5-VL in torch, laid out like a torchtune model folder (``torchtune/models/qwen2_5_vision/``).

What is here:

* the vision tower (``qwen2_5_vision_encoder``, ``Qwen2_5_VisionEncoder`` and its blocks, the 2D
  rotary, the one RMSNorm ``Qwen2_5_VLRMSNorm``), the image and video transforms
  (``Qwen2_5_VLImageTransform``, ``Qwen2_5_VLVideoTransform``),
  mRoPE positions (``qwen2_5_vl_rope_index``, ``Qwen2_5_VLRotaryPositionalEmbeddings``), weight-key
  conversion (``qwen2_5_vl_hf_to_tune`` ...) and loading an HF folder's tower and processor
  (``load_hf_checkpoint``, ``load_hf_vision``, ``load_hf_video_transform``): torch, numpy, Pillow
  and safetensors only;
* the whole model on torchtune: the component builders (``qwen2_5_vl_decoder``, ``qwen2_5_vl``,
  ``lora_qwen2_5_vl_decoder``, ``lora_qwen2_5_vl``), the released sizes (``qwen2_5_vl_3b`` ...,
  ``lora_qwen2_5_vl_3b`` / ``_7b``, ``qlora_qwen2_5_vl_3b`` / ``_7b``) and builders from an HF config
  (``qwen2_5_vl_from_hf_config``), ``Qwen2_5_VLEarlyFusionModel``, the tokenizer / model transform,
  dataset, collate, checkpointer and ``generate`` that torchtune's recipes and configs name.

The whole-model names are imported with the package when torchtune is installed (the project's
``torchtune`` extra); without it ``import torch_port``, the tower and the transforms still work and
using a whole-model name raises an ImportError that names the extra.
"""

from ._activations import ACTIVATIONS  # noqa: F401 (importable, not in __all__: the encoder's internals)
from ._component_builders import qwen2_5_vision_encoder
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
    SegmentGroup,  # noqa: F401 (importable, not in __all__, as ACTIVATIONS)
    VisionLayout,  # noqa: F401
    segment_attention,  # noqa: F401
)
from ._hf_folder import load_hf_checkpoint, load_hf_video_transform, load_hf_vision
from ._model_builders import (
    qwen2_5_vl_3b_vision_encoder,
    qwen2_5_vl_7b_vision_encoder,
    qwen2_5_vl_32b_vision_encoder,
    qwen2_5_vl_72b_vision_encoder,
    qwen2_5_vl_image_transform,
)
from ._mrope import Qwen2_5_VLRotaryPositionalEmbeddings
from ._positional_embeddings import Qwen2_5_VisionRotaryEmbedding, apply_rotary_emb, vision_position_ids
from ._rms_norm import Qwen2_5_VisionRMSNorm, Qwen2_5_VLRMSNorm
from ._rope_index import RopeIndexLayoutError, qwen2_5_vl_rope_index
from ._transform import Qwen2_5_VLImageTransform
from ._video_transform import Qwen2_5_VLVideoTransform
from ._vision_tokens import expand_vision_tokens

__all__ = [
    "Qwen2_5_VLImageTransform",
    "Qwen2_5_VLRMSNorm",
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
    "apply_rotary_emb",
    "expand_vision_tokens",
    "load_hf_checkpoint",
    "load_hf_vision",
    "load_hf_video_transform",
    "qwen2_5_vision_encoder",
    "qwen2_5_vision_hf_to_tune",
    "qwen2_5_vision_tune_to_hf",
    "qwen2_5_vl_3b_vision_encoder",
    "qwen2_5_vl_7b_vision_encoder",
    "qwen2_5_vl_32b_vision_encoder",
    "qwen2_5_vl_72b_vision_encoder",
    "qwen2_5_vl_hf_to_tune",
    "qwen2_5_vl_tune_to_hf",
    "qwen2_5_vl_rope_index",
    "qwen2_5_vl_image_transform",
    "vision_position_ids",
]

# The whole model: these names need torchtune (and torchao), the project's ``torchtune`` extra
_TORCHTUNE_NAMES = (
    "DataRowError",
    "Qwen2_5_VLEarlyFusionModel",
    "Qwen2_5_VLHFCheckpointer",
    "Qwen2_5_VLPackedDataset",
    "Qwen2_5_VLTextDecoder",
    "Qwen2_5_VLTextRMSNorm",
    "Qwen2_5_VLTransform",
    "generate",
    "load_hf_model",
    "load_hf_model_checkpoint",
    "lora_qwen2_5_vl",
    "lora_qwen2_5_vl_3b",
    "lora_qwen2_5_vl_7b",
    "lora_qwen2_5_vl_decoder",
    "lora_qwen2_5_vl_from_hf_config",
    "padded_collate_qwen2_5_vl",
    "qlora_qwen2_5_vl_3b",
    "qlora_qwen2_5_vl_7b",
    "qwen2_5_vl",
    "qwen2_5_vl_3b",
    "qwen2_5_vl_7b",
    "qwen2_5_vl_32b",
    "qwen2_5_vl_72b",
    "qwen2_5_vl_chat_dataset",
    "qwen2_5_vl_decoder",
    "qwen2_5_vl_from_hf_config",
)

try:
    import torchtune as _torchtune  # noqa: F401
except ImportError as error:  # not installed (or blocked): the tower and transforms still work
    _TORCHTUNE_MISSING: ImportError | None = error
else:
    _TORCHTUNE_MISSING = None

if _TORCHTUNE_MISSING is None:
    from ._checkpointer import Qwen2_5_VLHFCheckpointer
    from ._collate import padded_collate_qwen2_5_vl
    from ._component_builders import lora_qwen2_5_vl_decoder, qwen2_5_vl, qwen2_5_vl_decoder
    from ._dataset import DataRowError, qwen2_5_vl_chat_dataset
    from ._fusion import Qwen2_5_VLEarlyFusionModel
    from ._generation import generate
    from ._hf_folder import (
        load_hf_model,
        load_hf_model_checkpoint,
        lora_qwen2_5_vl_from_hf_config,
        qwen2_5_vl_from_hf_config,
    )
    from ._lora import (
        lora_qwen2_5_vl,
        lora_qwen2_5_vl_3b,
        lora_qwen2_5_vl_7b,
        qlora_qwen2_5_vl_3b,
        qlora_qwen2_5_vl_7b,
    )
    from ._model_builders import qwen2_5_vl_3b, qwen2_5_vl_7b, qwen2_5_vl_32b, qwen2_5_vl_72b
    from ._model_transform import Qwen2_5_VLTransform
    from ._packing import Qwen2_5_VLPackedDataset
    from ._rms_norm import Qwen2_5_VLTextRMSNorm
    from ._text_decoder import Qwen2_5_VLTextDecoder

    __all__ += list(_TORCHTUNE_NAMES)
else:

    def __getattr__(name: str):
        if name in _TORCHTUNE_NAMES:
            raise ImportError(
                f"torch_port.{name} is part of the whole model, which needs torchtune: install the project's "
                f"`torchtune` extra (torchtune==0.6.1, torchao==0.15.0); importing torchtune failed with: "
                f"{_TORCHTUNE_MISSING}"
            ) from _TORCHTUNE_MISSING
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
