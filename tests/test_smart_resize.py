"""smart_resize == HF's, results and errors, over a grid of sizes with ties and the ratio-200 edge."""

import itertools

import pytest
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize

from reference import smart_resize

SIDES = sorted({1, 2, 3, 13, 14, 27, 28, 29, 42, 55, 56, 57, 70, 98, 126, 154, 182, 200, 201, 224, 299, 300, 333,
                406, 640, 1000, 1023, 2800, 4032, 5600, 12000})
LIMITS = [(3136, 12845056), (3136, 1003520), (56 * 56, 28 * 28 * 20), (28 * 28 * 130, 28 * 28 * 260)]


def _call(fn, *args):
    try:
        return ("ok", fn(*args))
    except ValueError as error:
        return ("ValueError", str(error).split(" (height")[0])


@pytest.mark.parametrize("min_pixels,max_pixels", LIMITS)
def test_grid_matches_hf(min_pixels, max_pixels):
    for height, width in itertools.product(SIDES, SIDES):
        args = (height, width, 28, min_pixels, max_pixels)
        assert _call(smart_resize, *args) == _call(hf_smart_resize, *args), args


def test_half_way_ties_round_to_even():
    # 70 / 28 = 2.5 and 126 / 28 = 4.5: Python's round goes to the even multiple, like HF.
    for side in (70, 126, 182, 238, 294):
        assert smart_resize(side, 600) == hf_smart_resize(side, 600, 28, 3136, 12845056)
    assert smart_resize(70, 1000)[0] == 56


@pytest.mark.parametrize("height,width", [(1, 200), (200, 1), (1, 201), (201, 1), (3, 600), (3, 601), (10, 2001)])
def test_ratio_200_edge(height, width):
    assert _call(smart_resize, height, width) == _call(hf_smart_resize, height, width, 28, 3136, 12845056)


@pytest.mark.parametrize("height,width", [(0, 10), (10, 0), (-5, 10), (10.5, 10)])
def test_bad_sizes_named(height, width):
    with pytest.raises(ValueError, match="height|width"):
        smart_resize(height, width)
