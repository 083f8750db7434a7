"""Writing small HF-layout Qwen2.5-VL checkpoint folders for tests (no hub: the tests make them)."""

import json

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


def write_checkpoint(folder, sd_bf16: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["Qwen2_5_VLForConditionalGeneration"],
                "model_type": "qwen2_5_vl",
                "hidden_size": 24,
                "vision_config": VISION_CONFIG_JSON,
            }
        )
    )
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_JSON))
    tensors = {"visual." + k: v.contiguous() for k, v in sd_bf16.items()}
    tensors["model.layers.0.self_attn.q_proj.weight"] = torch.ones(24, 24, dtype=torch.bfloat16)
    tensors["model.embed_tokens.weight"] = torch.ones(10, 24, dtype=torch.bfloat16)
    tensors["lm_head.weight"] = torch.ones(10, 24, dtype=torch.bfloat16)
    keys = list(tensors)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    weight_map = {}
    for file, names in shards.items():
        save_file({k: tensors[k] for k in names}, str(folder / file), metadata={"format": "pt"})
        weight_map.update({k: file for k in names})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
