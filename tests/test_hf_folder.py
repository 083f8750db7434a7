"""torch_port.load_hf_model_checkpoint on a synthetic full HF folder (tests/hf_tiny_folder.py:
3 bf16 shards + index, config.json, preprocessor_config.json, tiny BPE tokenizer), both key
layouts, against HF's own from_pretrained of the same folder; and the folder's faults, each
named by key or file."""

import json
import shutil

import numpy as np
import PIL.Image
import pytest
import torch
from torchtune.data import Message
from transformers import Qwen2_5_VLForConditionalGeneration

import torch_port
from goldenlib.tolerances import FUSED_LOGITS_VS_HF_BOUND, rel_error
from hf_tiny_folder import hf_weights, write_hf_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_hf_folder(tmp_path_factory.mktemp("hf") / "released")


def _sample(transform):
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8))
    messages = [Message(role="user", content=[{"type": "image", "content": image},
                                              {"type": "text", "content": "What is in this image?"}]),
                Message(role="assistant", content="")]
    return transform({"messages": messages}, inference=True)


@pytest.mark.parametrize("layout", ["released", "transformers5"])
def test_folder_loads_bf16_weights_exactly(tmp_path, layout):
    weights = hf_weights(layout)
    model, transform = torch_port.load_hf_model_checkpoint(write_hf_folder(tmp_path, weights))
    expected = torch_port.qwen2_5_vl_hf_to_tune(weights)
    got = model.state_dict()
    assert set(got) == set(expected)
    assert all(got[k].dtype == torch.bfloat16 and torch.equal(got[k], expected[k]) for k in expected)
    assert transform.image_token_id == model.token_ids["image"] == 151655
    sample = _sample(transform)
    assert sample["encoder_input"]["image"]["pixel_values"].dtype == torch.bfloat16


def test_folder_logits_match_hf_from_pretrained(folder):
    model, transform = torch_port.load_hf_model_checkpoint(folder, dtype=torch.float32)
    hf = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, dtype=torch.float32,
                                                            attn_implementation="eager").eval()
    sample = _sample(transform)
    ids = torch.tensor([sample["tokens"]])
    image = sample["encoder_input"]["image"]
    types = (ids == 151655).long()
    with torch.no_grad():
        expected = hf(input_ids=ids, mm_token_type_ids=types, pixel_values=image["pixel_values"],
                      image_grid_thw=image["grid_thw"]).logits
        got = model(ids, encoder_input=sample["encoder_input"], input_pos=sample["input_pos"][:, None])
    err = rel_error(got, expected)
    print(f"folder float32 vs HF from_pretrained: logits rel err {err:.3g}")
    assert err <= FUSED_LOGITS_VS_HF_BOUND


def _copy(folder, tmp_path):
    return shutil.copytree(folder, tmp_path / "copy")


def _rewrite(tmp_path, edit):
    weights = hf_weights("released")
    edit(weights)
    return write_hf_folder(tmp_path / "faulty", weights)


def test_missing_decoder_key_named(tmp_path):
    path = _rewrite(tmp_path, lambda w: w.pop("model.layers.1.mlp.gate_proj.weight"))
    with pytest.raises(ValueError, match=r"missing key .*layers\.1\.mlp.*model\.layers\.1\.mlp\.gate_proj\.weight"):
        torch_port.load_hf_model_checkpoint(path)


def test_missing_visual_key_named(tmp_path):
    path = _rewrite(tmp_path, lambda w: w.pop("visual.blocks.0.attn.qkv.weight"))
    with pytest.raises(ValueError, match=r"missing key .*blocks\.0\.attn\.qkv\.weight"):
        torch_port.load_hf_model_checkpoint(path)


def test_wrong_shape_named(tmp_path):
    def edit(w):
        w["model.layers.0.self_attn.o_proj.weight"] = w["model.layers.0.self_attn.o_proj.weight"][:, :32].contiguous()
    with pytest.raises(ValueError, match=r"shape mismatch for 'model\.layers\.0\.self_attn\.o_proj\.weight'"):
        torch_port.load_hf_model_checkpoint(_rewrite(tmp_path, edit))


