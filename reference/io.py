"""Decoding image files: the one module of ``reference`` that uses Pillow.

Nothing else in ``reference`` imports it, so the reference itself stays NumPy-only.
``load_image`` returns the uint8 array that, given to :func:`reference.preprocess`,
gives what HF's PIL processor gives for the decoded PIL image: HF composites anything
with alpha (an "A" band, or a palette/gray ``transparency``) over white, and converts
everything else with ``convert("RGB")``.
"""

from pathlib import Path

import numpy as np
import PIL.Image


def pil_to_array(image):
    """PIL image -> uint8 [H, W] (L), [H, W, 3] (RGB) or [H, W, 4] (RGBA, alpha still to composite)."""
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        return np.array(image.convert("RGBA"))
    if image.mode == "L":
        return np.array(image)
    return np.array(image.convert("RGB"))


def load_image(path):
    """Decode an image file with Pillow; see :func:`pil_to_array` for the result."""
    path = Path(path)
    with PIL.Image.open(path) as image:
        image.load()
        return pil_to_array(image)
