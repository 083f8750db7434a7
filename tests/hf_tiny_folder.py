"""A synthetic full HF Qwen2.5-VL checkpoint folder (tests only): a tiny random model whose special
ids are Qwen's released ones, written as bf16 safetensors shards + index, config.json,
preprocessor_config.json and the tiny BPE tokenizer (tests/tiny_tokenizer.py).

The vocabulary is 151680 rows so that the tokenizer's ids (specials at 151643..151664) fit;
hidden size 64 keeps the embedding at 9.7M parameters (19 MB in bf16, tied); the rows of ids the
tiny tokenizer lacks are zero.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import Qwen2_5_VLForConditionalGeneration

from checkpoint_folder import write_shards
from hf_tiny_vl import QWEN_VOCAB, config_dict, random_hf_model
from tiny_tokenizer import SPECIAL_IDS, tiny_vocab, write_tiny_tokenizer

MAX_PIXELS = 28 * 28 * 16  # at most 16 merged tokens per image: small prompts


def folder_config() -> dict:
    """Released config.json layout (text fields at the top level), Qwen's special ids."""
    return {**config_dict("tied_gqa", qwen_ids=True), "torch_dtype": "bfloat16",
            "architectures": ["Qwen2_5_VLForConditionalGeneration"]}


def hf_folder_model(seed: int = 0) -> Qwen2_5_VLForConditionalGeneration:
    """The folder's model in float32, random weights scaled as in hf_tiny_vl.hf_model."""
    model = random_hf_model(folder_config(), seed)
    with torch.no_grad():
        # rows the tiny tokenizer has no token for are zero (tied: logit 0), so greedy decoding
        # picks ids the tokenizer can decode
        unused = torch.ones(QWEN_VOCAB, dtype=torch.bool)
        unused[list(tiny_vocab()[0].values())] = False
        model.get_input_embeddings().weight[unused] = 0.0
    return model


def released_keys(state_dict: dict) -> dict:
    """transformers-5 keys (model.language_model.*, model.visual.*) -> the released layout."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("model.language_model."):
            key = "model." + key[len("model.language_model."):]
        elif key.startswith("model.visual."):
            key = key[len("model."):]
        out[key] = value
    return out


def hf_weights(layout: str = "released", seed: int = 0) -> dict[str, torch.Tensor]:
    """The folder's bf16 weights in ``layout`` ("released" or "transformers5"), tied (no lm_head)."""
    sd = {k: v.to(torch.bfloat16).contiguous() for k, v in hf_folder_model(seed).state_dict().items()
          if k != "lm_head.weight"}
    return released_keys(sd) if layout == "released" else sd


def write_hf_folder(folder, weights: dict[str, torch.Tensor] | None = None, *, layout: str = "released",
                    shards: int = 3) -> Path:
    """Write the whole folder; ``weights`` (HF names) default to ``hf_weights(layout)``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = hf_weights(layout) if weights is None else weights
    write_shards(folder, {key: weights[key] for key in sorted(weights)}, shards)
    (folder / "config.json").write_text(json.dumps(folder_config(), indent=1))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "min_pixels": 56 * 56, "max_pixels": MAX_PIXELS, "patch_size": 14, "merge_size": 2,
        "temporal_patch_size": 2, "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2_5_VLProcessor",
    }, indent=1))
    write_tiny_tokenizer(folder)
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "model_max_length": 32768,
        "added_tokens_decoder": {str(i): {"content": t, "special": True} for t, i in SPECIAL_IDS.items()},
    }, indent=1))
    return folder
