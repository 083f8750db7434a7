"""HF's processor options and input formats, both backends: the reference and the port against
``Qwen2VLImageProcessorPil`` (backend "pil") and ``Qwen2VLImageProcessor`` (backend "torchvision"),
bit for bit; and load_hf_checkpoint honouring or refusing each preprocessor_config.json field."""

import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

import reference
from checkpoint_folder import PREPROCESSOR_JSON, VISION_CONFIG_JSON, write_checkpoint
from torch_port import Qwen2_5_VLImageTransform, load_hf_checkpoint

PHOTOS = sorted(p for p in (Path(__file__).resolve().parent.parent / "data" / "photos").glob("*") if p.suffix != ".md")
OPTIONS = [{}, {"do_rescale": False}, {"do_normalize": False}, {"do_rescale": False, "do_normalize": False},
           {"rescale_factor": 0.5, "image_mean": 0.5, "image_std": [0.2, 0.3, 0.4]}, {"do_resize": False}]


def hf(backend, images, **options):
    from transformers import Qwen2VLImageProcessor, Qwen2VLImageProcessorPil

    cls = Qwen2VLImageProcessorPil if backend == "pil" else Qwen2VLImageProcessor
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = cls(min_pixels=3136, max_pixels=12845056)(images, return_tensors="np", **options)
    return np.asarray(out["pixel_values"]), np.asarray(out["image_grid_thw"])


def assert_same(ours, theirs):
    pixel_values, grid = ours["pixel_values"], ours["image_grid_thw"]
    pixel_values = pixel_values.numpy() if isinstance(pixel_values, torch.Tensor) else pixel_values
    grid = grid.numpy() if isinstance(grid, torch.Tensor) else grid
    assert pixel_values.dtype == theirs[0].dtype and pixel_values.shape == theirs[0].shape
    np.testing.assert_array_equal(grid, theirs[1])
    np.testing.assert_array_equal(pixel_values, theirs[0])  # bit-exact


def _noise(h, w, seed, c=3):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


@pytest.mark.parametrize("backend", ["pil", "torchvision"])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults")
def test_options_match_hf(backend, options):
    image = _noise(112, 84, seed=1) if options.get("do_resize") is False else _noise(61, 93, seed=2)
    expected = hf(backend, PIL.Image.fromarray(image), **options)
    assert_same(reference.preprocess(image, backend=backend, **options), expected)
    assert_same(Qwen2_5_VLImageTransform(backend=backend, **options)({"image": image}), expected)


@pytest.mark.parametrize("backend", ["pil", "torchvision"])
@pytest.mark.parametrize("shape", [(40, 33), (5, 700), (700, 9), (300, 30), (29, 29), (13, 250)],
                         ids=["upscale", "extreme_wide", "extreme_tall", "one_axis", "near_square", "wide"])
def test_random_sizes_match_hf(backend, shape):
    image = _noise(*shape, seed=sum(shape))
    expected = hf(backend, PIL.Image.fromarray(image))
    assert_same(reference.preprocess(image, backend=backend), expected)
    assert_same(Qwen2_5_VLImageTransform(backend=backend)({"image": image}), expected)


@pytest.mark.slow
@pytest.mark.parametrize("photo", PHOTOS, ids=lambda p: p.name)
def test_photos_torchvision_bit_exact(photo):
    with PIL.Image.open(photo) as image:
        image = image.convert("RGB")
    expected = hf("torchvision", image)
    assert_same(reference.preprocess(np.asarray(image), backend="torchvision"), expected)
    assert_same(Qwen2_5_VLImageTransform(backend="torchvision")({"image": image}), expected)


