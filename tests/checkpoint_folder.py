"""Writing small HF-layout Qwen2.5-VL checkpoint folders for tests (no hub: the tests make them)."""

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

VISION_CONFIG_JSON = {  # the field set of a released config.json's vision_config (sizes tiny)
    "depth": 3,
    "hidden_act": "silu",
    "hidden_size": 32,
    "intermediate_size": 40,
    "num_heads": 2,
    "in_chans": 3,
    "out_hidden_size": 24,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "spatial_patch_size": 14,
    "window_size": 112,
    "fullatt_block_indexes": [2],
    "tokens_per_second": 2,
    "temporal_patch_size": 2,
}
PREPROCESSOR_JSON = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2_5_VLProcessor",
}


def write_checkpoint(folder, weights: dict, *, vision_config: dict = VISION_CONFIG_JSON, prefix: str = "visual.",
                     shards: int = 2, dtype=torch.bfloat16, preprocessor: dict = PREPROCESSOR_JSON) -> dict:
    """A Qwen2.5-VL-like folder: config.json, preprocessor_config.json, the vision tensors under
    ``prefix`` (cast to ``dtype``) and some language-model tensors that loaders must ignore, in
    ``shards`` safetensors files (with model.safetensors.index.json when more than one).
    Returns the tensors written, by full key."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
              "hidden_size": 24, "vision_config": vision_config}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    tensors = {}
    for key, value in weights.items():
        value = torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value
        tensors[prefix + key] = value.to(dtype).contiguous()
    tensors["model.language_model.embed_tokens.weight"] = torch.ones(10, 24, dtype=torch.bfloat16)
    tensors["lm_head.weight"] = torch.full((10, 24), float("nan"), dtype=torch.bfloat16)  # not vision: ignored
    tensors["model.language_model.layers.0.x"] = torch.arange(6, dtype=torch.int64)  # a dtype nobody reads
    if shards == 1:
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    else:
        write_shards(folder, tensors, shards)
    return tensors


def write_shards(folder: Path, tensors: dict, shards: int) -> None:
    """``tensors`` dealt round-robin (in their order) into ``shards`` files named as HF names them,
    plus ``model.safetensors.index.json``."""
    names = list(tensors)
    weight_map = {}
    for s in range(shards):
        file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[s::shards]}
        save_file(part, str(folder / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, file))
    total = sum(v.numel() * v.element_size() for v in tensors.values())
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
