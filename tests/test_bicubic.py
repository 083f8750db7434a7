"""resize_bicubic == Pillow's BICUBIC resize, bit for bit (colour and alpha helpers: test_color.py;
the fast resize == the plain one: test_fast_paths.py)."""

import numpy as np
import PIL
import PIL.Image
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import pil_resize
from reference import fast, resize_bicubic

PROPERTY_EXAMPLES = 400



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
    np.testing.assert_array_equal(fast.resize_bicubic(image, height, width), pil_resize(image, height, width))


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
