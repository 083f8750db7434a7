"""Input checks of the reference, kept out of the math: each raises naming the problem and the value."""

import numpy as np


class RopeIndexLayoutError(ValueError, RuntimeError):
    """Token types, mask, runs and grids that do not fit together. A ValueError that is also the
    RuntimeError HF's get_rope_index raises on such inputs (a shape mismatch deep inside it);
    torch_port has the same class."""


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


def check_resize(image, height, width, where="resize_bicubic"):
    """A resize's arguments -> (uint8 image [H, W(, C)], int height, int width); errors start with ``where``."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"{where}: image must be uint8, got dtype {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(
            f"{where}: image must be [H, W] or [H, W, C] with C in 1..4, got shape {image.shape}"
        )
    for name, value in (("height", height), ("width", width)):
        if int(value) != value or value < 1:
            raise ValueError(f"{where}: {name} must be a positive integer, got {value!r}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{where}: image must not be empty, got shape {image.shape}")
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


# ---------------------------------------------------------------- positions and vision tokens

TOKEN_TYPES = {0: "text", 1: "image", 2: "video"}  # HF 5.x mm_token_type_ids values


def check_llm_grid(grid_thw, merge_size, what) -> np.ndarray:  # -> [n, 3] int64 (maybe n = 0)
    """image_grid_thw / video_grid_thw: None -> no rows; positive entries, h and w multiples of merge_size."""
    if grid_thw is None:
        return np.zeros((0, 3), np.int64)
    grid = np.asarray(grid_thw)
    if grid.size and not np.issubdtype(grid.dtype, np.integer):
        raise ValueError(f"{what} must hold integers, got dtype {grid.dtype}: {grid.tolist()}")
    if grid.ndim != 2 or grid.shape[1] != 3:
        raise ValueError(f"{what} must be [n, 3] (t, h, w) rows, got shape {grid.shape}")
    grid = grid.astype(np.int64)
    if (grid <= 0).any():
        raise ValueError(f"{what} entries must be positive, got {grid.tolist()}")
    bad = [row for row in grid.tolist() if row[1] % merge_size or row[2] % merge_size]
    if bad:
        raise ValueError(f"{what} rows {bad}: h and w must be multiples of the merge size {merge_size}")
    return grid


def check_token_rows(input_ids, mm_token_type_ids, attention_mask):
    """rope_index's token inputs -> (types [b, s] int64, keep [b, s] bool), or a ValueError.

    input_ids is [batch, seq] (a 1-D sequence counts as a batch of one); the token types and the
    mask must have its shape; types are 0 text, 1 image, 2 video.
    """
    ids = np.asarray(input_ids)
    if ids.ndim == 1:
        ids = ids[None]
    if ids.ndim != 2:
        raise ValueError(f"input_ids must be [batch, seq] (or one 1-D sequence), got shape {ids.shape}")
    types = _rows_like("mm_token_type_ids", mm_token_type_ids, ids, input_ids)
    unknown = sorted(set(np.unique(types).tolist()) - set(TOKEN_TYPES))
    if unknown:
        raise ValueError(f"mm_token_type_ids has values {unknown}; only 0 (text), 1 (image), 2 (video) are known")
    if attention_mask is None:
        keep = np.ones(ids.shape, bool)
    else:
        keep = _rows_like("attention_mask", attention_mask, ids, input_ids) != 0  # HF: attention_mask.bool()
    empty = [row for row in range(ids.shape[0]) if not keep[row].any()]
    if empty:
        raise RopeIndexLayoutError(f"rows {empty} have no unmasked tokens (attention_mask is all 0 there)")
    return types.astype(np.int64), keep


def _rows_like(name, value, ids, input_ids):
    """`value` as [batch, seq] (a 1-D sequence is a batch of one), which must be the shape of ids."""
    rows = np.asarray(value)
    if rows.ndim == 1:
        rows = rows[None]
    if rows.shape != ids.shape:
        raise RopeIndexLayoutError(f"{name} has shape {np.shape(value)}; input_ids has shape "
                                   f"{np.shape(input_ids)} and they must match")
    return rows


def check_vision_runs(runs, grids, merge_size):
    """Every image/video run of token types (over the whole batch, in order) must have one grid,
    and as many tokens as that grid gives: t*h*w // merge_size**2.

    runs: [(row, kind, start, end)] for the vision runs (kind 1 image, 2 video);
    grids: {1: image grid [n, 3], 2: video grid [n, 3]}.
    """
    for kind, grid in grids.items():
        mine = [run for run in runs if run[1] == kind]
        name = TOKEN_TYPES[kind]
        if len(mine) != len(grid):
            raise RopeIndexLayoutError(f"{len(mine)} {name} runs in mm_token_type_ids (unmasked tokens) but "
                             f"{len(grid)} {name} grids in {name}_grid_thw; they must be equal")
        for (row, _, start, end), thw in zip(mine, grid.tolist()):
            tokens = thw[0] * thw[1] * thw[2] // merge_size**2
            if end - start != tokens:
                raise RopeIndexLayoutError(f"{name} run at row {row}, unmasked tokens {start}..{end - 1}, has {end - start} "
                                 f"tokens but its grid {thw} gives {tokens} (t*h*w // {merge_size}**2); "
                                 f"two {name}s next to each other need a text token between them")


def check_seconds_per_grid(second_per_grid_ts, n_videos):
    """second_per_grid_ts: None or one value per video (a list, a NumPy array or a CPU tensor)."""
    if second_per_grid_ts is None:
        return
    n = len(np.asarray(second_per_grid_ts).reshape(-1))
    if np.ndim(np.asarray(second_per_grid_ts)) > 1 or n != n_videos:
        raise ValueError(f"second_per_grid_ts must hold one value per video: {n_videos} videos, "
                         f"got shape {np.shape(np.asarray(second_per_grid_ts))}")


def check_merge_size(merge_size, where):
    if int(merge_size) != merge_size or merge_size < 1:
        raise ValueError(f"{where}: merge size must be a positive integer, got {merge_size!r}")
    return int(merge_size)
