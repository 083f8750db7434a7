"""goldenlib.hf_compat: every HF name it hands out exists and is the one the cross-check means, for the
installed transformers; the supported-range logic on fake version strings.

The tests that touch HF's image or modeling stack are marked slow: importing it pulls in torchvision,
which imports torch._dynamo (11-17 s cold on the 2-core machine, measured with -X importtime; the
checks themselves take under 0.2 s). In the full suite that import is paid once per process by every
HF cross-check test; the quick loop keeps the pure version-range logic (about 3 s)."""

import importlib.util
import inspect

import numpy as np
import PIL.Image
import pytest

from goldenlib import hf_compat
from goldenlib.hf_compat import SUPPORTED, UnsupportedVersion

if importlib.util.find_spec("transformers") is None:  # without importing it (2 s): the range tests need none
    pytest.skip("transformers is not installed", allow_module_level=True)


@pytest.mark.parametrize("version, ok", [
    ("4.48.3", False), ("4.56.2", False), ("4.57.0", True), ("4.57.6", True), ("5.0.0rc1", True), ("5.0.0", True),
    ("5.24.0", True), ("6.0.0", False), ("6.0.0.dev0", False), ("3.9.9", False)])
def test_version_range(version, ok):
    assert hf_compat.is_supported(version) is ok
    if ok:
        assert str(hf_compat.check_version(version)) == version
    else:
        with pytest.raises(UnsupportedVersion) as info:
            hf_compat.check_version(version)
        message = str(info.value)
        assert version in message and SUPPORTED in message and "\n" not in message


def test_not_a_version_is_unsupported():
    with pytest.raises(UnsupportedVersion, match="not a version string"):
        hf_compat.check_version("banana")


def test_installed_version_is_supported():
    import transformers

    assert hf_compat.installed_version() == transformers.__version__
    hf_compat.check_version()


@pytest.mark.slow
def test_pil_image_processor_is_the_pil_path():
    cls = hf_compat.pil_image_processor_class()
    from transformers.image_processing_utils import BaseImageProcessor

    assert cls.__name__ in ("Qwen2VLImageProcessorPil", "Qwen2VLImageProcessor")
    assert issubclass(cls, BaseImageProcessor)  # not the torchvision (BaseImageProcessorFast) one
    out = cls(min_pixels=56 * 56, max_pixels=28 * 28 * 16)(images=[PIL.Image.new("RGB", (60, 50))],
                                                         return_tensors="np")
    assert tuple(out["image_grid_thw"][0]) == (1, 4, 4)
    assert hf_compat.smart_resize()(50, 60, factor=28, min_pixels=56 * 56, max_pixels=28 * 28 * 16) == (56, 56)


@pytest.mark.slow
def test_convert_to_rgb_numpy_matches_pillow():
    rgba = PIL.Image.fromarray(np.arange(4 * 5 * 4, dtype=np.uint8).reshape(4, 5, 4), "RGBA")
    got = hf_compat.convert_to_rgb_numpy(rgba)
    assert got.dtype == np.uint8 and got.shape == (4, 5, 3)
    from transformers.image_transforms import convert_to_rgb

    if "return_numpy" in inspect.signature(convert_to_rgb).parameters:
        np.testing.assert_array_equal(got, convert_to_rgb(rgba, return_numpy=True))
    else:
        np.testing.assert_array_equal(got, np.asarray(convert_to_rgb(rgba)))


@pytest.fixture(scope="module")
def tiny_tower():
    import torch

    cfg = hf_compat.vision_config_class()(depth=2, hidden_size=32, num_heads=2, intermediate_size=48,
                                          out_hidden_size=24, window_size=56, fullatt_block_indexes=[1])
    with hf_compat.no_init_weights():
        model = hf_compat.vision_tower_class()._from_config(cfg, **hf_compat.dtype_kwarg(torch.float32))
    return model.eval()


@pytest.mark.slow
def test_vision_classes(tiny_tower):
    import torch

    assert type(tiny_tower).__name__ == "Qwen2_5_VisionTransformerPretrainedModel"
    assert type(tiny_tower.config).__name__ == "Qwen2_5_VLVisionConfig"
    assert tiny_tower.patch_embed.proj.weight.dtype == torch.float32


@pytest.mark.slow
def test_window_index_and_cu_seqlens_are_what_the_blocks_get(tiny_tower):
    import torch

    grid = torch.tensor([[1, 8, 12], [2, 4, 4]])
    seen = {}
    for i, blk in enumerate(tiny_tower.blocks):
        blk.register_forward_pre_hook(lambda m, a, kw, i=i: seen.__setitem__(i, kw["cu_seqlens"].long()),
                                      with_kwargs=True)
    pixels = torch.randn(int(grid.prod(-1).sum()), 3 * 2 * 14 * 14)
    with torch.no_grad():
        out = hf_compat.tower_output(tiny_tower(pixels, grid_thw=grid))
    assert out.shape == (int(grid.prod(-1).sum()) // 4, 24)
    window_index, cu_window = hf_compat.vision_window_index(tiny_tower, grid)
    assert sorted(window_index.tolist()) == list(range(int(grid.prod(-1).sum()) // 4))
    assert torch.equal(seen[0], cu_window)  # block 0 is a window block
    assert torch.equal(seen[1], hf_compat.vision_cu_seqlens(grid))  # block 1 is a full-attention block
    assert hf_compat.vision_cu_seqlens(grid).tolist() == [0, 96, 112, 128]


@pytest.mark.slow
def test_positions_adapters():
    from goldenlib.hf_positions import IMAGE_TOKEN_ID, VISION_START_ID, hf_expand, hf_rope_index, hf_tiny_model

    model = hf_tiny_model()
    assert hf_compat.mrope_section_of(model) == [2, 3, 3]
    ids, types = hf_expand([[7, VISION_START_ID, IMAGE_TOKEN_ID, 8]], image_grid_thw=[[1, 4, 6]])
    assert ids.shape == (1, 3 + 6) and types.tolist() == [[0, 0] + [1] * 6 + [0]]
    position_ids, deltas = hf_rope_index(model, ids, types, image_grid_thw=[[1, 4, 6]])
    assert position_ids.shape == (3, 1, 9)
    assert position_ids[:, 0, 2:8].tolist() == [[2] * 6, [2, 2, 2, 3, 3, 3], [2, 3, 4, 2, 3, 4]]
    cos, sin = hf_compat.mrope_cos_sin(model, position_ids)
    assert cos.shape == sin.shape == (1, 9, 16)
    np.testing.assert_allclose(cos.numpy() ** 2 + sin.numpy() ** 2, 1, atol=1e-6)


@pytest.mark.slow
def test_processor_and_rope_index_signature():
    assert hf_compat.processor_class().__name__ == "Qwen2_5_VLProcessor"
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel

    params = inspect.signature(Qwen2_5_VLModel.get_rope_index).parameters
    assert hf_compat.rope_index_takes_token_types() == ("mm_token_type_ids" in params)
