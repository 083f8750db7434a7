"""Faulty checkpoints and configs: both loaders (reference and port) end in one clear error."""

import json
import os
import struct

import numpy as np
import pytest
import torch

from checkpoint_folder import VISION_CONFIG_JSON, write_checkpoint
from reference import VisionConfig, load_weights, random_weights
from torch_port import load_hf_checkpoint, load_hf_vision

CONFIG = VisionConfig.from_hf(VISION_CONFIG_JSON)


def _load_reference(folder):
    return load_weights(folder)


def _load_port(folder):
    return load_hf_checkpoint(folder, dtype=torch.float32)


LOADERS = {"reference": _load_reference, "port": _load_port}


@pytest.fixture
def weights():
    return random_weights(CONFIG, seed=3)


def _single_file(folder, weights):
    write_checkpoint(folder, weights, shards=1)
    data = (folder / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return data, n, json.loads(data[8 : 8 + n])


def _corrupt_header_length(folder, weights):
    data, _, _ = _single_file(folder, weights)
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(data) * 3) + data[8:])


def _corrupt_header_json(folder, weights):
    data, _, _ = _single_file(folder, weights)
    (folder / "model.safetensors").write_bytes(data[:8] + b"#" + data[9:])


def _offsets_outside(folder, weights):
    data, n, header = _single_file(folder, weights)
    key = "visual.blocks.0.norm1.weight"
    header[key] = {**header[key], "data_offsets": [len(data), len(data) + 64]}
    raw = json.dumps(header).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])


def _truncated(folder, weights):
    data, _, _ = _single_file(folder, weights)
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])


def _tiny_file(folder, weights):
    _single_file(folder, weights)
    (folder / "model.safetensors").write_bytes(b"\x01\x02")


def _nan_weight(folder, weights):
    weights = dict(weights)
    weights["blocks.1.mlp.down_proj.bias"] = weights["blocks.1.mlp.down_proj.bias"].copy()
    weights["blocks.1.mlp.down_proj.bias"][2] = np.nan
    write_checkpoint(folder, weights)


def _inf_weight(folder, weights):
    weights = dict(weights)
    weights["merger.mlp.0.weight"] = weights["merger.mlp.0.weight"].copy()
    weights["merger.mlp.0.weight"][0, 0] = -np.inf
    write_checkpoint(folder, weights)


def _key_problems(folder, weights):
    weights = dict(weights)
    del weights["blocks.1.attn.proj.bias"], weights["merger.ln_q.weight"]
    weights["blocks.0.attn.extra.weight"] = np.ones(3, np.float32)
    weights["blocks.2.mlp.up_proj.weight"] = weights["blocks.2.mlp.up_proj.weight"][:-1]
    write_checkpoint(folder, weights)


def _pickle_only(folder, weights):
    write_checkpoint(folder, weights)
    for path in folder.glob("*.safetensors*"):
        path.unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not unpickled")


def _pt_only(folder, weights):
    _pickle_only(folder, weights)
    os.rename(folder / "pytorch_model.bin", folder / "model.pt")


def _missing_shard(folder, weights):
    write_checkpoint(folder, weights, shards=2)
    (folder / "model-00002-of-00002.safetensors").unlink()


def _config_not_json(folder, weights):
    write_checkpoint(folder, weights)
    (folder / "config.json").write_text("{not json")


def _config_without_vision(folder, weights):
    write_checkpoint(folder, weights)
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2"}))


def _bad_config_field(folder, weights):
    # an index past the depth selects no block, as in HF (a warning, see below); a negative one is refused
    write_checkpoint(folder, weights, vision_config={**VISION_CONFIG_JSON, "fullatt_block_indexes": [-1]})


def _missing_size(folder, weights):
    # HF would build this tower with its default hidden_size 3584; both loaders refuse instead
    write_checkpoint(folder, weights, vision_config={k: v for k, v in VISION_CONFIG_JSON.items() if k != "hidden_size"})


