"""Decoding image files: the one module of ``reference`` that uses Pillow.

Nothing else in ``reference`` imports it, so the reference itself stays NumPy-only.

``load_image`` returns the uint8 array that, given to :func:`reference.preprocess`, gives
what HF's PIL processor gives for the decoded image:

* anything with alpha (an "A" band, or a palette/gray ``transparency``) comes back as RGBA,
  which ``preprocess`` composites over white, as HF's ``convert_to_rgb`` does;
* gray (L) stays [H, W]; every other mode (P, CMYK, YCbCr, I;16, I, F, ...) goes through
  Pillow's ``convert("RGB")``, as HF does. Note what that means for 16-bit images: Pillow
  *clips* I;16 values above 255 to 255 (it does not scale them); HF inherits that, so do we.
* EXIF orientation: HF's processor does not look at it, but ``transformers.image_utils.load_image``
  (what pipelines and chat templates use for paths and URLs) applies ``ImageOps.exif_transpose``
  first. ``load_image`` does the same by default (``exif_transpose=False`` to skip it). That HF
  helper also ends with ``convert("RGB")``, which drops alpha without compositing: pass
  ``drop_alpha=True`` to reproduce it.

Every decoding problem (missing, truncated, corrupt or non-image file, decompression bomb)
raises ``ImageDecodeError`` (a ValueError) naming the file and the problem.
"""

import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageOps


class ImageDecodeError(ValueError):
    """An image file could not be decoded."""


def pil_to_array(image, drop_alpha=False):
    """PIL image -> uint8 [H, W] (L), [H, W, 3] (RGB) or [H, W, 4] (RGBA, alpha still to composite)."""
    if not drop_alpha and ("A" in image.getbands() or image.info.get("transparency") is not None):
        return np.array(image.convert("RGBA"))
    if image.mode == "L":
        return np.array(image)
    return np.array(image.convert("RGB"))


def load_image(path, *, exif_transpose=True, drop_alpha=False):
    """Decode an image file with Pillow; see the module docstring for what comes back."""
    path = Path(path)
    if not path.is_file():
        raise ImageDecodeError(f"image file not found: {path}")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its pixel limit; treat both as a refusal.
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(path) as image:
                image.load()
                if exif_transpose:
                    image = PIL.ImageOps.exif_transpose(image)
                return pil_to_array(image, drop_alpha=drop_alpha)
    except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning) as error:
        raise ImageDecodeError(f"{path}: refused, larger than Pillow's decompression-bomb limit "
                               f"({PIL.Image.MAX_IMAGE_PIXELS} pixels): {error}") from None
    except PIL.UnidentifiedImageError:
        raise ImageDecodeError(f"{path}: not an image file Pillow can identify") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageDecodeError(f"{path}: corrupt or truncated image ({type(error).__name__}: {error})") from None