def test_nan_weight_named(tmp_path):
    def edit(w):
        w["visual.merger.mlp.0.weight"] = w["visual.merger.mlp.0.weight"].clone()
        w["visual.merger.mlp.0.weight"][0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite .*'visual\.merger\.mlp\.0\.weight' \(1 NaN, 0 Inf\)"):
        torch_port.load_hf_model_checkpoint(_rewrite(tmp_path, edit))


def test_pickle_only_folder_refused(folder, tmp_path):
    path = _copy(folder, tmp_path)
    for shard in path.glob("*.safetensors"):
        shard.unlink()
    (path / "model.safetensors.index.json").unlink()
    (path / "pytorch_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(ValueError, match=r"pickle checkpoint files \['pytorch_model\.bin'\]"):
        torch_port.load_hf_model_checkpoint(path)


def test_shard_missing_named(folder, tmp_path):
    path = _copy(folder, tmp_path)
    (path / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing .*\['model-00002-of-00003\.safetensors'\]"):
        torch_port.load_hf_model_checkpoint(path)


@pytest.mark.parametrize("name", ["vocab.json", "merges.txt", "tokenizer_config.json"])
def test_missing_tokenizer_file_named(folder, tmp_path, name):
    path = _copy(folder, tmp_path)
    (path / name).unlink()
    with pytest.raises(FileNotFoundError, match=rf"tokenizer files \['{name}'\]"):
        torch_port.load_hf_model_checkpoint(path)


def test_token_id_disagreement_named(folder, tmp_path):
    path = _copy(folder, tmp_path)
    config = json.loads((path / "config.json").read_text())
    config["image_token_id"] = 151654
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"image_token_id=151654 but the tokenizer's <\|image_pad\|> is 151655"):
        torch_port.load_hf_model_checkpoint(path)


def test_missing_folder_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        torch_port.load_hf_model_checkpoint(tmp_path / "nowhere")


# preprocessor fields other than HF's defaults; the transform must then equal HF's processor of the folder
PROCESSOR_OPTIONS = {
    "no_normalize": {"do_normalize": False, "rescale_factor": 1 / 128, "do_convert_rgb": False},
    "no_resize_no_rescale": {"do_resize": False, "do_rescale": False, "image_mean": [120.0, 110.0, 100.0],
                             "image_std": [60.0, 65.0, 70.0]},
}


@pytest.mark.parametrize("backend", [None, "pil", "torchvision"])
@pytest.mark.parametrize("options", sorted(PROCESSOR_OPTIONS))
def test_folder_processor_options_match_hf(folder, tmp_path, options, backend):
    import warnings

    from transformers import AutoImageProcessor

    path = _copy(folder, tmp_path)
    config = json.loads((path / "preprocessor_config.json").read_text())
    (path / "preprocessor_config.json").write_text(json.dumps({**config, **PROCESSOR_OPTIONS[options]}))
    _, transform = torch_port.load_hf_model_checkpoint(path, dtype=torch.float32, backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = AutoImageProcessor.from_pretrained(path, **({} if backend is None else {"backend": backend}))
    assert transform.image_transform.backend == (backend or "torchvision")  # HF's default with torchvision
    image = PIL.Image.fromarray(np.random.default_rng(1).integers(0, 256, (56, 84, 3), dtype=np.uint8))
    messages = [Message(role="user", content=[{"type": "image", "content": image}]),
                Message(role="assistant", content="")]
    got = transform({"messages": messages}, inference=True)["encoder_input"]["image"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = hf(images=[image], return_tensors="pt")
    assert torch.equal(got["grid_thw"], want["image_grid_thw"])
    assert got["pixel_values"].dtype == want["pixel_values"].dtype == torch.float32
    assert torch.equal(got["pixel_values"], want["pixel_values"])


def test_folder_backend_refused_by_name(folder):
    with pytest.raises(ValueError, match="backend must be None or one of .*'cv2'"):
        torch_port.load_hf_model_checkpoint(folder, backend="cv2")


# the folder's video processor settings reach the model transform's videos, as AutoVideoProcessor reads them
VIDEO_FILES = {
    "image_file_only": None,  # released folders: HF reads preprocessor_config.json for videos too
    "video_file": {"size": {"shortest_edge": 3136, "longest_edge": 30000}, "do_sample_frames": True, "fps": 2,
                   "min_frames": 2, "max_frames": 8, "video_processor_type": "Qwen2VLVideoProcessor"},
}


@pytest.mark.parametrize("name", sorted(VIDEO_FILES))
def test_folder_video_processor_settings_match_hf(folder, tmp_path, name):
    import warnings

    from transformers import AutoVideoProcessor

    path = _copy(folder, tmp_path)
    if VIDEO_FILES[name] is not None:
        (path / "video_preprocessor_config.json").write_text(json.dumps(VIDEO_FILES[name]))
    _, transform = torch_port.load_hf_model_checkpoint(path, dtype=torch.float32, backend="pil")
    clip = np.random.default_rng(2).integers(0, 256, (9, 64, 90, 3), dtype=np.uint8)
    messages = [Message(role="user", content=[{"type": "video", "content": clip, "video_fps": 6.0}]),
                Message(role="assistant", content="")]
    got = transform({"messages": messages}, inference=True)["encoder_input"]["video"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = AutoVideoProcessor.from_pretrained(path)(
            videos=[clip], video_metadata=[{"fps": 6.0, "total_num_frames": 9}], return_tensors="pt")
    assert torch.equal(got["grid_thw"], want["video_grid_thw"])
    assert torch.equal(got["pixel_values"], want["pixel_values_videos"])


def test_folder_video_settings_the_port_lacks_refuse_videos_only(folder, tmp_path):
    """An image file that stands in for the video one (no video file) with a setting the video
    transform does not implement: images still load and transform, each video names the setting."""
    path = _copy(folder, tmp_path)
    config = json.loads((path / "preprocessor_config.json").read_text())
    (path / "preprocessor_config.json").write_text(json.dumps({**config, "rescale_factor": 1 / 128}))
    _, transform = torch_port.load_hf_model_checkpoint(path, dtype=torch.float32, backend="pil")
    assert "image" in _sample(transform)["encoder_input"]
    clip = np.zeros((2, 56, 56, 3), dtype=np.uint8)
    messages = [Message(role="user", content=[{"type": "video", "content": clip}]),
                Message(role="assistant", content="")]
    with pytest.raises(ValueError, match=r"messages\[0\] \(user\) content\[0\]: videos cannot follow .*rescale_factor"):
        transform({"messages": messages}, inference=True)
    (path / "video_preprocessor_config.json").write_text(json.dumps({"rescale_factor": 1 / 128}))
    with pytest.raises(ValueError, match="video_preprocessor_config.json: rescale_factor=0.0078125 is not supported"):
        torch_port.load_hf_model_checkpoint(path)  # a video file of its own is read strictly
