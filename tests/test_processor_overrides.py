"""Load-time processor overrides: ``load_hf_checkpoint(path, **fields)`` and
``load_hf_model_checkpoint(path, **fields)`` against the image processor of HF's
``AutoProcessor.from_pretrained(path, **fields)`` on a synthetic full folder (tests/hf_tiny_folder.py:
weights, config.json, preprocessor_config.json with top-level min/max_pixels, a BPE tokenizer),
bit for bit, on HF's default backend (torchvision, what AutoProcessor builds) and on the PIL one
(AutoImageProcessor with backend="pil": HF's AutoProcessor cannot build its video processor on
PIL). HF's precedence: the keyword beats the file, and ``size`` alone does not beat the file's
top-level min_pixels / max_pixels (HF applies those on top of any ``size``). Names that are no
processor field, and values the port does not implement, are refused by name."""

import json
import shutil
import warnings

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import AutoImageProcessor, AutoProcessor

import torch_port
from hf_tiny_folder import MAX_PIXELS, write_hf_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_hf_folder(tmp_path_factory.mktemp("overrides") / "hf", shards=2)


def _quiet(make, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make(*args, **kwargs)


def hf_image_processor(folder, backend, fields):
    """The processor HF builds with the same keywords: AutoProcessor's on the default backend."""
    if backend is None:
        return _quiet(AutoProcessor.from_pretrained, folder, **fields).image_processor
    return _quiet(AutoImageProcessor.from_pretrained, folder, backend=backend, **fields)


IMAGES = {  # several sizes, so that the bounds bind (upscale, downscale) or not
    "60x90": np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8),
    "200x150": np.random.default_rng(1).integers(0, 256, (200, 150, 3), dtype=np.uint8),
    "56x84": np.random.default_rng(2).integers(0, 256, (56, 84, 3), dtype=np.uint8),  # whole merge blocks
}

