"""Qwen2.5-VL image transform for torch, bit-exact with HF's ``Qwen2VLImageProcessorPil``.

The resize is where ports drift: resizing a float image (or with torchvision's uint8
kernel) differs from HF by up to a few uint8 steps. Here the uint8 image is resized by
Pillow itself, exactly as HF does, and the rest is done in torch.

Rescale and normalize map each uint8 value ``v`` of channel ``c`` to
``float32((float32(v * (1/255) in float64) - mean[c]) / std[c])`` — a function of
``(c, v)`` only — so they are one lookup into a [3, 256] table, bit-equal to computing
them per pixel and much cheaper.
"""

from typing import Any, Mapping, Optional, Sequence

import numpy as np
import PIL.Image
import torch

from reference.smart_resize import MAX_PIXELS, MIN_PIXELS, smart_resize

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _to_pil(image: Any) -> PIL.Image.Image:
    """A PIL image, uint8 [H, W(, C)] array or uint8 [C, H, W] tensor -> PIL image."""
    if isinstance(image, PIL.Image.Image):
        return image
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8:
            raise ValueError(f"image tensor must be uint8 [C, H, W], got dtype {image.dtype}")
        if image.ndim == 3:
            if image.shape[0] not in (1, 3, 4):
                raise ValueError(f"image tensor must be [C, H, W] with C in (1, 3, 4), got shape {tuple(image.shape)}")
            image = image.permute(1, 2, 0)
        elif image.ndim != 2:
            raise ValueError(f"image tensor must be [C, H, W] or [H, W], got shape {tuple(image.shape)}")
        image = image.cpu().numpy()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"image array must be uint8 [H, W, C], got dtype {image.dtype}")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise ValueError(f"image array must be [H, W] or [H, W, C] with C in (1, 3, 4), got shape {image.shape}")
        if 0 in image.shape:
            raise ValueError(f"image is empty, shape {image.shape}")
        return PIL.Image.fromarray(np.ascontiguousarray(image))
    raise TypeError(f"sample['image'] must be a PIL image, numpy array or torch tensor, got {type(image).__name__}")


def _convert_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """HF's ``convert_to_rgb`` for PIL images: anything with alpha goes over opaque white."""
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        image = image.convert("RGBA")
        white = PIL.Image.new("RGBA", image.size, (255, 255, 255, 255))
        return PIL.Image.alpha_composite(white, image).convert("RGB")
    return image.convert("RGB")


def normalize_table(mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """[3, 256] float32: normalized value of every uint8 level, per channel, computed as HF does."""
    levels = (np.arange(256, dtype=np.float64) * (1 / 255)).astype(np.float32)  # HF's rescale
    mean32 = np.asarray(mean, dtype=np.float32)[:, None]
    std32 = np.asarray(std, dtype=np.float32)[:, None]
    return torch.from_numpy((levels[None, :] - mean32) / std32)  # HF's normalize, float32


class Qwen2_5_VLImageTransform:
    """Turn ``sample["image"]`` into Qwen2.5-VL's ``pixel_values`` and ``image_grid_thw``.

    Args:
        min_pixels, max_pixels: area bounds for ``smart_resize``; the defaults are the
            released checkpoints' (3136, 12845056), not HF's class defaults.
        patch_size, merge_size, temporal_patch_size: the vision tower's patching.
        image_mean, image_std: per-channel normalization (OpenAI CLIP's).
        dtype: optional output dtype for ``pixel_values`` (e.g. ``torch.bfloat16``),
            applied last, after the exact float32 computation.

    ``transform(sample)`` returns the sample with ``"pixel_values"`` [N, 3*tp*p*p] and
    ``"image_grid_thw"`` int64 [1, 3]. The image may be a PIL image, a uint8 [H, W, C]
    numpy array or a uint8 [C, H, W] torch tensor.
    """

    def __init__(
        self,
        min_pixels: int = MIN_PIXELS,
        max_pixels: int = MAX_PIXELS,
        patch_size: int = 14,
        merge_size: int = 2,
        temporal_patch_size: int = 2,
        image_mean: Sequence[float] = OPENAI_CLIP_MEAN,
        image_std: Sequence[float] = OPENAI_CLIP_STD,
        dtype: Optional[torch.dtype] = None,
    ):
        if min_pixels > max_pixels:
            raise ValueError(f"min_pixels ({min_pixels}) must not exceed max_pixels ({max_pixels})")
        if len(image_mean) != 3 or len(image_std) != 3:
            raise ValueError(f"image_mean and image_std need 3 values, got {image_mean} and {image_std}")
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.patch_size = patch_size
        self.merge_size = merge_size
        self.temporal_patch_size = temporal_patch_size
        self.image_mean = tuple(image_mean)
        self.image_std = tuple(image_std)
        self.dtype = dtype
        self._table = normalize_table(image_mean, image_std)

    def resize(self, image: PIL.Image.Image) -> PIL.Image.Image:
        """RGB PIL image -> RGB PIL image of the ``smart_resize`` size (Pillow BICUBIC, uint8)."""
        height, width = smart_resize(
            image.height, image.width, self.patch_size * self.merge_size, self.min_pixels, self.max_pixels
        )
        return image.resize((width, height), PIL.Image.Resampling.BICUBIC)

    def patchify(self, resized: torch.Tensor) -> torch.Tensor:
        """uint8 [H, W, 3] -> float32 [gh*gw, 3*tp*p*p], rows in 2x2 merge-block order."""
        p, m, tp = self.patch_size, self.merge_size, self.temporal_patch_size
        height, width, _ = resized.shape
        gh, gw = height // p, width // p
        blocks = resized.reshape(gh // m, m, p, gw // m, m, p, 3)
        blocks = blocks.permute(0, 3, 1, 4, 6, 2, 5)  # [gh/m, gw/m, m, m, C, p, p]: still uint8
        channel = torch.arange(3).view(1, 1, 1, 1, 3, 1, 1)
        values = self._table[channel, blocks.long()]  # rescale + normalize, bit-exact
        values = values.unsqueeze(5).expand(*values.shape[:5], tp, p, p)  # repeat the frame in time
        return values.reshape(gh * gw, 3 * tp * p * p)

    def __call__(self, sample: Mapping[str, Any]) -> dict:
        if "image" not in sample:
            raise KeyError("sample has no 'image'")
        image = self.resize(_convert_rgb(_to_pil(sample["image"])))
        resized = torch.from_numpy(np.array(image))  # [H, W, 3] uint8 (a writable copy)
        pixel_values = self.patchify(resized)
        if self.dtype is not None:
            pixel_values = pixel_values.to(self.dtype)
        grid = [[1, resized.shape[0] // self.patch_size, resized.shape[1] // self.patch_size]]
        out = dict(sample)
        out["pixel_values"] = pixel_values
        out["image_grid_thw"] = torch.tensor(grid, dtype=torch.int64)
        return out
