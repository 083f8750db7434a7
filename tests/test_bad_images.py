"""Bad or unusual images: a clear error naming the problem and the value, or HF's own result."""

import io

import numpy as np
import PIL.Image
import pytest
import torch

import reference
from goldenlib.hf_image import hf_preprocess
from reference.io import ImageDecodeError, load_image
from torch_port import Qwen2_5_VLImageTransform


def _hf(image, **kwargs):
    return hf_preprocess([image], 3136, 12845056, **kwargs)


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 1), (1, 3, 3), (2, 300, 3), (300, 2)])
def test_tiny_images_match_hf(shape):
    image = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    ours = reference.preprocess(image)
    hf = _hf(image)
    np.testing.assert_array_equal(ours["image_grid_thw"], hf["image_grid_thw"])
    assert np.abs(ours["pixel_values"] - hf["pixel_values"]).max() == 0.0


@pytest.mark.parametrize("shape", [(1, 201, 3), (250, 1, 3), (2, 500, 3)])
def test_aspect_over_200_raises_like_hf(shape):
    image = np.zeros(shape, np.uint8)
    with pytest.raises(ValueError, match="aspect ratio") as ours:
        reference.preprocess(image)
    with pytest.raises(ValueError, match="aspect ratio"):
        _hf(image)
    assert str(max(shape[:2]) / min(shape[:2])) in str(ours.value)
    with pytest.raises(ValueError, match="aspect ratio"):  # [1, 201, 3] is ambiguous: HF would take it as [C, H, W]
        Qwen2_5_VLImageTransform(input_data_format="channels_last")({"image": image})


@pytest.mark.parametrize("image,match", [
    (np.zeros((0, 5, 3), np.uint8), r"empty, shape \(0, 5, 3\)"),
    (np.zeros((5, 0), np.uint8), r"empty, shape \(5, 0\)"),
    (np.full((8, 8, 3), 1.5, np.float32), r"float32 \(finite values in \[1.5, 1.5\]"),
    (np.full((8, 8, 3), -0.25, np.float64), r"float64 \(finite values in \[-0.25"),
    (np.array([[[np.nan, 0.5, 0.2]]], np.float32).repeat(8, 0), "contains NaN"),
    (np.zeros((8, 8, 3), np.int32), r"int32 \(values in \[0, 0\]\)"),
    (np.zeros((8, 8, 3), np.bool_), "bool"),
    (np.zeros((8, 8, 3), np.float16), "float16"),
    (np.zeros((8, 8, 3), np.uint16), "uint16"),
    (np.zeros((8, 8, 2), np.uint8), r"channels, got shape \(8, 8, 2\)"),
    (np.zeros((8, 8, 5), np.uint8), r"channels, got shape \(8, 8, 5\)"),
    (np.zeros((8,), np.uint8), r"got shape \(8,\)"),
    (np.zeros((1, 2, 8, 8, 3), np.uint8), r"got shape \(1, 2, 8, 8, 3\)"),  # 4-D is a batch, as in HF
])
def test_bad_arrays_named(image, match):
    with pytest.raises(ValueError, match=match):
        reference.preprocess(image)


def test_not_an_array_named():
    with pytest.raises(TypeError, match="list"):
        reference.preprocess([[1, 2, 3]])
    with pytest.raises(ValueError, match="no images"):
        reference.preprocess([])


@pytest.mark.parametrize("image,match", [
    (np.zeros((8, 8, 3), np.float32), "uint8"), (torch.zeros(3, 8, 8), "uint8"),
    (np.zeros((8, 8, 5), np.uint8), "shape"), (torch.zeros(5, 8, 8, dtype=torch.uint8), "shape"),
    (np.zeros((0, 8, 3), np.uint8), "empty"), ("image.png", "PIL image, numpy array or torch tensor"),
])
def test_transform_bad_inputs_named(image, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Qwen2_5_VLImageTransform()({"image": image})


def _png(image, **save):
    buffer = io.BytesIO()
    image.save(buffer, format=save.pop("format", "PNG"), **save)
    return buffer.getvalue()


def _decode_both(tmp_path, data, name="image.png"):
    path = tmp_path / name
    path.write_bytes(data)
    with PIL.Image.open(path) as pil:
        pil.load()
        from transformers import Qwen2VLImageProcessorPil

        hf = Qwen2VLImageProcessorPil(min_pixels=3136, max_pixels=12845056)(images=pil, return_tensors="np")
    return reference.preprocess(load_image(path, exif_transpose=False)), hf


def test_16_bit_image_matches_hf(tmp_path):
    values = (np.arange(60 * 70).reshape(60, 70) * 13).astype(np.uint16)
    ours, hf = _decode_both(tmp_path, _png(PIL.Image.fromarray(values)))
    assert np.abs(ours["pixel_values"] - hf["pixel_values"]).max() == 0.0


@pytest.mark.parametrize("transparency", [None, 5])
def test_palette_images_match_hf(tmp_path, transparency):
    rgb = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    palette = PIL.Image.fromarray(rgb).convert("P")
    save = {} if transparency is None else {"transparency": transparency}
    ours, hf = _decode_both(tmp_path, _png(palette, **save))
    assert np.abs(ours["pixel_values"] - hf["pixel_values"]).max() == 0.0


def test_cmyk_jpeg_matches_hf(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    data = _png(PIL.Image.fromarray(rgb).convert("CMYK"), format="JPEG")
    ours, hf = _decode_both(tmp_path, data, "image.jpg")
    assert np.abs(ours["pixel_values"] - hf["pixel_values"]).max() == 0.0


def test_truncated_file_named(tmp_path):
    data = _png(PIL.Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 100))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match="cut.png.*(corrupt|truncated)"):
        load_image(path)


def test_corrupt_file_named(tmp_path):
    data = bytearray(_png(PIL.Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 100)))
    data[60:80] = b"\x00" * 20
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageDecodeError, match="bad.png"):
        load_image(path)


def test_non_image_and_missing_files_named(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not an image")
    with pytest.raises(ImageDecodeError, match="notes.txt: not an image"):
        load_image(path)
    with pytest.raises(ImageDecodeError, match="not found"):
        load_image(tmp_path / "absent.png")


def test_decompression_bomb_refused(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    path.write_bytes(_png(PIL.Image.new("RGB", (200, 100))))
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 150 * 100)  # the limit scaled down, same code path
    with pytest.raises(ImageDecodeError, match="big.png: refused.*decompression-bomb"):
        load_image(path)


def test_exif_orientation_like_transformers_load_image(tmp_path):
    from transformers.image_utils import load_image as hf_load_image

    rgb = np.random.default_rng(3).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    image = PIL.Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    image.save(path, format="JPEG", exif=exif, quality=95)
    upright = load_image(path)
    assert upright.shape == (50, 30, 3)
    np.testing.assert_array_equal(upright, np.asarray(hf_load_image(str(path))))
    assert load_image(path, exif_transpose=False).shape == (30, 50, 3)  # what the processor alone sees


def test_drop_alpha_like_transformers_load_image(tmp_path):
    from transformers.image_utils import load_image as hf_load_image

    rgba = np.random.default_rng(4).integers(0, 256, (20, 24, 4), dtype=np.uint8)
    path = tmp_path / "alpha.png"
    PIL.Image.fromarray(rgba).save(path)
    np.testing.assert_array_equal(load_image(path, drop_alpha=True), np.asarray(hf_load_image(str(path))))
    assert load_image(path).shape == (20, 24, 4)
