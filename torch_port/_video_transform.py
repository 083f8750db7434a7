"""Qwen2.5-VL video transform for torch, bit-exact with HF's ``Qwen2VLVideoProcessor`` on CPU.

HF's video processor (transformers 5.24, torchvision backend) resizes the uint8 [T, 3, H, W]
clip with ``tvF.resize(..., BICUBIC, antialias=True)``, which on CPU is torch's native uint8
antialiased kernel: ``torch.nn.functional.interpolate(clip, size, mode="bicubic",
antialias=True)`` on the uint8 tensor is that same kernel (same bytes, checked in
tests/test_video.py), so torchvision is not needed here. Then rescale and normalize are fused:
``(float32(v) - 255 * mean) / (255 * std)`` in float32, mean and std as float32 tensors.

Faster than HF for the same bytes:

* the uint8 clip is resized in its channels-last layout (a [T, H, W, 3] array viewed as
  [T, 3, H, W] without a copy: the kernel's preferred layout), not after a ``contiguous()``;
* padding and the patch permutation happen on uint8 (one byte a value), and the float32
  conversion writes straight into the final [N, 3*tp*p*p] layout, where sub and div (the very
  elementwise ops HF runs, so the same bits) work in place: one float pass fewer than HF.
"""

import math
import warnings
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import PIL.Image
import torch

from ._smart_resize import smart_resize

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VIDEO_MIN_PIXELS = 128 * 28 * 28  # Qwen2VLVideoProcessor.size["shortest_edge"]
VIDEO_MAX_PIXELS = 768 * 28 * 28  # Qwen2VLVideoProcessor.size["longest_edge"]
UNKNOWN_FPS = 24  # HF's VideoMetadata.sampled_fps when the clip's fps is unknown


def _to_clip(video: Any) -> torch.Tensor:
    """uint8 [T, H, W, 3] tensor/array or a list of PIL / [H, W, 3] frames -> uint8 [T, H, W, 3] tensor."""
    if isinstance(video, (list, tuple)):
        if not video:
            raise ValueError("sample['video'] has 0 frames")
        frames = [np.asarray(f.convert("RGB") if isinstance(f, PIL.Image.Image) else f) for f in video]
        shapes = sorted({f.shape for f in frames})
        if len(shapes) > 1:
            raise ValueError(f"sample['video']: the frames differ in size: {shapes}")
        video = np.stack(frames)
    if isinstance(video, np.ndarray):
        if video.dtype != np.uint8:
            raise ValueError(f"sample['video'] must be uint8, got dtype {video.dtype} {_value_range(video)}")
        video = torch.from_numpy(np.ascontiguousarray(video))
    if not isinstance(video, torch.Tensor):
        raise TypeError(f"sample['video'] must be a uint8 [T, H, W, 3] tensor/array or a list of frames, "
                        f"got {type(video).__name__}")
    if video.dtype != torch.uint8:
        raise ValueError(f"sample['video'] must be uint8, got dtype {video.dtype} {_value_range(video)}")
    if video.ndim != 4 or video.shape[3] != 3:
        raise ValueError(f"sample['video'] must be [T, H, W, 3] (RGB, channels last), got shape {tuple(video.shape)}")
    if video.shape[0] == 0:
        raise ValueError(f"sample['video'] has 0 frames, shape {tuple(video.shape)}")
    if video.shape[1] == 0 or video.shape[2] == 0:
        raise ValueError(f"sample['video'] has empty frames, shape {tuple(video.shape)}")
    return video.cpu()


def _value_range(values) -> str:
    values = torch.as_tensor(np.asarray(values)) if not isinstance(values, torch.Tensor) else values
    if values.numel() == 0 or values.dtype == torch.bool:
        return ""
    return f"(values in [{values.min().item():g}, {values.max().item():g}])"


