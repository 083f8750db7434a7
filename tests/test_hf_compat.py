"""goldenlib.hf_compat: every HF name it hands out exists and is the one the cross-check means, for the
installed transformers; the supported-range logic on fake version strings.

The tests that touch HF's image or modeling stack are marked slow: importing it pulls in torchvision,
which imports torch._dynamo (11-17 s cold on the 2-core machine, measured with -X importtime; the
checks themselves take under 0.2 s). In the full suite that import is paid once per process by every
HF cross-check test; the quick loop keeps the pure version-range logic (about 3 s).

The range tests need no transformers and always run; the tests that read the installed release
import it inside, so without transformers they fail with its ImportError (they never skip)."""

import inspect
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest

from goldenlib import hf_compat
from goldenlib.hf_compat import SUPPORTED, UnsupportedVersion

@pytest.mark.parametrize("version, ok", [
    ("4.48.3", False), ("4.49.0", True), ("4.53.3", True), ("4.56.2", True), ("4.57.0", True), ("4.57.6", True), ("5.0.0rc1", True), ("5.0.0", True),
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


def test_unsupported_inside_the_range_says_what_is_missing(monkeypatch):
    monkeypatch.setattr(hf_compat, "installed_version", lambda: "4.53.3")
    message = str(hf_compat._missing("Qwen2_5_VLProcessor._process_videos"))
    assert "4.53.3" in message and "inside the supported range" in message and "_process_videos" in message
    assert "Install a supported version" not in message  # it is one


# ---- layout detection on stand-in objects (the real releases: golden/README.md's version table) ----------

class _WithRopeIndex:
    def get_rope_index(self, input_ids, **kwargs):
        return "called"


class _Without:
    pass


def test_rope_index_owner_follows_the_release_layout():
    # 4.52 on: Qwen2_5_VLModel (vision + text) owns get_rope_index
    late = SimpleNamespace(Qwen2_5_VLModel=_WithRopeIndex, Qwen2_5_VLForConditionalGeneration=_Without)
    assert hf_compat.rope_index_owner(late) is _WithRopeIndex
    # 4.49-4.51: Qwen2_5_VLModel is the text model; the generation class owns it
    early = SimpleNamespace(Qwen2_5_VLModel=_Without, Qwen2_5_VLForConditionalGeneration=_WithRopeIndex)
    assert hf_compat.rope_index_owner(early) is _WithRopeIndex
    with pytest.raises(UnsupportedVersion, match="get_rope_index"):
        hf_compat.rope_index_owner(SimpleNamespace(Qwen2_5_VLModel=_Without))


def test_text_rotary_config_and_mrope_section_in_both_layouts():
    late_rotary, early_rotary = SimpleNamespace(), SimpleNamespace()
    text_config = SimpleNamespace(rope_parameters={"mrope_section": [2, 3, 3]})
    late = SimpleNamespace(language_model=SimpleNamespace(rotary_emb=late_rotary),
                           config=SimpleNamespace(text_config=text_config))
    early_config = SimpleNamespace(rope_scaling={"type": "default", "mrope_section": [16, 24, 24]})
    early = SimpleNamespace(model=SimpleNamespace(rotary_emb=early_rotary), config=early_config)  # 4.49
    assert hf_compat.text_rotary(late) is late_rotary and hf_compat.text_config_of(late) is text_config
    assert hf_compat.text_rotary(early) is early_rotary and hf_compat.text_config_of(early) is early_config
    assert hf_compat.mrope_section_of(late) == [2, 3, 3]
    assert hf_compat.mrope_section_of(early) == [16, 24, 24]
    with pytest.raises(UnsupportedVersion, match="rotary_emb"):
        hf_compat.text_rotary(SimpleNamespace(config=early_config))


class _Processor449:  # reads its min/max_pixels attributes, leaves size at the class default
    size = {"shortest_edge": 3136, "longest_edge": 1003520}
    min_pixels, max_pixels = 100, 200

    def _preprocess(self, images):
        return self.min_pixels, self.max_pixels


class _Processor4x:  # reads size, a dict
    size = {"shortest_edge": 300, "longest_edge": 400}

    def _preprocess(self, images, size):
        return size["shortest_edge"]


def test_size_bounds_are_what_the_resize_reads():
    assert hf_compat.size_bounds(_Processor449()) == (100, 200)
    assert hf_compat.size_bounds(_Processor4x()) == (300, 400)
    late = SimpleNamespace(size=SimpleNamespace(shortest_edge=500, longest_edge=600))  # a SizeDict
    assert hf_compat.size_bounds(late) == (500, 600)


def test_torchvision_resize_calls_the_late_5x_resize_with_its_factor():
    calls = []

    class Late:
        size, resample, patch_size, merge_size = "size", 3, 14, 2

        def resize(self, images, size, resample, factor, **kwargs):
            calls.append((images, size, resample, factor))
            return "resized"

    assert hf_compat.torchvision_resize(Late(), "pixels") == "resized"
    assert calls == [("pixels", "size", 3, 28)]


def test_rescale_normalize_gives_mean_std_as_the_processor_receives_them():
    import torch

    seen = []

    class Late:  # caches the fused values: needs hashable tuples
        rescale_factor, image_mean, image_std = 0.5, [1.0, 2.0], [4.0, 8.0]

        def _fuse_mean_std_and_rescale_factor(self):
            pass

        def rescale_and_normalize(self, images, do_rescale, factor, do_normalize, mean, std):
            seen.append((mean, std))

    class Early449:  # no fusing method: 4.49 divides mean/std by the rescale factor before the call
        rescale_factor, image_mean, image_std = 0.5, [1.0, 2.0], [4.0, 8.0]
        rescale_and_normalize = Late.rescale_and_normalize

    hf_compat.torchvision_rescale_normalize(Late(), None)
    hf_compat.torchvision_rescale_normalize(Early449(), None)
    assert seen[0] == ((1.0, 2.0), (4.0, 8.0))
    assert torch.equal(seen[1][0], torch.tensor([2.0, 4.0])) and torch.equal(seen[1][1], torch.tensor([8.0, 16.0]))


def test_expand_by_call_answers_a_449_processor_that_asks_the_image_processor_for_videos():
    """4.49's Qwen2_5_VLProcessor calls image_processor(images=None, videos=...); later ones the video processor."""
    asked = []

    class Processor:
        image_processor = SimpleNamespace(merge_size=2)

        def __call__(self, text, images=None, videos=None):
            grids = {}
            if images is not None:
                grids.update(self.image_processor(images=images, videos=None))
            if videos is not None:
                grids.update(self.image_processor(images=None, videos=videos))  # as 4.49 does
                asked.append(self.image_processor.temporal_patch_size)
            n = sum(int(np.prod(g)) // 4 for key in ("image_grid_thw", "video_grid_thw") for g in grids.get(key, []))
            return {"input_ids": [[7] * n for _ in text], **grids}

    rows = hf_compat.expand_by_call(Processor(), ["x"], [[1, 4, 4]], [[2, 4, 6]], lambda t: [])
    assert rows == [[7] * (4 + 12)] and asked == [2]


@pytest.mark.slow
def test_torchvision_processor_adapters_on_the_installed_release():
    import torch

    cls = hf_compat.torchvision_image_processor_class()
    assert cls.__name__ in ("Qwen2VLImageProcessor", "Qwen2VLImageProcessorFast")
    processor = cls(min_pixels=56 * 56, max_pixels=28 * 28 * 16)
    assert hf_compat.size_bounds(processor) == (56 * 56, 28 * 28 * 16)
    image = np.random.default_rng(0).integers(0, 256, (50, 60, 3), dtype=np.uint8)
    out = processor(images=[PIL.Image.fromarray(image)], return_tensors="pt")
    assert out["image_grid_thw"].tolist() == [[1, 4, 4]]
    resized = hf_compat.torchvision_resize(processor, torch.from_numpy(image).permute(2, 0, 1)[None])
    assert resized.shape == (1, 3, 56, 56) and resized.dtype == torch.uint8
    fused = hf_compat.torchvision_rescale_normalize(processor, resized)
    mean, std = torch.tensor(processor.image_mean)[:, None, None], torch.tensor(processor.image_std)[:, None, None]
    torch.testing.assert_close(fused[0], (resized[0] / 255.0 - mean) / std, rtol=0, atol=1e-5)
    # the processor's own output is these values, patchified (the first patch: rows 0-13, columns 0-13)
    torch.testing.assert_close(out["pixel_values"][0].reshape(3, 2, 14, 14)[:, 0], fused[0, :, :14, :14])


@pytest.mark.slow
def test_rope_index_and_video_classes_of_the_installed_release():
    assert hf_compat.rope_index_class().__name__ in ("Qwen2_5_VLModel", "Qwen2_5_VLForConditionalGeneration")
    from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor

    if hasattr(Qwen2_5_VLProcessor, "_process_videos"):
        assert hf_compat.video_processor_class().__name__ == "Qwen2VLVideoProcessor"
    else:
        with pytest.raises(UnsupportedVersion, match="_process_videos"):
            hf_compat.video_processor_class()
