"""The colour helpers == Pillow / HF: alpha premultiplication (used around the resize) and
conversion to RGB (compositing RGBA over white, gray to RGB)."""

import numpy as np
import PIL.Image

from reference import to_rgb
from reference.bicubic import premultiply_alpha, unpremultiply_alpha
from reference.color import composite_over_white


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