def sample_frame_indices(total: int, *, temporal_patch_size: int, fps: Optional[float], num_frames: Optional[int],
                         video_fps: Optional[float], min_frames: int, max_frames: int) -> torch.Tensor:
    """[n] int64: the frames HF's ``Qwen2VLVideoProcessor.sample_frames`` keeps of a ``total``-frame clip."""
    tp = temporal_patch_size
    if num_frames is not None:
        n = round(num_frames / tp) * tp
    elif fps is not None:
        if video_fps is None:
            raise ValueError("sampling by fps needs the video's own fps (sample['video_fps']), got None")
        cap = math.floor(min(max_frames, total) / tp) * tp
        n = math.floor(min(max(total / video_fps * fps, min_frames), cap, total) / tp) * tp
    else:
        return torch.arange(total)
    if n > total:
        raise ValueError(f"Video can't be sampled. The inferred `num_frames={n}` exceeds `total_num_frames={total}`. "
                         "Decrease `num_frames` or `fps` for sampling.")
    if n < 1:
        raise ValueError(f"sampling leaves 0 frames (num_frames={num_frames}, fps={fps}, total={total}, "
                         f"temporal_patch_size={tp})")
    indices = torch.arange(0, total, total / n).int().long()  # HF's expression, float32 then truncated
    if int(indices[-1]) >= total:
        raise IndexError(f"HF's torch.arange(0, {total}, {total}/{n}) gives {len(indices)} indices, the last one "
                         f"{int(indices[-1])} past the clip's {total} frames")
    return indices


