"""resize_bicubic == Pillow's BICUBIC resize, bit for bit, and the alpha/RGB helpers == Pillow."""

import numpy as np
import PIL
import PIL.Image
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference import resize_bicubic, to_rgb
from reference.bicubic import premultiply_alpha, resample_axis, resample_axis_obvious, unpremultiply_alpha
from reference.color import composite_over_white

PROPERTY_EXAMPLES = 400


def pil_resize(image, height, width):
    return np.asarray(PIL.Image.fromarray(image).resize((width, height), PIL.Image.Resampling.BICUBIC))


@st.composite
def image_and_size(draw):
    height, width = draw(st.integers(1, 400)), draw(st.integers(1, 400))
    out_h, out_w = draw(st.integers(1, 400)), draw(st.integers(1, 400))
    channels = draw(st.sampled_from([0, 2, 3, 4]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 0 else (height, width, channels)
    kind = draw(st.sampled_from(["noise", "smooth", "binary", "constant"]))
    if kind == "noise":
        image = rng.integers(0, 256, shape, dtype=np.uint8)
    elif kind == "smooth":
        y, x = np.indices((height, width))
        base = (127.5 + 127.5 * np.sin(x / 7.0 + seed % 5) * np.cos(y / 5.0)).astype(np.uint8)
        image = np.broadcast_to(base[..., None], shape).copy() if channels else base
    elif kind == "binary":
        image = (rng.integers(0, 2, shape) * 255).astype(np.uint8)
    else:
        image = np.full(shape, rng.integers(0, 256), dtype=np.uint8)
    return image, out_h, out_w


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image_and_size())
def test_resize_matches_pillow(case):
    image, height, width = case
    np.testing.assert_array_equal(resize_bicubic(image, height, width), pil_resize(image, height, width))


@pytest.mark.parametrize("in_hw,out_hw", [
    ((290, 50), (280, 56)),    # height shrinks more than twice the width: vertical first in Pillow 13
    ((400, 10), (300, 12)),
    ((300, 300), (100, 250)),  # dh = 200 > 2 * dw = 100: vertical first
    ((300, 300), (250, 100)),  # horizontal first
    ((1, 400), (3, 1)), ((400, 1), (1, 3)), ((1, 1), (400, 400)), ((7, 9), (7, 9)),
])
def test_pass_order_cases(in_hw, out_hw):
    rng = np.random.default_rng(sum(in_hw) + sum(out_hw))
    image = rng.integers(0, 256, in_hw + (3,), dtype=np.uint8)
    np.testing.assert_array_equal(resize_bicubic(image, *out_hw), pil_resize(image, *out_hw))


def test_fast_pass_equals_obvious_pass():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (37, 300, 3), dtype=np.uint8)
    for out in (1, 5, 64, 65, 299, 300, 301, 777):
        np.testing.assert_array_equal(resample_axis(image, out, 1), resample_axis_obvious(image, out, 1))
        np.testing.assert_array_equal(resample_axis(image.transpose(1, 0, 2), out, 0),
                                      resample_axis_obvious(image.transpose(1, 0, 2), out, 0))


def _all_pairs():
    color, alpha = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8), indexing="ij")
    return np.stack([color, 255 - color, color // 2, alpha], axis=-1)  # [256, 256, 4]


def test_premultiply_matches_pillow_exhaustively():
    rgba = _all_pairs()
    expected = np.asarray(PIL.Image.fromarray(rgba).convert("RGBa"))
    np.testing.assert_array_equal(premultiply_alpha(rgba), expected)


def test_unpremultiply_matches_pillow_exhaustively():
    rgba = _all_pairs()
    expected = np.asarray(PIL.Image.frombytes("RGBa", (256, 256), rgba.tobytes()).convert("RGBA"))
    np.testing.assert_array_equal(unpremultiply_alpha(rgba), expected)


def test_composite_over_white_matches_hf_exhaustively():
    from transformers.image_transforms import convert_to_rgb

    rgba = _all_pairs()
    expected = convert_to_rgb(PIL.Image.fromarray(rgba), return_numpy=True)
    np.testing.assert_array_equal(composite_over_white(rgba), expected)
    np.testing.assert_array_equal(to_rgb(rgba), expected)


def test_gray_to_rgb_matches_pillow():
    gray = np.random.default_rng(0).integers(0, 256, (13, 17), dtype=np.uint8)
    expected = np.asarray(PIL.Image.fromarray(gray).convert("RGB"))
    np.testing.assert_array_equal(to_rgb(gray), expected)
    np.testing.assert_array_equal(to_rgb(gray[:, :, None]), expected)


@pytest.mark.parametrize("bad,match", [
    (np.zeros((4, 4), np.float32), "uint8"), (np.zeros((4, 4, 5), np.uint8), "shape"),
    (np.zeros((0, 4, 3), np.uint8), "empty"),
])
def test_bad_images_named(bad, match):
    with pytest.raises(ValueError, match=match):
        resize_bicubic(bad, 3, 3)


def test_pillow_version_recorded_rule():
    from reference.bicubic import installed_pillow_version

    assert installed_pillow_version()[:1] == tuple(int(p) for p in PIL.__version__.split(".")[:1])
