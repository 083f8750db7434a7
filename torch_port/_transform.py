"""Qwen2.5-VL image transform for torch, bit-exact with HF's image processors.

Per image, as HF does it: RGB conversion (``_image_inputs``), ``smart_resize``, the uint8 resize by
the backend's own library (Pillow's BICUBIC for ``Qwen2VLImageProcessorPil``, torchvision's uint8
antialiased bicubic for ``Qwen2VLImageProcessor``), then rescale + normalize + patchify.

Rescale and normalize map each uint8 value ``v`` of channel ``c`` to a float32 that depends on
``(c, v)`` only, so they are one lookup into a [C, 256] table of HF's own results; the patches are
gathered while still uint8 and each value is looked up straight into its place in the output.

The transform has no thread pool of its own: inside a DataLoader each worker runs it on one
thread (torch's default there), and the workers share the cores. benchmarks/dataloader.py times
it per sample and in a 2-worker DataLoader against HF's processors.
"""

from typing import Any, Mapping, Optional, Sequence

import numpy as np
import PIL.Image
import torch

from ._image_inputs import check_data_format, flat_images, pil_rgb, to_rgb_array
from ._smart_resize import MAX_PIXELS, MIN_PIXELS, smart_resize

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BACKENDS = ("pil", "torchvision")
_convert_rgb = pil_rgb  # the name parity/ imports


def _torchvision():
    """torchvision.transforms.v2.functional, imported only when backend="torchvision" is used."""
    try:
        from torchvision.transforms.v2 import functional
    except ImportError as error:
        raise ImportError("Qwen2_5_VLImageTransform(backend='torchvision') needs torchvision (pip install "
                          f"torchvision); backend='pil' needs only Pillow. ({error})") from error
    return functional


def _to_pil(image: Any) -> PIL.Image.Image:
    """A PIL image, or a uint8 [H, W] / [H, W, C] array with C in (1, 3, 4) -> PIL image."""
    if isinstance(image, PIL.Image.Image):
        return image
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    return PIL.Image.fromarray(np.ascontiguousarray(image))


def _normalize_table(mean, std, *, backend: str = "pil", do_rescale: bool = True, rescale_factor: float = 1 / 255,
                     do_normalize: bool = True, channels: int = 3) -> np.ndarray:
    """[C, 256]: HF's rescale and normalize of every uint8 level, per channel (float32).

    PIL backend: rescale = times the factor in float64, cast to float32; normalize =
    ``(x - mean) / std`` in float32. Torchvision backend: rescale = float32 product; with both on,
    one fused float32 step ``(x - mean/f) / (std/f)`` (mean/f, std/f rounded to float32 first).
    With neither, the PIL backend's patches are the levels as float32; the torchvision backend keeps
    them uint8 (as HF), so its table is the levels themselves.
    """
    levels = np.arange(256, dtype=np.float64)  # [256]
    if backend == "torchvision" and not (do_rescale or do_normalize):
        return np.ascontiguousarray(np.broadcast_to(np.arange(256, dtype=np.uint8), (channels, 256)))
    mean = np.broadcast_to(np.asarray(mean, dtype=np.float32).reshape(-1), (channels,))[:, None]
    std = np.broadcast_to(np.asarray(std, dtype=np.float32).reshape(-1), (channels,))[:, None]
    if backend == "torchvision":
        x = levels.astype(np.float32)
        if do_rescale and do_normalize:
            scale = np.float32(1.0 / rescale_factor)
            mean, std = mean * scale, std * scale
        elif do_rescale:
            x = x * np.float32(rescale_factor)
    else:
        x = (levels * rescale_factor).astype(np.float32) if do_rescale else levels.astype(np.float32)
    x = np.broadcast_to(x[None, :], (channels, 256))
    return np.ascontiguousarray((x - mean) / std if do_normalize else x)  # [C, 256]