class Qwen2_5_VLVideoTransform:
    """Turn ``sample["video"]`` into ``pixel_values_videos``, ``video_grid_thw`` and ``second_per_grid_ts``.

    Args:
        min_pixels, max_pixels: per-frame area bounds (HF's video defaults 100352 .. 602112).
        patch_size, temporal_patch_size, merge_size: the vision tower's patching.
        do_sample_frames, fps, num_frames, min_frames, max_frames: HF's frame sampling (off by
            default); sampling by fps needs ``sample["video_fps"]``.
        cap_pixels_per_frame, max_video_tokens: HF's optional total-video pixel budget.
        image_mean, image_std: per-channel normalization (OpenAI CLIP's).

    ``transform(sample)``: ``sample["video"]`` is a uint8 [T, H, W, 3] tensor or array, or a list
    of PIL frames; ``sample.get("video_fps")`` the clip's frame rate; ``sample.get("total_num_frames")``,
    when the frames were already sampled (as HF's decoders sample while decoding), the clip's frame
    count they came from: no sampling again, and the sampled fps is HF's ``T / total * video_fps``.
    Returns the sample with
    ``"pixel_values_videos"`` float32 [N, 3*tp*p*p], ``"video_grid_thw"`` int64 [1, 3] and
    ``"second_per_grid_ts"`` (a list of one float, as HF's processor gives it).
    """

    def __init__(
        self,
        *,
        min_pixels: int = VIDEO_MIN_PIXELS,
        max_pixels: int = VIDEO_MAX_PIXELS,
        patch_size: int = 14,
        temporal_patch_size: int = 2,
        merge_size: int = 2,
        do_sample_frames: bool = False,
        fps: Optional[float] = None,
        num_frames: Optional[int] = None,
        min_frames: int = 4,
        max_frames: int = 768,
        cap_pixels_per_frame: bool = False,
        max_video_tokens: int = 128000,
        image_mean: Sequence[float] = OPENAI_CLIP_MEAN,
        image_std: Sequence[float] = OPENAI_CLIP_STD,
    ):
        if fps is not None and num_frames is not None:
            raise ValueError("`num_frames` and `fps` are mutually exclusive arguments, please use only one!")
        if fps is not None and not fps > 0:
            raise ValueError(f"fps must be positive, got {fps!r}")
        if num_frames is not None and not num_frames >= 1:
            raise ValueError(f"num_frames must be at least 1, got {num_frames!r}")
        if not do_sample_frames and (fps is not None or num_frames is not None):
            warnings.warn("fps/num_frames are ignored unless do_sample_frames=True (as in HF)", stacklevel=2)
        if len(image_mean) != 3 or len(image_std) != 3:
            raise ValueError(f"image_mean and image_std need 3 values, got {image_mean} and {image_std}")
        self.min_pixels, self.max_pixels = min_pixels, max_pixels
        self.patch_size, self.temporal_patch_size, self.merge_size = patch_size, temporal_patch_size, merge_size
        self.do_sample_frames, self.fps, self.num_frames = do_sample_frames, fps, num_frames
        self.min_frames, self.max_frames = min_frames, max_frames
        self.cap_pixels_per_frame, self.max_video_tokens = cap_pixels_per_frame, max_video_tokens
        # HF's fused rescale + normalize: float32 mean/std times 1 / (1/255) = 255.0
        self._mean = (torch.tensor(image_mean) * 255.0).view(1, 3, 1)  # [1, C, 1] over [N, C, tp*p*p]
        self._std = (torch.tensor(image_std) * 255.0).view(1, 3, 1)

    def _frame_size(self, height: int, width: int, frames: int) -> tuple:
        factor = self.patch_size * self.merge_size
        max_pixels = self.max_pixels
        if self.cap_pixels_per_frame:
            total_pixels = int(self.max_video_tokens * factor * factor * 0.9)
            max_pixels = max(min(max_pixels, total_pixels * self.temporal_patch_size // frames),
                             int(self.min_pixels * 1.05))
        return smart_resize(height, width, factor, self.min_pixels, max_pixels)

    def __call__(self, sample: Mapping[str, Any]) -> dict:
        clip = _to_clip(sample["video"])  # [T, H, W, 3] uint8
        video_fps = sample.get("video_fps")
        if video_fps is not None and not video_fps > 0:
            raise ValueError(f"sample['video_fps'] must be positive, got {video_fps!r}")
        total = clip.shape[0]
        sampled_fps = UNKNOWN_FPS if video_fps is None else video_fps
        sampled_from = sample.get("total_num_frames")
        if sampled_from is not None:  # frames already sampled from a longer clip (a decoder that samples)
            if isinstance(sampled_from, bool) or not isinstance(sampled_from, int) or sampled_from < total:
                raise ValueError(f"sample['total_num_frames'] must be an int >= the {total} frames given, "
                                 f"got {sampled_from!r}")
            if video_fps is not None:
                sampled_fps = total / sampled_from * video_fps  # HF's VideoMetadata.sampled_fps
        elif self.do_sample_frames:
            indices = sample_frame_indices(total, temporal_patch_size=self.temporal_patch_size, fps=self.fps,
                                           num_frames=self.num_frames, video_fps=video_fps,
                                           min_frames=self.min_frames, max_frames=self.max_frames)
            clip = clip[indices]
            if video_fps is not None:
                sampled_fps = len(indices) / total * video_fps
        height, width = self._frame_size(clip.shape[1], clip.shape[2], clip.shape[0])
        frames = clip.permute(0, 3, 1, 2)  # [T, 3, H, W], channels-last in memory
        if (height, width) != tuple(frames.shape[-2:]):
            frames = torch.nn.functional.interpolate(frames, size=(height, width), mode="bicubic", antialias=True)
        pad = -frames.shape[0] % self.temporal_patch_size
        if pad:
            frames = torch.cat([frames, frames[-1:].expand(pad, -1, -1, -1)])  # the last frame repeated
        p, m, tp = self.patch_size, self.merge_size, self.temporal_patch_size
        t, gh, gw = frames.shape[0] // tp, height // p, width // p
        patches = frames.reshape(t, tp, 3, gh // m, m, p, gw // m, m, p).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
        pixel_values = patches.reshape(t * gh * gw, 3, tp * p * p).to(torch.float32)  # [N, C, tp*p*p]
        pixel_values.sub_(self._mean).div_(self._std)
        out = dict(sample)
        out["pixel_values_videos"] = pixel_values.view(t * gh * gw, 3 * tp * p * p)
        out["video_grid_thw"] = torch.tensor([[t, gh, gw]], dtype=torch.int64)
        out["second_per_grid_ts"] = [self.temporal_patch_size / sampled_fps]
        return out
