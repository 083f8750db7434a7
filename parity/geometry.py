"""What a resized image that differs from HF's in its geometry looks like: another size, bands
(letterboxing or padding: the image resized with its aspect kept, the rest filled), or a crop.

HF stretches every image to smart_resize's (height, width): no bands, no crop. A port that keeps the
aspect ratio and pads, or picks another size, differs by far more than any filter detail, and the
porter should be told which.
"""

from __future__ import annotations

import numpy as np


def _band(image, axis, from_end):
    """(length, value) of the run of constant rows (axis 0) or columns (axis 1) at one edge."""
    lines = np.moveaxis(image, axis, 0)
    if from_end:
        lines = lines[::-1]
    first = lines[0]
    value = first.reshape(-1, first.shape[-1] if first.ndim > 1 else 1)[0]
    if not np.all(first == value):
        return 0, None
    n = 0
    while n < len(lines) and np.all(lines[n] == value):
        n += 1
    return n, value


def _value_text(value):
    values = np.unique(np.asarray(value))
    return str(int(values[0])) if len(values) == 1 else "(" + ", ".join(str(int(v)) for v in np.asarray(value)) + ")"


# A crop hypothesis matches when the dump is within this many uint8 steps of it (another bicubic
# implementation of the same resize differs by a few steps; a stretched image by tens).
CROP_MAX_STEPS = 8


def _center_crop_of(source, height, width):
    """``source`` resized (Pillow's bicubic, the reference's) so that it covers height x width with its
    aspect kept, then center-cropped to height x width; None when it is already that aspect."""
    from reference.bicubic import resize_bicubic

    h, w = source.shape[:2]
    scale = max(height / h, width / w)
    rh, rw = max(height, round(h * scale)), max(width, round(w * scale))
    if (rh, rw) == (height, width):
        return None
    resized = resize_bicubic(source, rh, rw)
    top, left = (rh - height) // 2, (rw - width) // 2
    return resized[top:top + height, left:left + width], (rh, rw)


def describe(dump, golden, source=None):
    """One phrase naming the geometry of ``dump`` (a uint8-valued [H, W(, C)] image) against HF's
    ``golden``, or None when the geometry is the same (same size, no bands HF does not have, not a
    crop of ``source``, the image before the resize, when given)."""
    dump, golden = np.asarray(dump), np.asarray(golden)
    gh, gw = golden.shape[:2]
    if dump.ndim != golden.ndim or (dump.ndim == 3 and dump.shape[2] != golden.shape[2]):
        return None
    h, w = dump.shape[:2]
    if (h, w) != (gh, gw):
        aspect = f"aspect {w / h:.3f} where HF's is {gw / gh:.3f}" if h and w else "empty"
        return (f"another size: {h}x{w} (height x width) where HF resizes to {gh}x{gw} ({aspect}); "
                "HF's size is smart_resize's: each side rounded to a multiple of 28 with Python's round, then "
                "scaled into [min_pixels, max_pixels]")
    bands = {}
    for name, axis, from_end in (("top", 0, False), ("bottom", 0, True), ("left", 1, False), ("right", 1, True)):
        n, value = _band(dump, axis, from_end)
        hf_n, _ = _band(golden, axis, from_end)
        if n > hf_n and n >= 2:
            bands[name] = (n, value)
    if not bands:
        crop = None if source is None else _center_crop_of(np.asarray(source), gh, gw)
        if crop is not None and np.abs(crop[0].astype(np.float64) - dump).max() <= CROP_MAX_STEPS:
            return (f"cropped: the image resized to {crop[1][0]}x{crop[1][1]} (its aspect kept, covering the frame) "
                    f"and center-cropped to {gh}x{gw}, where HF stretches the whole image to {gh}x{gw}")
        return None
    inner_h = gh - bands.get("top", (0,))[0] - bands.get("bottom", (0,))[0]
    inner_w = gw - bands.get("left", (0,))[0] - bands.get("right", (0,))[0]
    sides = ", ".join(f"{n} {'rows' if name in ('top', 'bottom') else 'columns'} {name} (value {_value_text(v)})"
                      for name, (n, v) in bands.items())
    kind = "letterboxed" if len(bands) >= 2 else "padded"
    return (f"{kind}: constant bands {sides}; the image fills {inner_h}x{inner_w} inside the {gh}x{gw} frame "
            f"(its aspect kept) where HF stretches it to the whole {gh}x{gw}, with no bands")


def describe_patches(dump_shape, golden_shape, grid):
    """The phrase for pixel values / grids of another number of patch rows (another resized size)."""
    return (f"another size: {dump_shape[0]} patch rows where HF has {golden_shape[0]} (grid {grid}): the image was "
            "resized to another size (smart_resize) before patchify")