def normalize_table(mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """[3, 256] float32: normalized value of every uint8 level, per channel, computed as HF does."""
    return torch.from_numpy(_normalize_table(mean, std))


def _pillow_version() -> tuple[int, ...]:
    return tuple(int(p) for p in PIL.__version__.split(".")[:2] if p.isdigit())


def vertical_first(in_h: int, in_w: int, out_h: int, out_w: int, pillow_version: Optional[tuple] = None) -> bool:
    """Whether Pillow's resize runs its vertical pass first (when both passes run): what decides
    which bytes a two-pass bicubic port must reproduce (the transform calls Pillow itself).

    Pillow >= 13: when the height shrinks by more than twice as many pixels as the width
    (``dh > 0 and dh > 2 * dw``); 12.2: only for an image over 100x taller than wide whose height
    shrinks; <= 12.1: never. ``pillow_version`` None means the installed Pillow.
    """
    version = pillow_version or _pillow_version()
    if version >= (13, 0):
        dh, dw = in_h - out_h, in_w - out_w
        return dh > 0 and dh > 2 * dw
    if version >= (12, 2):
        return in_h > 100 * in_w and out_h < in_h
    return False


def patchify_levels(levels: np.ndarray, table: np.ndarray, patch_size: int, merge_size: int,
                    temporal_patch_size: int) -> np.ndarray:
    """uint8 [H, W, C] -> [gh*gw, C*tp*p*p] of ``table``'s dtype: HF's patchify of the looked-up image.

    HF: reshape the [C, H, W] image to (C, gh/m, m, p, gw/m, m, p), transpose to
    [gh/m, gw/m, m, m, C, p, p], repeat the frame ``tp`` times after C. Here the same transpose is
    applied to the uint8 levels, one row of merge blocks at a time (its temporaries stay in the CPU
    cache), and each channel's levels are looked up in its row of the table straight into the first
    time step of the output; the other time steps are copies of it.
    """
    height, width, channels = levels.shape
    p, m, tp = patch_size, merge_size, temporal_patch_size
    gh, gw = height // p, width // p
    out = np.empty((gh // m, gw // m, m, m, channels, tp, p, p), table.dtype)
    row_levels = np.empty((gw // m, m, m, channels, p, p), np.uint8)  # one row of merge blocks
    for row in range(gh // m):
        pixels = levels[row * m * p:(row + 1) * m * p].reshape(m, p, gw // m, m, p, channels)
        row_levels[...] = pixels.transpose(2, 0, 3, 5, 1, 4)  # [gw/m, m, m, C, p, p]
        for c in range(channels):
            np.take(table[c], row_levels[:, :, :, c], out=out[row, :, :, :, c, 0], mode="clip")  # clip: unbuffered
        out[row, :, :, :, :, 1:] = out[row, :, :, :, :, :1]  # the frame repeated in time
    return out.reshape(gh * gw, channels * tp * p * p)


class Qwen2_5_VLImageTransform:
    """Turn ``sample["image"]`` into Qwen2.5-VL's ``pixel_values`` and ``image_grid_thw``.

    Args:
        min_pixels, max_pixels: area bounds for ``smart_resize``; the defaults are the
            released checkpoints' (3136, 12845056), not HF's class defaults.
        patch_size, merge_size, temporal_patch_size: the vision tower's patching.
        image_mean, image_std: per-channel normalization (OpenAI CLIP's).
        dtype: optional output dtype for ``pixel_values`` (e.g. ``torch.bfloat16``),
            applied last, after the exact float32 computation.
        backend: "pil" (default: bit-exact with ``Qwen2VLImageProcessorPil``, Pillow's resize) or
            "torchvision" (bit-exact on CPU with ``Qwen2VLImageProcessor``, HF's default when
            torchvision is installed: torchvision's uint8 antialiased bicubic resize and HF's fused
            float32 rescale+normalize). "torchvision" needs torchvision (a dev dependency here),
            imported only when this backend is chosen; without it, an ImportError says so.
        do_resize, do_rescale, rescale_factor, do_normalize, do_convert_rgb: HF's options, with
            HF's meaning (do_resize=False needs sides that are multiples of patch*merge size;
            do_convert_rgb=False keeps RGBA as 4 channels, then mean/std need 4 values).
        input_data_format: None (infer each array's layout as HF does), "channels_first" or
            "channels_last": HF's argument of that name.

    ``transform(sample)`` returns the sample with ``"pixel_values"`` [N, C*tp*p*p] and
    ``"image_grid_thw"`` int64 [n_images, 3]. ``sample["image"]`` takes what HF's processors take
    (see ``_image_inputs``): a PIL image, a uint8 numpy array or torch tensor [H, W, C] or
    [C, H, W] (or [H, W]), a list or nested list of them, or a 4-D batch; several images give
    their rows one after the other, one grid row each.
    """

    def __init__(
        self,
        *,
        min_pixels: int = MIN_PIXELS,
        max_pixels: int = MAX_PIXELS,
        patch_size: int = 14,
        merge_size: int = 2,
        temporal_patch_size: int = 2,
        image_mean: Sequence[float] = OPENAI_CLIP_MEAN,
        image_std: Sequence[float] = OPENAI_CLIP_STD,
        dtype: Optional[torch.dtype] = None,
        backend: str = "pil",
        do_resize: bool = True,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        do_convert_rgb: bool = True,
        input_data_format: Optional[str] = None,
    ):
        if min_pixels > max_pixels:
            raise ValueError(f"min_pixels ({min_pixels}) must not exceed max_pixels ({max_pixels})")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        for name, value in (("image_mean", image_mean), ("image_std", image_std)):
            if np.ndim(value) > 1 or (np.ndim(value) == 1 and len(value) not in ((3, 4) if not do_convert_rgb else (3,))):
                raise ValueError(f"{name} needs 3 values (one per RGB channel) or one number, got {value!r}")
        if do_normalize and (np.asarray(image_std, dtype=np.float64) == 0).any():
            raise ValueError(f"image_std must not contain 0 (division by zero), got {image_std!r}")
        if do_rescale and (isinstance(rescale_factor, bool) or not isinstance(rescale_factor, (int, float))):
            raise ValueError(f"rescale_factor must be a number, got {rescale_factor!r}")
        if backend == "torchvision":
            _torchvision()  # fail now, with the reason, if it is missing
        self.backend = backend
        self.do_resize, self.do_rescale, self.rescale_factor = do_resize, do_rescale, rescale_factor
        self.do_normalize, self.do_convert_rgb = do_normalize, do_convert_rgb
        self.input_data_format = check_data_format(input_data_format)
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.patch_size = patch_size
        self.merge_size = merge_size
        self.temporal_patch_size = temporal_patch_size
        self.image_mean = tuple(np.atleast_1d(image_mean).tolist()) if np.ndim(image_mean) else image_mean
        self.image_std = tuple(np.atleast_1d(image_std).tolist()) if np.ndim(image_std) else image_std
        self.dtype = dtype
        self._tables: dict[int, np.ndarray] = {}

    def _table(self, channels: int) -> np.ndarray:
        """[C, 256] table for images of ``channels`` channels (made once per channel count)."""
        if channels not in self._tables:
            for name, value in (("image_mean", self.image_mean), ("image_std", self.image_std)):
                if self.do_normalize and np.ndim(value) and len(value) != channels:
                    raise ValueError(f"{name} {value} has {len(value)} values but the image has {channels} "
                                     f"channels (do_convert_rgb={self.do_convert_rgb})")
            self._tables[channels] = _normalize_table(
                self.image_mean, self.image_std, backend=self.backend, do_rescale=self.do_rescale,
                rescale_factor=self.rescale_factor, do_normalize=self.do_normalize, channels=channels)
        return self._tables[channels]

    def _size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) after the resize: ``smart_resize``'s, or the image's own without it."""
        unit = self.patch_size * self.merge_size
        if not self.do_resize:
            if height % unit or width % unit:
                raise ValueError(f"with do_resize=False the image's sides must be multiples of patch_size * "
                                 f"merge_size = {unit}, got {height}x{width}")
            return height, width
        return smart_resize(height, width, unit, self.min_pixels, self.max_pixels)

    def resize(self, image: PIL.Image.Image) -> PIL.Image.Image:
        """PIL image -> PIL image of the ``smart_resize`` size (Pillow BICUBIC, uint8)."""
        height, width = self._size(image.height, image.width)
        if not self.do_resize:
            return image
        return image.resize((width, height), PIL.Image.Resampling.BICUBIC)

    def patchify(self, resized: torch.Tensor) -> torch.Tensor:
        """uint8 [H, W, C] (or [H, W]) -> [gh*gw, C*tp*p*p] float32 (uint8 on the torchvision backend
        without rescale and normalize), rows in merge-block order."""
        levels = np.asarray(resized.numpy() if isinstance(resized, torch.Tensor) else resized)
        levels = levels[:, :, None] if levels.ndim == 2 else levels
        table = self._table(levels.shape[2])
        return torch.from_numpy(patchify_levels(levels, table, self.patch_size, self.merge_size,
                                                self.temporal_patch_size))

    def _resized_levels(self, image: Any) -> np.ndarray:
        """One input image -> uint8 [h, w, C], converted and resized as the backend's HF class does."""
        if self.backend == "pil":
            if isinstance(image, PIL.Image.Image) and self.do_convert_rgb:
                rgb = pil_rgb(image)  # stays a PIL image: Pillow resizes it without a copy in between
            else:
                rgb = _to_pil(to_rgb_array(image, backend="pil", do_convert_rgb=self.do_convert_rgb,
                                           input_data_format=self.input_data_format))
            return np.asarray(self.resize(rgb))
        tvF = _torchvision()
        hwc = to_rgb_array(image, backend="torchvision", do_convert_rgb=self.do_convert_rgb,
                           input_data_format=self.input_data_format)
        height, width = self._size(hwc.shape[0], hwc.shape[1])
        # [C, H, W] viewed on channels-last memory: the uint8 resize kernel's own layout (HF's contiguous()
        # copy makes it convert there and back: the same bytes, 2.5x the time); its output keeps that layout
        hwc = np.ascontiguousarray(hwc)
        if not hwc.flags.writeable:  # e.g. np.asarray(PIL image): torch tensors need writable memory
            hwc = hwc.copy()
        chw = torch.from_numpy(hwc).permute(2, 0, 1)
        if self.do_resize:
            chw = tvF.resize(chw, [height, width], interpolation=tvF.InterpolationMode.BICUBIC, antialias=True)
        return chw.permute(1, 2, 0).numpy()

    def __call__(self, sample: Mapping[str, Any], inference: bool = False) -> dict:
        """``sample["image"]`` -> a new dict: the sample's keys plus ``pixel_values`` and ``image_grid_thw``.

        Args:
            sample (Mapping): holds ``"image"``; every other key is passed through.
            inference (bool): accepted for torchtune's transform protocol (model transforms pass it
                to each part). This transform has no training-only step (no augmentation, no
                random crop): the output is the same either way, the image kept in the sample.
        """
        if "image" not in sample:
            raise KeyError("sample has no 'image'")
        rows, grids = [], []
        for image in flat_images(sample["image"]):
            levels = self._resized_levels(image)
            rows.append(self.patchify(levels))
            grids.append([1, levels.shape[0] // self.patch_size, levels.shape[1] // self.patch_size])
        pixel_values = rows[0] if len(rows) == 1 else torch.cat(rows)
        if self.dtype is not None:
            pixel_values = pixel_values.to(self.dtype)
        out = dict(sample)
        out["pixel_values"] = pixel_values
        out["image_grid_thw"] = torch.tensor(grids, dtype=torch.int64)
        return out