FAULTS = {
    "header length": (_corrupt_header_length, r"model\.safetensors"),
    "header json": (_corrupt_header_json, r"model\.safetensors"),
    "offsets outside": (_offsets_outside, r"model\.safetensors"),
    "truncated": (_truncated, r"model\.safetensors"),
    "two-byte file": (_tiny_file, r"model\.safetensors"),
    "NaN weight": (_nan_weight, r"blocks\.1\.mlp\.down_proj\.bias.*NaN|NaN.*blocks\.1\.mlp\.down_proj\.bias"),
    "Inf weight": (_inf_weight, r"merger\.mlp\.0\.weight.*Inf|Inf.*merger\.mlp\.0\.weight"),
    "key problems": (_key_problems, r"(?s)(?=.*blocks\.1\.attn\.proj\.bias)(?=.*merger\.ln_q\.weight)"
                                    r"(?=.*blocks\.0\.attn\.extra\.weight)(?=.*blocks\.2\.mlp\.up_proj\.weight)"),
    "pickle .bin": (_pickle_only, r"pickle"),
    "pickle .pt": (_pt_only, r"pickle"),
    "missing shard": (_missing_shard, r"00002-of-00002"),
    "config not json": (_config_not_json, r"config\.json.*JSON"),
    "config without vision": (_config_without_vision, r"vision_config"),
    "fullatt index negative": (_bad_config_field, r"fullatt_block_indexes"),
    "missing hidden_size": (_missing_size, r"lacks \['hidden_size'\].*3584"),
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_gives_one_clear_error(tmp_path, weights, loader, fault):
    make, pattern = FAULTS[fault]
    folder = tmp_path / "ckpt"
    make(folder, weights)
    with pytest.raises((ValueError, FileNotFoundError), match=pattern):
        LOADERS[loader](folder)


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_good_folder_loads(tmp_path, weights, loader):
    write_checkpoint(tmp_path / "ckpt", weights)
    LOADERS[loader](tmp_path / "ckpt")


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_fullatt_index_past_depth_loads_with_a_warning(tmp_path, weights, loader):
    """HF's tiny test configs keep (7, 15, 23, 31) at a small depth; HF runs them (no block matches)."""
    write_checkpoint(tmp_path / "ckpt", weights,
                     vision_config={**VISION_CONFIG_JSON, "fullatt_block_indexes": [2, 5, 31]})
    with pytest.warns(UserWarning, match=r"fullatt_block_indexes.*\[5, 31\]"):
        LOADERS[loader](tmp_path / "ckpt")


INVALID_CONFIGS = [
    ({"num_heads": 3}, "num_heads|hidden_size"),  # 32 / 3 not integral
    ({"hidden_size": 40, "num_heads": 4}, "head_dim|divisible by 4"),  # head_dim 10
    ({"window_size": 100}, "window_size"),
    ({"fullatt_block_indexes": [-1]}, "fullatt_block_indexes"),
    ({"fullatt_block_indexes": ["x"]}, "fullatt_block_indexes"),
    ({"depth": 0}, "depth"),
    ({"hidden_act": "relu6"}, "hidden_act"),
]


@pytest.mark.parametrize("change,field", INVALID_CONFIGS)
def test_invalid_config_names_the_field(change, field):
    config = {**VISION_CONFIG_JSON, **change}
    with pytest.raises(ValueError, match=field):
        VisionConfig.from_hf(config)
    with pytest.raises(ValueError, match=field):
        load_hf_vision(config, {})


def test_string_fullatt_indexes_are_coerced():
    config = {**VISION_CONFIG_JSON, "fullatt_block_indexes": ["2"]}
    assert VisionConfig.from_hf(config).fullatt_block_indexes == (2,)


# ---------------------------------------------------------------- processor configs: refused, each named
BAD_VIDEO_CONFIGS = [
    ({"do_resize": False}, "do_resize=False"),
    ({"do_rescale": False}, "do_rescale=False"),
    ({"rescale_factor": 0.5}, "rescale_factor=0.5"),
    ({"do_normalize": False}, "do_normalize=False"),
    ({"do_convert_rgb": False}, "do_convert_rgb=False"),
    ({"resample": 2}, "resample=2"),
    ({"do_center_crop": True}, "do_center_crop=True"),
    ({"video_processor_type": "LlavaOnevisionVideoProcessor"}, "video_processor_type 'LlavaOnevisionVideoProcessor'"),
    ({"fancy": 1}, "fancy"),
    ({"min_pixels": "many"}, "min_pixels must be a positive integer, got 'many'"),
    ({"do_sample_frames": "yes"}, "do_sample_frames must be true or false"),
    ({"size": {"height": 224, "width": 224}}, "size must be a dict with 'shortest_edge'"),
    ({"min_pixels": 90000, "max_pixels": 4000}, "min_pixels 90000 > max_pixels 4000"),
    ({"fps": 2, "num_frames": 4, "do_sample_frames": True}, "mutually exclusive"),
]


@pytest.mark.parametrize("fields,match", BAD_VIDEO_CONFIGS, ids=lambda v: str(v)[:40])
def test_bad_video_preprocessor_config_named(tmp_path, fields, match):
    from torch_port import load_hf_video_transform

    write_checkpoint(tmp_path, {}, shards=1)
    (tmp_path / "video_preprocessor_config.json").write_text(json.dumps(fields))
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace("[", r"\[")):
        load_hf_video_transform(tmp_path)


def test_video_transform_needs_a_processor_file(tmp_path):
    from torch_port import load_hf_video_transform

    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_hf_video_transform(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="video_preprocessor_config.json or preprocessor_config.json"):
        load_hf_video_transform(tmp_path)
    (tmp_path / "video_preprocessor_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_hf_video_transform(tmp_path)


def test_foreign_image_processor_type_refused(tmp_path, weights):
    from checkpoint_folder import PREPROCESSOR_JSON

    write_checkpoint(tmp_path, weights, preprocessor={**PREPROCESSOR_JSON, "image_processor_type": "CLIPImageProcessor"})
    with pytest.raises(ValueError, match="image_processor_type 'CLIPImageProcessor' is not one of Qwen2-VL's"):
        load_hf_checkpoint(tmp_path, dtype=torch.float32)
