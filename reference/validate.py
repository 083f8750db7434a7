"""Input checks of the reference, kept out of the math: each raises naming the problem and the value."""

import numpy as np


# ---------------------------------------------------------------- images


def describe_values(image):
    """A short summary of an array's values for error messages: range, NaN/Inf."""
    if image.size == 0:
        return "no values"
    if np.issubdtype(image.dtype, np.floating):
        finite = np.isfinite(image)
        notes = []
        if np.isnan(image).any():
            notes.append("contains NaN")
        if np.isinf(image).any():
            notes.append("contains Inf")
        if finite.any():
            notes.insert(0, f"finite values in [{image[finite].min():g}, {image[finite].max():g}]")
        return ", ".join(notes)
    if image.dtype == np.bool_:
        return "boolean values"
    return f"values in [{image.min()}, {image.max()}]"


def check_image(image, where="image"):
    """Refuse anything but a non-empty uint8 [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] array.

    HF's processor would guess at float or integer inputs (rescaling floats in [0, 1], refusing
    others); the reference takes the decoded uint8 image only, and says what it got instead.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"preprocess: {where} must be a numpy uint8 array, got {type(image).__name__}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(
            f"preprocess: {where} must be [H, W] or [H, W, C] with C in (1, 3, 4) channels, got shape {image.shape}"
        )
    if image.dtype != np.uint8:
        hint = " (scale floats in [0, 1] by 255 and round first)" if np.issubdtype(image.dtype, np.floating) else ""
        raise ValueError(f"preprocess: {where} must have dtype uint8, got {image.dtype} "
                         f"({describe_values(image)}){hint}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"preprocess: {where} is empty, shape {image.shape}")


def check_images(images):
    """One image or a list of them -> a list of checked images."""
    images = [images] if isinstance(images, np.ndarray) else list(images)
    if not images:
        raise ValueError("preprocess: no images given")
    for index, image in enumerate(images):
        check_image(image, f"image {index}")
    return images


def check_resize(image, height, width):
    """resize_bicubic's arguments -> (uint8 image [H, W(, C)], int height, int width)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"resize_bicubic: image must be uint8, got dtype {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(
            f"resize_bicubic: image must be [H, W] or [H, W, C] with C in 1..4, got shape {image.shape}"
        )
    for name, value in (("height", height), ("width", width)):
        if int(value) != value or value < 1:
            raise ValueError(f"resize_bicubic: {name} must be a positive integer, got {value!r}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"resize_bicubic: image must not be empty, got shape {image.shape}")
    return image, int(height), int(width)


# ---------------------------------------------------------------- the tower


def check_grid(grid_thw) -> np.ndarray:  # -> [n_images, 3] int64
    grid = np.asarray(grid_thw, dtype=np.int64).reshape(-1, 3)
    if (grid <= 0).any():
        raise ValueError(f"grid_thw entries must be positive, got {grid.tolist()}")
    return grid


def check_tower_inputs(pixel_values, grid_thw, config):
    """vision_forward's inputs -> (pixel_values array, grid [n, 3] int64), or a ValueError."""
    grid = check_grid(grid_thw)
    pixel_values = np.asarray(pixel_values)
    m = config.spatial_merge_size
    bad = [row for row in grid.tolist() if row[1] % m or row[2] % m]
    if bad:
        raise ValueError(f"grid_thw rows {bad}: h and w must be multiples of spatial_merge_size={m}")
    rows = int((grid[:, 0] * grid[:, 1] * grid[:, 2]).sum())
    if pixel_values.ndim != 2 or pixel_values.shape != (rows, config.patch_dim):
        raise ValueError(f"pixel_values has shape {pixel_values.shape}; grid_thw {grid.tolist()} "
                         f"needs ({rows}, {config.patch_dim})")
    return pixel_values, grid
