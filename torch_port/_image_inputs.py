"""What ``Qwen2_5_VLImageTransform`` takes as ``sample["image"]``, brought to one form, by HF's rules.

HF's image processors take PIL images, NumPy arrays and torch tensors, alone, in lists, in nested
lists (one list per sample) or as 4-D batches (``make_flat_list_of_images``). Arrays and tensors
are channels-last [H, W, C] or channels-first [C, H, W] with C in (1, 3, 4), the layout inferred as
``infer_channel_dimension_format`` does (where both ends could be channels, e.g. [3, 450, 3],
channels-first, with a warning) unless ``input_data_format`` says. RGB conversion follows each
backend's ``process_image``:

* a PIL image goes through Pillow (``convert_to_rgb``: alpha composited over white in Pillow's
  integer arithmetic) on both backends;
* an array or tensor has gray repeated and RGBA blended over white: on the PIL backend in float64
  and rounded (``convert_to_rgb`` on NumPy), on the torchvision backend in float32 and truncated
  (``to_dtype(float32, scale=True)``, then back). The two blends may differ by one level, as in HF.

Two choices of ours: a 2-D array is one gray image (HF's PIL backend refuses it), and values must
be uint8 (HF would guess at floats; a decoded image is uint8).
"""

import warnings
from typing import Any, Optional

import numpy as np
import PIL.Image
import torch

DATA_FORMATS = ("channels_first", "channels_last")
CHANNELS = (1, 3, 4)  # the channel counts HF infers a layout from


def check_data_format(input_data_format: Optional[str]) -> Optional[str]:
    if input_data_format not in (None,) + DATA_FORMATS:
        raise ValueError(f"input_data_format must be None, 'channels_first' or 'channels_last', "
                         f"got {input_data_format!r}")
    return input_data_format


def _is_image(image: Any) -> bool:
    return isinstance(image, (PIL.Image.Image, np.ndarray, torch.Tensor))


def flat_images(images: Any) -> list:
    """HF's ``make_flat_list_of_images``: an image, a list, a list of lists (empty ones allowed) or a
    4-D batch (or a list of them) -> a flat list of images."""
    if isinstance(images, (list, tuple)):
        if images and all(isinstance(group, (list, tuple)) for group in images) and all(
                all(_is_image(image) for image in group) for group in images):
            return [image for group in images for image in group]
        if images and not all(_is_image(image) for image in images):
            bad = next(image for image in images if not _is_image(image))
            raise TypeError(f"sample['image'] must be a PIL image, numpy array or torch tensor, or a (nested) list "
                            f"of them; the list holds a {type(bad).__name__}: {bad!r:.80}")
        if images and not isinstance(images[0], PIL.Image.Image) and images[0].ndim == 4:
            return [image for batch in images for image in batch]
        if not images:
            raise ValueError("sample['image'] is an empty list: no images given")
        return list(images)
    if not _is_image(images):
        raise TypeError(f"sample['image'] must be a PIL image, numpy array or torch tensor, got "
                        f"{type(images).__name__}: {images!r:.80}")
    if not isinstance(images, PIL.Image.Image) and images.ndim == 4:
        return list(images)
    return [images]


def infer_data_format(shape: tuple) -> str:
    """HF's ``infer_channel_dimension_format(image, num_channels=(1, 3, 4))`` for a 3-D shape."""
    first, last = shape[0] in CHANNELS, shape[2] in CHANNELS
    if first and last:
        warnings.warn(f"image shape {tuple(shape)}: both its first and last axes could be channels; taken as "
                      "channels-first [C, H, W], as HF does. Pass input_data_format='channels_last' if it is "
                      "[H, W, C].", stacklevel=6)
    if first:
        return "channels_first"
    if last:
        return "channels_last"
    raise ValueError(f"image must be [H, W], [H, W, C] or [C, H, W] with C in (1, 3, 4) channels, got shape "
                     f"{tuple(shape)}")


def to_array(image: Any, input_data_format: Optional[str]) -> np.ndarray:
    """A uint8 array or tensor -> uint8 [H, W, C] (C in 1, 3, 4) as a NumPy array (a view where it can)."""
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else image
    kind = "tensor" if isinstance(image, torch.Tensor) else "array"
    if array.ndim not in (2, 3):
        raise ValueError(f"image {kind} must be [H, W], [H, W, C] or [C, H, W], got shape {tuple(array.shape)}")
    if array.dtype != np.uint8:
        hint = " (scale floats in [0, 1] by 255 and round first)" if np.issubdtype(array.dtype, np.floating) else ""
        raise ValueError(f"image {kind} must have dtype uint8, got {image.dtype} with shape "
                         f"{tuple(array.shape)}{hint}")
    if array.ndim == 2:
        array = array[:, :, None]  # one gray image (our choice; HF's PIL backend refuses [H, W])
    elif (input_data_format or infer_data_format(array.shape)) == "channels_first":
        array = array.transpose(1, 2, 0)
    if array.shape[2] not in CHANNELS:
        raise ValueError(f"image {kind} must have 1, 3 or 4 channels, got shape {tuple(image.shape)} "
                         f"(input_data_format={input_data_format!r})")
    if 0 in array.shape:
        raise ValueError(f"image is empty, shape {tuple(image.shape)}")
    return array


def pil_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """HF's ``convert_to_rgb`` for PIL images: anything with alpha goes over opaque white."""
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        image = image.convert("RGBA")
        white = PIL.Image.new("RGBA", image.size, (255, 255, 255, 255))
        return PIL.Image.alpha_composite(white, image).convert("RGB")
    if image.mode == "RGB":
        return image  # convert("RGB") would only copy it; nothing here writes to it
    return image.convert("RGB")


def blend_over_white(hwc: np.ndarray, backend: str) -> np.ndarray:
    """uint8 [H, W, 4] -> uint8 [H, W, 3]: HF's blend of an RGBA array over white, per backend."""
    if backend == "pil":  # convert_to_rgb on NumPy: float64, then np.round
        alpha = hwc[..., 3:4] / 255
        return np.round(alpha * hwc[..., :3] + (1 - alpha) * 255).astype(np.uint8)
    x = torch.from_numpy(np.ascontiguousarray(hwc)).to(torch.float32).mul_(1.0 / 255)  # to_dtype(float32, scale=True)
    blended = x[..., :3] * x[..., 3:] + (1 - x[..., 3:])
    return blended.mul_(255 + 1.0 - 1e-3).to(torch.uint8).numpy()  # to_dtype(uint8, scale=True)


def to_rgb_array(image: Any, *, backend: str, do_convert_rgb: bool, input_data_format: Optional[str]) -> np.ndarray:
    """One image -> uint8 [H, W, C] as the backend's ``process_image`` leaves it: C = 3 with
    ``do_convert_rgb``, else the image's own 1, 3 or 4 channels."""
    if isinstance(image, PIL.Image.Image):
        if do_convert_rgb:
            return np.asarray(pil_rgb(image))
        image = np.asarray(image)  # as HF: the mode's own array (a palette image gives its indices)
        input_data_format = "channels_last"
    hwc = to_array(image, input_data_format)
    if do_convert_rgb and hwc.shape[2] == 1:
        return np.repeat(hwc, 3, axis=2)
    if do_convert_rgb and hwc.shape[2] == 4:
        return blend_over_white(hwc, backend)
    return hwc
