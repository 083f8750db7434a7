"""Load a whole HF Qwen2.5-VL checkpoint folder: the fused model and its model transform.

The folder is what the hub holds: ``config.json``, ``preprocessor_config.json``, weights as
``model.safetensors`` or ``model.safetensors.index.json`` + shards (released or transformers-5 key
layout), and the tokenizer files ``vocab.json``, ``merges.txt``, ``tokenizer_config.json`` (plus
``tokenizer.json`` when present: its ``added_tokens`` are the special tokens; without it the
``added_tokens_decoder`` of ``tokenizer_config.json`` must agree with Qwen2.5's released ids).

Every fault names the file or key: a missing file, a shard named in the index but absent, a folder
of pickle files only (never unpickled), an unreadable shard, and (through ``load_hf_model``) missing,
unexpected or misshaped keys and non-finite weights. The model's image / video token ids must be
the tokenizer's ``<|image_pad|>`` / ``<|video_pad|>`` ids, or the transform's placeholders would
not reach the vision tower.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ._checkpoint import _read_json, _transform_kwargs, default_backend, read_tensors, weight_files
from ._config import encoder_kwargs
from ._model_loading import load_hf_model
from ._model_transform import Qwen2_5_VLTransform

__all__ = ["load_hf_model_checkpoint"]

TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")


def _special_tokens_path(folder: Path) -> str | None:
    """tokenizer.json when present; else None (torchtune's Qwen2.5 ids) after checking that
    tokenizer_config.json's added tokens agree with them."""
    if (folder / "tokenizer.json").is_file():
        return str(folder / "tokenizer.json")
    from torchtune.models.qwen2_5._tokenizer import QWEN2_5_SPECIAL_TOKENS

    added = _read_json(folder / "tokenizer_config.json").get("added_tokens_decoder") or {}
    differ = [f"{entry.get('content')!r}: {int(i)} vs {QWEN2_5_SPECIAL_TOKENS[entry.get('content')]}"
              for i, entry in added.items()
              if entry.get("content") in QWEN2_5_SPECIAL_TOKENS and QWEN2_5_SPECIAL_TOKENS[entry["content"]] != int(i)]
    if differ:
        raise ValueError(f"tokenizer_config.json gives special tokens other ids than Qwen2.5's and there is no "
                         f"tokenizer.json to read them from: {differ}")
    return None


def load_hf_model_checkpoint(path, dtype: torch.dtype = torch.bfloat16, device="cpu", *,
                             backend: str | None = None):
    """An HF Qwen2.5-VL folder -> ``(Qwen2_5_VLEarlyFusionModel, Qwen2_5_VLTransform)``.

    Args:
        path: the checkpoint folder (see the module docstring for its files).
        dtype (torch.dtype): parameter dtype (bfloat16, the released weights' dtype); the transform
            returns pixel values in this dtype too.
        device: parameter device.
        backend (str | None): the image transform's backend. None: what HF's
            ``AutoImageProcessor.from_pretrained(folder)`` picks, "torchvision" when it is
            installed, else "pil" (``default_backend``). "pil" / "torchvision": that backend.

    Returns:
        tuple: the model (eval mode) and the transform (images and videos with the folder's
        preprocessor settings, every field HF's image processor reads - ``do_resize``,
        ``do_rescale``, ``rescale_factor``, ``do_normalize``, ``do_convert_rgb`` included - and
        the vision config's ``tokens_per_second``).

    Raises:
        FileNotFoundError: a missing folder, config, tokenizer file or shard.
        ValueError: pickle-only weights, unreadable shards, configs the port refuses, weights that do
            not fit (every missing / unexpected / misshaped key, non-finite tensors), token ids that
            disagree between config.json and the tokenizer.
    """
    from ._transform import BACKENDS

    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"load_hf_model_checkpoint: backend must be None or one of {BACKENDS}, got {backend!r}")
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist or is not a directory")
    config = _read_json(folder / "config.json")
    processor = _transform_kwargs(_read_json(folder / "preprocessor_config.json"))
    missing = [name for name in TOKENIZER_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"tokenizer files {missing} not found in checkpoint folder {folder}")
    vision = config.get("vision_config")
    if not isinstance(vision, dict):
        raise ValueError(f"{folder / 'config.json'} has no vision_config dict")
    tower = encoder_kwargs(vision)
    for t, e in (("patch_size", "patch_size"), ("merge_size", "spatial_merge_size"),
                 ("temporal_patch_size", "temporal_patch_size")):
        if processor[t] != tower[e]:
            raise ValueError(f"preprocessor_config.json {t}={processor[t]} disagrees with config.json "
                             f"vision_config {e}={tower[e]}")

    transform = Qwen2_5_VLTransform(
        str(folder / "vocab.json"), str(folder / "merges.txt"), _special_tokens_path(folder),
        tokens_per_second=vision.get("tokens_per_second", 2), dtype=dtype, backend=backend or default_backend(),
        **processor,
    )
    for kind, field in (("image", "image_token_id"), ("video", "video_token_id")):
        model_id = int(config.get(field, 151655 if kind == "image" else 151656))
        token_id = transform.image_token_id if kind == "image" else transform.video_token_id
        if model_id != token_id:
            raise ValueError(f"config.json {field}={model_id} but the tokenizer's <|{kind}_pad|> is {token_id}")

    model = load_hf_model(config, read_tensors(weight_files(folder)), dtype=dtype, device=device)
    return model, transform