@pytest.mark.parametrize("backend", ["pil", "torchvision"])
def test_input_formats_match_hf(backend):
    """Every input form HF takes, given as it is to HF and to ours: the same bits (the port takes a
    whole list, nested list or batch in one sample, its rows one image after the other)."""
    a, b, c = _noise(50, 70, 3), _noise(64, 40, 4), _noise(30, 90, 5)
    chw = [np.ascontiguousarray(x.transpose(2, 0, 1)) for x in (a, b, c)]
    rgba, gray = _noise(45, 70, 11, c=4), _noise(40, 60, 12, c=1)
    expected = hf(backend, [[a, b], [c]])  # nested lists: one list per sample
    assert_same(reference.preprocess([[a, b], [c]], backend=backend), expected)
    assert_same(reference.preprocess(chw, backend=backend), hf(backend, chw))  # numpy CHW, inferred
    assert_same(reference.preprocess([torch.from_numpy(x) for x in chw], backend=backend), expected)  # tensors
    assert_same(reference.preprocess([PIL.Image.fromarray(x) for x in (a, b, c)], backend=backend), expected)
    batch = np.stack([a, a])  # 4-D: a batch of images
    assert_same(reference.preprocess(batch, backend=backend), hf(backend, batch))
    forms = {
        "nested": [[a, b], [c]], "nested_with_empty": [[a], [], [b, c]], "list_hwc": [a, b, c], "list_chw": chw,
        "chw": chw[0], "chw_view": a.transpose(2, 0, 1), "tensors_chw": [torch.from_numpy(x) for x in chw],
        "tensors_hwc": [torch.from_numpy(x) for x in (a, b, c)], "pil": [PIL.Image.fromarray(x) for x in (a, b, c)],
        "batch_hwc": batch, "batch_chw": np.stack([chw[0], chw[0]]), "tensor_batch": torch.from_numpy(np.stack(chw[1:2] * 2)),
        "list_of_batches": [batch, batch[:1]], "rgba_hwc": rgba, "rgba_chw": np.ascontiguousarray(rgba.transpose(2, 0, 1)),
        "rgba_tensor": torch.from_numpy(np.ascontiguousarray(rgba.transpose(2, 0, 1))), "gray_hwc1": gray,
        "gray_chw1": np.ascontiguousarray(gray.transpose(2, 0, 1)), "pil_rgba": PIL.Image.fromarray(rgba),
        "pil_gray": PIL.Image.fromarray(gray[:, :, 0]), "pil_palette": PIL.Image.fromarray(a).convert("P"),
    }
    for name, images in forms.items():
        try:
            assert_same(Qwen2_5_VLImageTransform(backend=backend)({"image": images}), hf(backend, images))
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from None
    # a 2-D array: one gray image (our choice; HF's make_flat_list_of_images refuses it, and takes [H, W, 1])
    assert_same(Qwen2_5_VLImageTransform(backend=backend)({"image": gray[:, :, 0]}), hf(backend, gray))


@pytest.mark.parametrize("backend", ["pil", "torchvision"])
def test_ambiguous_layout_as_hf_and_input_data_format(backend):
    """[3, 60, 3]: both ends could be channels. HF (and the port) take it as channels-first and warn;
    ``input_data_format`` decides. The reference keeps its documented choice (channels-last)."""
    square = _noise(3, 60, 6)
    for data_format in ("channels_first", "channels_last"):
        expected = hf(backend, square, input_data_format=data_format)
        assert_same(reference.preprocess(square, backend=backend, input_data_format=data_format), expected)
        assert_same(reference.fast.preprocess(square, backend=backend, input_data_format=data_format), expected)
        port = Qwen2_5_VLImageTransform(backend=backend, input_data_format=data_format)
        assert_same(port({"image": square}), expected)
        assert_same(port({"image": torch.from_numpy(square)}), expected)
    with pytest.warns(UserWarning, match=r"\(3, 60, 3\).*channels-first"):
        inferred = Qwen2_5_VLImageTransform(backend=backend)({"image": square})
    assert_same(inferred, hf(backend, square))
    assert_same(inferred, hf(backend, square, input_data_format="channels_first"))
    assert_same(reference.preprocess(square, backend=backend), hf(backend, square, input_data_format="channels_last"))


def test_rgba_array_blends_equal_hf_convert_to_rgb():
    """Every (level, alpha) pair: HF's convert_to_rgb on a NumPy RGBA array (float64, rounded) ==
    Pillow's alpha_composite over white (what HF does to a PIL RGBA image) == the port's and the
    reference's PIL-backend blend; the torchvision backend's float32 blend is HF's own (checked above)."""
    from transformers.image_transforms import convert_to_rgb

    from reference.image_inputs import rgb_from_array
    from torch_port._image_inputs import blend_over_white, pil_rgb

    level, alpha = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8))
    rgba = np.stack([level, 255 - level, level, alpha], axis=-1)  # [256, 256, 4]
    hf_numpy = convert_to_rgb(rgba, return_numpy=True, input_data_format="channels_last")
    np.testing.assert_array_equal(np.asarray(pil_rgb(PIL.Image.fromarray(rgba))), hf_numpy)
    np.testing.assert_array_equal(blend_over_white(rgba, "pil"), hf_numpy)
    np.testing.assert_array_equal(rgb_from_array(rgba.transpose(2, 0, 1), "pil").transpose(1, 2, 0), hf_numpy)


