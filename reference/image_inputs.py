"""What ``preprocess`` accepts as images, brought to one form: a list of uint8 [C, H, W] arrays.

HF's image processors take PIL images, NumPy arrays and torch tensors, alone, in lists, in
nested lists (one list per sample) or as a 4-D batch; arrays may be channels-last or
channels-first. The rules here are theirs (``make_flat_list_of_images``,
``infer_channel_dimension_format``, the backends' ``process_image``), with three choices of ours:

* a 2-D array is one gray image (HF refuses it; the reference always took it);
* values must be uint8 (HF would guess at floats; the reference takes the decoded image only);
* an array whose first and last axes could both be channels is channels-last (HF: first).

NumPy only: a PIL image is recognised by its methods (``convert``, ``mode``) and a tensor by
``.numpy()`` / ``__array__``; neither library is imported.
"""

import numpy as np

from .color import composite_over_white, to_rgb
from .validate import check_image

CHANNELS = (1, 3, 4)  # the channel counts HF infers a layout from
DATA_FORMATS = ("channels_first", "channels_last")


def is_pil(image):
    """A PIL image, recognised without importing PIL."""
    return hasattr(image, "convert") and hasattr(image, "mode") and hasattr(image, "size")


def as_array(image):
    """A NumPy array, a torch CPU tensor (``.numpy()``) or anything with ``__array__`` -> ndarray."""
    if isinstance(image, np.ndarray):
        return image
    if hasattr(image, "numpy") and callable(image.numpy):
        return image.numpy()
    if hasattr(image, "__array__"):
        return np.asarray(image)
    return image  # not an image: check_image names its type


def _is_image(image):
    return is_pil(image) or isinstance(image, np.ndarray) or hasattr(image, "__array__")


def _ndim(image):
    return 3 if is_pil(image) else np.ndim(as_array(image))


def flat_images(images):
    """HF's ``make_flat_list_of_images``: nested lists, lists and 4-D batches -> a flat list.

    A list of lists of images is flattened (empty inner lists allowed); a list whose first image
    is 4-D is a list of batches; a 4-D array is a batch of 3-D images. Anything else is one image.
    """
    if isinstance(images, (list, tuple)):
        if images and all(isinstance(group, (list, tuple)) for group in images) and all(
            all(_is_image(image) for image in group) for group in images
        ):
            return [image for group in images for image in group]
        if images and all(_is_image(image) for image in images) and _ndim(images[0]) == 4:
            return [image for batch in images for image in as_array(batch)]
        return list(images)
    if _is_image(images) and _ndim(images) == 4:
        return list(as_array(images))
    return [images]


def infer_data_format(shape):
    """HF's ``infer_channel_dimension_format`` for [C, H, W] / [H, W, C] with C in (1, 3, 4):
    channels-first when only the first axis could be channels, channels-last when only the last.

    Where both could (e.g. a 3x450 RGB strip, [3, 450, 3]) HF warns and takes channels-first; the
    reference takes channels-last, as it always did for arrays (its goldens hold such strips).
    Pass ``input_data_format`` to choose; with it the result is HF's.
    """
    if shape[2] in CHANNELS:
        return "channels_last"
    if shape[0] in CHANNELS:
        return "channels_first"
    raise ValueError(f"preprocess: an image must be [H, W], [H, W, C] or [C, H, W] with C in (1, 3, 4) "
                     f"channels, got shape {tuple(shape)}")


def check_data_format(input_data_format):
    if input_data_format not in (None,) + DATA_FORMATS:
        raise ValueError(f"preprocess: input_data_format must be None, 'channels_first' or 'channels_last', "
                         f"got {input_data_format!r}")
    return input_data_format


def pil_to_array(image, do_convert_rgb):
    """A PIL image -> uint8 [H, W, C], converted as HF's ``convert_to_rgb`` does (alpha over white)."""
    if not do_convert_rgb:
        return np.asarray(image)
    if "A" in image.mode or "transparency" in image.info:
        return composite_over_white(np.asarray(image.convert("RGBA")))
    return np.asarray(image.convert("RGB"))


def rgb_from_array(chw, backend):
    """uint8 [C, H, W] with C in (1, 3, 4) -> uint8 [3, H, W], as HF converts arrays and tensors.

    Gray is repeated. RGBA is blended over white: on the torchvision backend as HF does it, in
    float32 (``x / 255`` by ``x * (1/255)``, then ``a*c + (1 - a)``, then back to uint8 by
    ``* 255.999`` and truncation); on the PIL backend with Pillow's integer compositing, the
    rule the reference always used for arrays. HF's PIL backend blends NumPy RGBA in float64 and
    rounds instead, which gives the same bytes over white for every (level, alpha) pair
    (tests/test_preprocess_options.py checks all 65536).
    """
    if chw.shape[0] == 1:
        return np.repeat(chw, 3, axis=0)
    if chw.shape[0] != 4:
        return chw
    if backend == "pil":
        return to_rgb(chw.transpose(1, 2, 0)).transpose(2, 0, 1)
    x = chw.astype(np.float32) * np.float32(1 / 255)  # torchvision to_dtype(float32, scale=True)
    blended = x[:3] * x[3:] + (np.float32(1) - x[3:])
    return (blended * np.float32(255 + 1.0 - 1e-3)).astype(np.uint8)  # to_dtype(uint8, scale=True)


def channels_first(image, *, backend, do_convert_rgb, input_data_format, where):
    """One input image -> (uint8 [C, H, W], the input as an array for the trace)."""
    if is_pil(image):
        array = pil_to_array(image, do_convert_rgb)
        check_image(array, where)  # e.g. a 16-bit image kept as it is (do_convert_rgb=False)
        chw = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
        return np.ascontiguousarray(chw), np.asarray(image)
    array = as_array(image)
    chw = array
    if isinstance(array, np.ndarray) and array.ndim == 3:
        if (input_data_format or infer_data_format(array.shape)) == "channels_last":
            chw = array.transpose(2, 0, 1)
        check_image(chw.transpose(1, 2, 0), where)  # the checks speak of [H, W, C]
    else:
        check_image(array, where)
        chw = array[None]  # gray [H, W]
    if do_convert_rgb:
        chw = rgb_from_array(chw, backend)
    return np.ascontiguousarray(chw), array


def prepare_images(images, *, backend, do_convert_rgb, input_data_format):
    """Any accepted input -> (list of uint8 [C, H, W], list of the inputs as arrays)."""
    check_data_format(input_data_format)
    flat = flat_images(images)
    if not flat:
        raise ValueError("preprocess: no images given")
    pairs = [channels_first(image, backend=backend, do_convert_rgb=do_convert_rgb,
                            input_data_format=input_data_format, where=f"image {index}")
             for index, image in enumerate(flat)]
    return [chw for chw, _ in pairs], [array for _, array in pairs]