OVERRIDES = {
    "max_pixels": {"max_pixels": 28 * 28 * 6},
    "min_and_max_pixels": {"min_pixels": 28 * 28 * 20, "max_pixels": 28 * 28 * 40},
    # the file's top-level min/max_pixels are applied on top of any size, in HF: size alone changes nothing
    "size_alone": {"size": {"shortest_edge": 28 * 28 * 10, "longest_edge": 28 * 28 * 12}},
    "size_and_max_pixels": {"size": {"shortest_edge": 28 * 28, "longest_edge": 28 * 28 * 30},
                            "max_pixels": 28 * 28 * 8},
    "mean_std": {"image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.3, 0.4]},
    "scalar_mean_std": {"image_mean": 0.5, "image_std": 0.25},
    "no_normalize_rescale": {"do_normalize": False, "rescale_factor": 1 / 128},
    "no_rescale": {"do_rescale": False, "image_mean": [120.0, 110.0, 100.0], "image_std": [60.0, 65.0, 70.0]},
    "no_resize": {"do_resize": False},
    "no_convert_rgb": {"do_convert_rgb": False},
    "defaults_spelled_out": {"resample": 3, "do_pad": False, "return_tensors": "pt", "disable_grouping": True,
                             "data_format": "channels_first", "default_to_square": False,
                             "patch_size": 14, "merge_size": 2, "temporal_patch_size": 2},
    "grouping": {"disable_grouping": False},
}


def _images_for(name):
    # without a resize the sides must be whole merge blocks (HF's patchify needs them)
    return [IMAGES["56x84"]] if name == "no_resize" else [IMAGES["60x90"], IMAGES["200x150"], IMAGES["60x90"]]


def assert_bit_equal(transform, hf, images):
    got = transform({"image": images})
    want = _quiet(hf, images=images, return_tensors="pt")
    assert torch.equal(got["image_grid_thw"], want["image_grid_thw"]), (got["image_grid_thw"], want["image_grid_thw"])
    assert got["pixel_values"].dtype == want["pixel_values"].dtype == torch.float32
    assert torch.equal(got["pixel_values"], want["pixel_values"])


@pytest.mark.parametrize("backend", [None, "pil"])
@pytest.mark.parametrize("name", list(OVERRIDES))
def test_load_hf_checkpoint_overrides_match_autoprocessor(folder, name, backend):
    fields = OVERRIDES[name]
    copy = json.loads(json.dumps(fields))  # HF edits a size dict in place
    _, transform = torch_port.load_hf_checkpoint(folder, torch.float32, "cpu", backend, **copy)
    hf = hf_image_processor(folder, backend, json.loads(json.dumps(fields)))
    assert transform.backend == (backend or "torchvision")
    assert (transform.min_pixels, transform.max_pixels) == (hf.size["shortest_edge"], hf.size["longest_edge"])
    assert_bit_equal(transform, hf, _images_for(name))


def test_precedence_is_hfs(folder):
    """The keyword beats the file; a size keyword loses to the file's top-level fields (as in HF)."""
    _, transform = torch_port.load_hf_checkpoint(folder, torch.float32, max_pixels=28 * 28 * 6)
    assert transform.max_pixels == 28 * 28 * 6
    _, transform = torch_port.load_hf_checkpoint(folder, torch.float32, size={"shortest_edge": 28 * 28 * 10,
                                                                              "longest_edge": 28 * 28 * 12})
    assert (transform.min_pixels, transform.max_pixels) == (56 * 56, MAX_PIXELS)  # the file's top-level fields


def test_input_data_format_override(folder):
    """input_data_format at load time: a [3, H, W] array read as channels-first, as HF's processor does."""
    image = np.ascontiguousarray(IMAGES["200x150"].transpose(2, 0, 1))
    for backend in (None, "pil"):
        _, transform = torch_port.load_hf_checkpoint(folder, torch.float32, backend=backend,
                                                     input_data_format="channels_first")
        assert_bit_equal(transform, hf_image_processor(folder, backend, {"input_data_format": "channels_first"}),
                         [image])


@pytest.mark.parametrize("backend", [None, "pil"])
@pytest.mark.parametrize("name", ["min_and_max_pixels", "mean_std", "no_normalize_rescale"])
def test_load_hf_model_checkpoint_overrides_match_autoprocessor(folder, name, backend):
    from torchtune.data import Message

    fields = OVERRIDES[name]
    _, transform = torch_port.load_hf_model_checkpoint(folder, torch.float32, backend=backend, **fields)
    hf = hf_image_processor(folder, backend, fields)
    assert_bit_equal(transform.image_transform, hf, _images_for(name))
    image = PIL.Image.fromarray(IMAGES["200x150"])  # and through the chat transform
    messages = [Message(role="user", content=[{"type": "image", "content": image}]),
                Message(role="assistant", content="")]
    got = transform({"messages": messages}, inference=True)["encoder_input"]["image"]
    want = _quiet(hf, images=[image], return_tensors="pt")
    assert torch.equal(got["grid_thw"], want["image_grid_thw"])
    assert torch.equal(got["pixel_values"], want["pixel_values"])


def test_nested_processor_config_is_read_first(folder, tmp_path):
    """HF reads processor_config.json's "image_processor" before preprocessor_config.json."""
    path = shutil.copytree(folder, tmp_path / "nested")
    nested = {**json.loads((path / "preprocessor_config.json").read_text()), "max_pixels": 28 * 28 * 5}
    (path / "processor_config.json").write_text(json.dumps({"image_processor": nested,
                                                            "processor_class": "Qwen2_5_VLProcessor"}))
    _, transform = torch_port.load_hf_checkpoint(path, torch.float32)
    hf = hf_image_processor(path, None, {})
    assert transform.max_pixels == hf.size["longest_edge"] == 28 * 28 * 5
    assert_bit_equal(transform, hf, _images_for("nested"))


SIZE_ONLY_OVERRIDES = {  # a file as HF 5.x saves it: size only, no top-level min/max_pixels
    "none": {},
    "size": {"size": {"shortest_edge": 28 * 28 * 20, "longest_edge": 28 * 28 * 40}},
    "max_pixels": {"max_pixels": 28 * 28 * 6},
    "size_pixel_keys_and_max_pixels": {"size": {"min_pixels": 28 * 28, "shortest_edge": 28 * 28 * 2},
                                       "min_pixels": 28 * 28 * 3, "max_pixels": 28 * 28 * 9},
}


@pytest.mark.parametrize("name", list(SIZE_ONLY_OVERRIDES))
def test_size_only_file(folder, tmp_path, name):
    path = shutil.copytree(folder, tmp_path / "size_only")
    config = json.loads((path / "preprocessor_config.json").read_text())
    config["size"] = {"shortest_edge": config.pop("min_pixels"), "longest_edge": config.pop("max_pixels")}
    (path / "preprocessor_config.json").write_text(json.dumps(config))
    fields = SIZE_ONLY_OVERRIDES[name]
    _, transform = torch_port.load_hf_checkpoint(path, torch.float32, **json.loads(json.dumps(fields)))
    hf = hf_image_processor(path, None, json.loads(json.dumps(fields)))
    assert (transform.min_pixels, transform.max_pixels) == (hf.size["shortest_edge"], hf.size["longest_edge"])
    assert_bit_equal(transform, hf, _images_for(name))


def test_size_without_edges_refused_as_hf_fails():
    """size {"min_pixels", "max_pixels"} with no top-level fields: HF builds the processor, then its
    first resize raises (no shortest_edge / longest_edge); the port refuses it at load."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from torch_port._hf_processor import image_transform_kwargs

    size = {"min_pixels": 3136, "max_pixels": 12544}
    with pytest.raises(ValueError, match="shortest_edge"):
        _quiet(Qwen2VLImageProcessorPil(size=dict(size)), IMAGES["60x90"], return_tensors="np")
    with pytest.raises(ValueError, match=r"size must be a dict with 'shortest_edge' and 'longest_edge' .*'min_pixels'"):
        image_transform_kwargs({"size": size})


# ---------------------------------------------------------------- refused, by name
LOADERS = {
    "load_hf_checkpoint": lambda folder, **kw: torch_port.load_hf_checkpoint(folder, torch.float32, **kw),
    "load_hf_model_checkpoint": lambda folder, **kw: torch_port.load_hf_model_checkpoint(folder, torch.float32, **kw),
}

REFUSED = [  # (keywords, exception, message) - HF would drop an unknown name or keep these values
    ({"max_pixel": 5000}, TypeError, r"load_hf_\w+\(\) got unexpected keyword argument\(s\) \['max_pixel'\]"),
    ({"foo": 1, "min_pixels": 3136}, TypeError, r"\['foo'\]"),
    ({"resample": 2}, ValueError, r"resample=2 is not supported"),
    ({"do_pad": True}, ValueError, r"do_pad=True is not supported"),
    ({"do_center_crop": True}, ValueError, r"do_center_crop=True"),
    ({"crop_size": {"height": 28, "width": 28}}, ValueError, r"crop_size="),
    ({"do_resize": None}, ValueError, r"do_resize must be true or false, got None"),
    ({"patch_size": None}, ValueError, r"patch_size must be a positive integer, got None"),
    ({"min_pixels": 28 * 28 * 50, "max_pixels": 28 * 28 * 10}, ValueError, r"min_pixels 39200 > max_pixels 7840"),
    ({"max_pixels": "many"}, ValueError, r"max_pixels must be a positive integer, got 'many'"),
    ({"size": 500}, ValueError, r"size must be a dict with 'shortest_edge' and 'longest_edge', got 500"),
    ({"image_processor_type": "CLIPImageProcessor"}, ValueError, r"image_processor_type 'CLIPImageProcessor'"),
    ({"patch_size": 7}, ValueError, r"patch_size=7 vs vision_config patch_size=14"),
    ({"merge_size": 1}, ValueError, r"merge_size=1 vs vision_config spatial_merge_size=2"),
    ({"image_mean": "gray"}, ValueError, r"image_mean must be a number or a list of numbers, got 'gray'"),
]


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("fields,error,match", REFUSED, ids=lambda v: str(v)[:40])
def test_refused_by_name(folder, loader, fields, error, match):
    with pytest.raises(error, match=match):
        LOADERS[loader](folder, **fields)


def test_model_checkpoint_refuses_input_data_format(folder):
    """Qwen2_5_VLTransform infers each image's layout (HF's input_data_format None); a fixed one is refused."""
    with pytest.raises(ValueError, match=r"input_data_format='channels_first' is not supported by Qwen2_5_VLTransform"):
        torch_port.load_hf_model_checkpoint(folder, torch.float32, input_data_format="channels_first")
