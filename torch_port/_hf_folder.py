"""Loading an HF Qwen2.5-VL folder: the public loaders, built on the folder's pieces.

The rules live one per module, each written once and used by every loader here and by the
torchtune checkpointer: the folder's files and shards (``_hf_files``), ``config.json`` -> builder
arguments (``_hf_config``), processor configs -> transform arguments (``_hf_processor``), converted
weights -> a checked module (``_hf_weights``; the key tables are ``_convert_weights``). Here:
``load_hf_vision`` / ``load_hf_checkpoint`` (the vision tower + image transform, no torchtune),
``load_hf_video_transform``, ``load_hf_model`` / ``load_hf_model_checkpoint`` (the fused model and
its transform, images and videos with the folder's processor settings) and
``qwen2_5_vl_from_hf_config`` / ``lora_qwen2_5_vl_from_hf_config``. torchtune is imported only
inside the functions that build the fused model.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import torch

from ._component_builders import qwen2_5_vision_encoder, qwen2_5_vl
from ._convert_weights import (
    TIED_OUTPUT_KEY,
    drop_tied_output,
    is_hf_vision_key,
    qwen2_5_vision_hf_to_tune_with_origin,
    qwen2_5_vl_hf_to_tune_with_origin,
)
from ._encoder import Qwen2_5_VisionEncoder
from ._hf_config import IMAGE_TOKEN_ID, VIDEO_TOKEN_ID, model_kwargs, read_config, vision_encoder_kwargs
from ._hf_files import TOKENIZER_FILES, checkpoint_folder, processor_config, read_json, read_tensors, weight_files
from ._hf_processor import (
    folder_image_transform_kwargs,
    folder_video_transform_kwargs,
    resolve_backend,
)
from ._hf_weights import load_checked
from ._transform import Qwen2_5_VLImageTransform

__all__ = [
    "load_hf_checkpoint",
    "load_hf_model",
    "load_hf_model_checkpoint",
    "load_hf_video_transform",
    "load_hf_vision",
    "lora_qwen2_5_vl_from_hf_config",
    "qwen2_5_vl_from_hf_config",
]


def _vision_encoder(vision_config, state_dict: dict, *, dtype, device, copy: bool) -> Qwen2_5_VisionEncoder:
    kwargs = vision_encoder_kwargs(vision_config)
    with torch.device("meta"):  # no memory, no init: every parameter comes from the state dict
        encoder = qwen2_5_vision_encoder(**kwargs)
    converted, origin, problems = qwen2_5_vision_hf_to_tune_with_origin(state_dict)
    load_checked(encoder, converted, origin, problems, what="HF vision state dict", dtype=dtype, device=device,
                 copy=copy)
    return encoder.eval()



def load_hf_vision(
    config,
    state_dict: dict[str, torch.Tensor],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Qwen2_5_VisionEncoder:
    """Build the encoder from an HF vision config and load HF vision weights into it.

    Args:
        config (dict): HF vision config, e.g. ``Qwen2_5_VLVisionConfig(...).to_dict()`` or a
            checkpoint's ``vision_config`` (an HF config object works too). Unused fields are
            ignored; the five sizes are required (see the module docstring), other missing fields
            take HF's class defaults.
        state_dict (dict[str, torch.Tensor]): HF keys with or without ``visual.`` /
            ``model.visual.``; non-vision keys are ignored.
        dtype (torch.dtype): parameter dtype, float32 by default whatever the state dict's; the
            parameters are copies (the caller's tensors are never shared).
        device: where the parameters go (CPU by default).

    Returns:
        Qwen2_5_VisionEncoder: in eval mode.

    Raises:
        ValueError: one error listing every missing, unexpected and misshaped key.
    """
    return _vision_encoder(config, state_dict, dtype=dtype, device=device, copy=True)


def load_hf_checkpoint(
    path: str | Path,
    dtype: torch.dtype = torch.bfloat16,
    device: torch.device | str = "cpu",
    backend: str | None = None,
    **processor_overrides,
):
    """Read an HF Qwen2.5-VL checkpoint folder: its vision tower and its image transform.

    Reads ``config.json`` (its ``vision_config``; a bare vision config works too), the image
    processor config (``processor_config.json``'s ``image_processor``, else
    ``preprocessor_config.json``) and ``model.safetensors`` or ``model.safetensors.index.json`` +
    shards (only the shards and tensors of the vision tower are read).

    Args:
        path: the checkpoint folder.
        dtype (torch.dtype): parameter dtype (the released weights are bfloat16).
        device: parameter device.
        backend (str | None): the transform's backend. None: what HF's
            ``AutoImageProcessor.from_pretrained(path)`` picks, "torchvision" when torchvision is
            installed, else "pil" (:func:`default_backend`; the folder's ``image_processor_type``
            does not change it, as in HF). "pil" / "torchvision": that backend.
        **processor_overrides: image processor fields (``min_pixels``, ``max_pixels``, ``size``,
            ``image_mean``, ``do_resize``, ...) that replace the file's, as
            ``AutoProcessor.from_pretrained(path, **processor_overrides)`` replaces them.

    Returns:
        tuple: ``(Qwen2_5_VisionEncoder, Qwen2_5_VLImageTransform)``.

    Raises:
        FileNotFoundError: missing folder, config or weight files.
        TypeError: an override that is no image processor field.
        ValueError: pickle-only checkpoints, inconsistent configs, weights that do not fit, a field
            value the transform does not implement.
    """
    backend = resolve_backend(backend, "load_hf_checkpoint")
    folder = checkpoint_folder(path)
    config = read_json(folder / "config.json")
    vision_config = config.get("vision_config")
    if vision_config is None:
        if config.get("model_type") != "qwen2_5_vl_vision":
            raise ValueError(f"{folder / 'config.json'} has no 'vision_config' "
                             f"(model_type {config.get('model_type')!r})")
        vision_config = config
    transform_kwargs = folder_image_transform_kwargs(folder, processor_overrides, "load_hf_checkpoint", vision_config)
    files = weight_files(folder, keep=is_hf_vision_key, any_name=True,
                         what="vision weights (keys under 'visual.' or 'model.visual.')")
    encoder = _vision_encoder(vision_config, read_tensors(files, keep=is_hf_vision_key), dtype=dtype,
                              device=device, copy=False)
    return encoder, Qwen2_5_VLImageTransform(backend=backend, **transform_kwargs)


def load_hf_video_transform(path):
    """The video transform HF's ``AutoVideoProcessor.from_pretrained(path)`` stands for.

    Args:
        path: a checkpoint folder (``processor_config.json``'s ``video_processor``, else
            ``video_preprocessor_config.json``, else ``preprocessor_config.json``, as HF reads them).

    Returns:
        Qwen2_5_VLVideoTransform: bit-exact on CPU with the HF video processor from that folder.

    Raises:
        FileNotFoundError: no folder, or none of the files.
        ValueError: invalid JSON, unknown fields, values the transform does not implement.
    """
    from ._video_transform import Qwen2_5_VLVideoTransform

    return Qwen2_5_VLVideoTransform(**folder_video_transform_kwargs(checkpoint_folder(path)))


def load_hf_model(
    config_dict,
    state_dict: dict[str, torch.Tensor],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    max_seq_len: int | None = None,
):
    """Build ``Qwen2_5_VLEarlyFusionModel`` from an HF config dict and load an HF state dict into it.

    Args:
        config_dict (dict): HF ``Qwen2_5_VLConfig`` as a dict, released or transformers-5 layout.
        state_dict (dict[str, torch.Tensor]): HF weights, released or transformers-5 key layout
            (``qwen2_5_vl_hf_to_tune``); a tied checkpoint may lack ``lm_head.weight``.
        dtype (torch.dtype): parameter dtype (float32 by default, whatever the checkpoint's); the
            parameters are copies, never the caller's tensors.
        device: where the parameters go.
        max_seq_len (int | None): KV-cache / rotary-table length; default the config's
            ``max_position_embeddings``.

    Returns:
        Qwen2_5_VLEarlyFusionModel: in eval mode, every parameter trainable.

    Raises:
        ValueError: config fields (see the module docstring), or weights: every missing, unexpected
            and misshaped key in one error, non-finite values by key.
    """
    kwargs, vision = model_kwargs(config_dict, max_seq_len)
    with torch.device("meta"):  # no memory, no init: every parameter comes from the state dict
        model = qwen2_5_vl(encoder=qwen2_5_vision_encoder(**vision), **kwargs)
    converted, origin = qwen2_5_vl_hf_to_tune_with_origin(state_dict)
    problems = []
    if kwargs["tie_word_embeddings"] and not drop_tied_output(converted):
        problems.append(f"{origin[TIED_OUTPUT_KEY]!r} differs from the token embedding in a tied model "
                        "(tie_word_embeddings is true)")
    load_checked(model, converted, origin, problems, what="HF state dict", dtype=dtype, device=device, copy=True)
    return model.eval()


class _RefusedVideoTransform:
    """Stands for the video transform of a folder whose only processor file is the image one and
    holds a setting the video transform does not implement (HF's ``AutoVideoProcessor`` would read
    that file too): the folder still serves images, and every video raises the reason."""

    def __init__(self, error: ValueError, merge_size: int) -> None:
        self.error, self.merge_size = error, merge_size

    def __call__(self, sample):
        raise ValueError(f"videos cannot follow this checkpoint's processor settings: {self.error}")


def _folder_video_options(folder: Path) -> tuple[dict | None, str | ValueError]:
    """(video transform arguments, their source) of a folder, read as HF's ``AutoVideoProcessor``;
    when the image file stands in for a missing video file and the video transform refuses one of
    its settings, (None, the error): images need not fail for it."""
    try:
        return folder_video_transform_kwargs(folder), "folder"
    except ValueError as error:
        _, source = processor_config(folder, "video")
        if source != "preprocessor_config.json":
            raise
        return None, error


def _special_tokens_path(folder: Path) -> str | None:
    """tokenizer.json when present; else None (torchtune's Qwen2.5 ids) after checking that
    tokenizer_config.json's added tokens agree with them."""
    if (folder / "tokenizer.json").is_file():
        return str(folder / "tokenizer.json")
    from torchtune.models.qwen2_5._tokenizer import QWEN2_5_SPECIAL_TOKENS

    added = read_json(folder / "tokenizer_config.json").get("added_tokens_decoder") or {}
    differ = [f"{entry.get('content')!r}: {int(i)} vs {QWEN2_5_SPECIAL_TOKENS[entry.get('content')]}"
              for i, entry in added.items()
              if entry.get("content") in QWEN2_5_SPECIAL_TOKENS and QWEN2_5_SPECIAL_TOKENS[entry["content"]] != int(i)]
    if differ:
        raise ValueError(f"tokenizer_config.json gives special tokens other ids than Qwen2.5's and there is no "
                         f"tokenizer.json to read them from: {differ}")
    return None


def load_hf_model_checkpoint(path, dtype: torch.dtype = torch.bfloat16, device="cpu", *,
                             backend: str | None = None, **processor_overrides):
    """An HF Qwen2.5-VL folder -> ``(Qwen2_5_VLEarlyFusionModel, Qwen2_5_VLTransform)``.

    Args:
        path: the checkpoint folder (see the module docstring for its files).
        dtype (torch.dtype): parameter dtype (bfloat16, the released weights' dtype); the transform
            returns pixel values in this dtype too.
        device: parameter device.
        backend (str | None): the image transform's backend. None: what HF's
            ``AutoImageProcessor.from_pretrained(folder)`` picks, "torchvision" when it is
            installed, else "pil" (``default_backend``). "pil" / "torchvision": that backend.
        **processor_overrides: image processor fields that replace the file's, as
            ``AutoProcessor.from_pretrained(path, **processor_overrides)`` replaces them (see
            :func:`load_hf_checkpoint`); they apply to images.

    Returns:
        tuple: the model (eval mode) and the transform: images with the folder's image processor
        settings (every field HF's image processor reads), videos with its video processor settings
        (read as ``AutoVideoProcessor.from_pretrained(folder)`` reads them: ``processor_config.json``'s
        ``video_processor``, else ``video_preprocessor_config.json``, else ``preprocessor_config.json``),
        and the vision config's ``tokens_per_second``.

    Raises:
        FileNotFoundError: a missing folder, config, tokenizer file or shard.
        TypeError: an override that is no image processor field.
        ValueError: pickle-only weights, unreadable shards, configs the port refuses, weights that do
            not fit (every missing / unexpected / misshaped key, non-finite tensors), token ids that
            disagree between config.json and the tokenizer.
    """
    from ._model_transform import Qwen2_5_VLTransform

    backend = resolve_backend(backend, "load_hf_model_checkpoint")
    folder = checkpoint_folder(path)
    config = read_json(folder / "config.json")
    vision = config.get("vision_config")
    if not isinstance(vision, dict):
        raise ValueError(f"{folder / 'config.json'} has no vision_config dict")
    processor = folder_image_transform_kwargs(folder, processor_overrides, "load_hf_model_checkpoint", vision)
    data_format = processor.pop("input_data_format")
    if data_format is not None:
        raise ValueError(f"load_hf_model_checkpoint: input_data_format={data_format!r} is not supported by "
                         "Qwen2_5_VLTransform, which infers each image's layout as HF does with None")
    missing = [name for name in TOKENIZER_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"tokenizer files {missing} not found in checkpoint folder {folder}")

    video_options, video_source = _folder_video_options(folder)
    transform = Qwen2_5_VLTransform(
        str(folder / "vocab.json"), str(folder / "merges.txt"), _special_tokens_path(folder),
        tokens_per_second=vision.get("tokens_per_second", 2), dtype=dtype,
        image_options={"backend": backend, **processor}, video_options=video_options,
    )
    if isinstance(video_source, ValueError):
        transform.video_transform = _RefusedVideoTransform(video_source, transform.video_transform.merge_size)
    for kind, field, default in (("image", "image_token_id", IMAGE_TOKEN_ID),
                                 ("video", "video_token_id", VIDEO_TOKEN_ID)):
        model_id = int(config.get(field, default))
        token_id = getattr(transform, field)
        if model_id != token_id:
            raise ValueError(f"config.json {field}={model_id} but the tokenizer's <|{kind}_pad|> is {token_id}")

    model = load_hf_model(config, read_tensors(weight_files(folder)), dtype=dtype, device=device)
    return model, transform


# ---------------------------------------------------------------- builders sized by an HF config.json

def qwen2_5_vl_from_hf_config(config, *, max_seq_len: Optional[int] = None, **kwargs):
    """``qwen2_5_vl`` with the sizes of an HF config, for configs of any size. A torchtune config
    names it with the folder it trains::

        model:
          _component_: torch_port.qwen2_5_vl_from_hf_config
          config: /tmp/my-qwen2.5-vl/config.json

    Args:
        config (str | dict): ``config.json`` path, its folder, or the dict (either HF layout).
        max_seq_len (int | None): KV-cache / rotary-table length; default the config's.
        **kwargs: ``decoder_trainable``, ``encoder_trainable``.
    """
    sizes, vision = model_kwargs(read_config(config), max_seq_len)
    return qwen2_5_vl(encoder=qwen2_5_vision_encoder(**vision), **sizes, **kwargs)


def lora_qwen2_5_vl_from_hf_config(
    config,
    lora_attn_modules: List[str],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    *,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
    max_seq_len: Optional[int] = None,
    encoder_trainable: bool = False,
):
    """``lora_qwen2_5_vl`` with the sizes of an HF config (``config`` as in ``qwen2_5_vl_from_hf_config``);
    ``use_dora`` and ``quantize_base`` go to ``lora_qwen2_5_vl``, which decides what it supports."""
    from ._lora import lora_qwen2_5_vl

    sizes, vision = model_kwargs(read_config(config), max_seq_len)
    return lora_qwen2_5_vl(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, encoder=qwen2_5_vision_encoder(**vision),
        **sizes, lora_rank=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
        quantize_base=quantize_base, encoder_trainable=encoder_trainable,
    )