@pytest.mark.parametrize("image,match", [
    (np.zeros((8, 8, 3), np.float32), r"dtype uint8, got float32.*\(8, 8, 3\).*scale floats"),
    (torch.zeros(3, 8, 8), r"dtype uint8, got torch.float32"),
    (np.zeros((8, 8, 5), np.uint8), r"got shape \(8, 8, 5\)"), (np.zeros((2, 8, 8), np.uint8), r"got shape \(2, 8, 8\)"),
    (np.zeros((0, 8, 3), np.uint8), r"empty, shape \(0, 8, 3\)"), (np.zeros((1, 2, 8, 8, 3), np.uint8), r"\(1, 2, 8, 8, 3\)"),
    ([], "empty list"), ("image.png", "got str: 'image.png'"), ([np.zeros((8, 8, 3), np.uint8), "x"], "holds a str"),
    ([[1, 2, 3]], "holds a list"), ({"a": 1}, "got dict"),
])
def test_port_bad_inputs_named(image, match):
    with pytest.raises((TypeError, ValueError), match=match):
        Qwen2_5_VLImageTransform()({"image": image})
    with pytest.raises(ValueError, match=r"input_data_format must be None, 'channels_first' or 'channels_last', got 'CHW'"):
        Qwen2_5_VLImageTransform(input_data_format="CHW")


@pytest.mark.parametrize("backend", ["pil", "torchvision"])
def test_rgba_kept_and_converted_match_hf(backend):
    rgba = PIL.Image.fromarray(_noise(70, 90, 7, c=4))
    keep = {"do_convert_rgb": False, "image_mean": [0.5] * 4, "image_std": [0.25] * 4}
    for options in ({}, keep):
        expected = hf(backend, rgba, **options)
        assert_same(reference.preprocess(rgba, backend=backend, **options), expected)
        assert_same(Qwen2_5_VLImageTransform(backend=backend, **options)({"image": rgba}), expected)
    assert hf(backend, rgba, **keep)[0].shape[1] == 4 * 2 * 14 * 14  # 4 channels kept


def test_bad_options_named():
    image = _noise(56, 56, 8)
    with pytest.raises(ValueError, match=r"image_mean must hold 3 values.*\(0\.5, 0\.5, 0\.5, 0\.5\)"):
        reference.preprocess(image, image_mean=(0.5, 0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="image_std needs 3 values"):
        Qwen2_5_VLImageTransform(image_std=[0.5, 0.5])
    with pytest.raises(ValueError, match="backend must be one of"):
        reference.preprocess(image, backend="cv2")
    with pytest.raises(ValueError, match="multiples of patch_size \\* merge_size = 28, got 50x56"):
        reference.preprocess(_noise(50, 56, 9), do_resize=False)
    with pytest.raises(ValueError, match="input_data_format"):
        reference.preprocess(image, input_data_format="CHW")


@pytest.mark.parametrize("fields", [
    {"do_resize": False}, {"do_rescale": False}, {"do_normalize": False}, {"rescale_factor": 0.5},
    {"do_convert_rgb": True, "resample": 3}, {"size": {"shortest_edge": 3136, "longest_edge": 50000}},
    {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]},
], ids=lambda f: ",".join(f))
def test_checkpoint_preprocessor_fields_honoured(tmp_path, fields):
    """The issue's case: do_resize false gives HF's (64, 1176) on a 224x224 image, not (16, 1176)."""
    from transformers import Qwen2VLImageProcessorPil

    preprocessor = {k: v for k, v in PREPROCESSOR_JSON.items() if not ("size" in fields and "pixels" in k)}
    preprocessor.update(fields)
    weights = reference.random_weights(reference.VisionConfig.from_hf(VISION_CONFIG_JSON), seed=3)
    write_checkpoint(tmp_path, weights, preprocessor=preprocessor)
    _, transform = load_hf_checkpoint(tmp_path, dtype=torch.float32, backend="pil")  # vs HF's PIL processor
    image = _noise(224, 224, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf_processor = Qwen2VLImageProcessorPil.from_pretrained(tmp_path)
        out = hf_processor(PIL.Image.fromarray(image), return_tensors="np")
    assert_same(transform({"image": image}), (np.asarray(out["pixel_values"]), np.asarray(out["image_grid_thw"])))


@pytest.mark.parametrize("fields,match", [({"resample": 2}, "resample=2"), ({"do_pad": True}, "do_pad"),
                                          ({"do_resize": "no"}, "do_resize must be true or false")])
def test_checkpoint_preprocessor_fields_refused(tmp_path, fields, match):
    write_checkpoint(tmp_path, {}, preprocessor={**PREPROCESSOR_JSON, **fields})
    with pytest.raises(ValueError, match=match):
        load_hf_checkpoint(tmp_path)
