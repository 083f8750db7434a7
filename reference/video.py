"""Qwen2.5-VL video preprocessing: uint8 clips -> ``pixel_values_videos``, ``video_grid_thw``, ``second_per_grid_ts``.

Bit-exact with HF's ``Qwen2VLVideoProcessor`` (transformers 5.24, which has only a torchvision
backend) on CPU, plus the ``second_per_grid_ts`` that ``Qwen2_5_VLProcessor`` adds. Per video:

    frames uint8 [T, H, W, 3]
      --sample (only with do_sample_frames: by num_frames or by fps and the clip's video_fps)-->  sampled [T', H, W, 3]
      --smart_resize + torch's native uint8 antialiased BICUBIC (resize_bicubic_torch), per frame-->  resized (uint8)
      --fused rescale + normalize: (float32(v) - 255*mean) / (255*std), float32-->  normalized [T', 3, h, w]
      --pad to a multiple of temporal_patch_size by repeating the last frame-->  padded
      --patchify-->  rows of 3*tp*14*14 = 1176 values, one row per (t, 14x14) patch

What the installed HF code does, and this module follows:

* the resize is on the uint8 [T, 3, H, W] tensor (``tvF.resize``, BICUBIC, antialias=True), so
  torchvision hands it to torch's uint8 kernel, not a float resize; the size comes from
  ``smart_resize(h, w, factor=28, min_pixels=size.shortest_edge, max_pixels=size.longest_edge)``;
* rescale and normalize are fused (``_fuse_mean_std_and_rescale_factor``): mean and std become
  float32 tensors times ``1 / rescale_factor`` (= 255.0 exactly), and the float32 frame goes
  through ``sub_(mean).div_(std)``; the result depends on (channel, level) only, hence a
  [3, 256] table here (not the image path's ``x * (1/255)`` in float64 then ``(x - m) / s``);
* the class defaults: ``size`` = {shortest_edge: 128*28*28, longest_edge: 768*28*28} (NOT the
  image processor's 56*56 .. 28*28*1280), OPENAI CLIP mean/std, ``do_sample_frames=False``,
  ``min_frames=4``, ``max_frames=768``, ``fps``/``num_frames`` None, ``cap_pixels_per_frame``
  unset (= False, with a warning), ``max_video_tokens=128000``;
* sampling: ``num_frames -> round(num_frames / tp) * tp``; ``fps -> total / video_fps * fps``
  clamped to [min_frames, floor(min(max_frames, total) / tp) * tp] and to total, then floored to
  a multiple of tp; indices are ``torch.arange(0, total, total / n).int()``, which equals
  ``(i * total) // n`` for ``i < ceil(total / (total / n))`` (checked for every n <= total <= 1000:
  the count is sometimes n + 1, and then the last index is ``total`` and HF's indexing fails);
* ``cap_pixels_per_frame=True`` lowers max_pixels to
  ``max(min(max_pixels, int(max_video_tokens * 28 * 28 * 0.9) * tp // T), int(min_pixels * 1.05))``;
* padding repeats the last frame (5 frames -> grid_t 3), after the resize and normalize;
* ``second_per_grid_ts = tp / sampled_fps`` with ``sampled_fps = len(indices) / total * video_fps``
  when sampled, ``video_fps`` when not, and 24 when the clip's fps is unknown (HF's fallback).
  HF's processor uses the processor's own ``temporal_patch_size`` here; this function uses the
  ``temporal_patch_size`` argument (the same number unless a call overrides it).

Where HF is silent or crashes, this function refuses with a ValueError naming the value: no
frames, non-uint8 frames (HF would resize floats in float and rescale them again), fps <= 0,
num_frames < 1, video_fps <= 0, sampling that yields 0 frames (HF: ZeroDivisionError), and the
n + 1 overshoot above (HF's IndexError, kept as IndexError). ``fps``/``num_frames`` without
``do_sample_frames`` are ignored by HF; here that warns.
"""

import math
import warnings

import numpy as np

from .preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, torch_normalize_table
from .smart_resize import smart_resize
from .validate import describe_values

VIDEO_MIN_PIXELS = 128 * 28 * 28  # 100352: Qwen2VLVideoProcessor.size["shortest_edge"]
VIDEO_MAX_PIXELS = 768 * 28 * 28  # 602112: Qwen2VLVideoProcessor.size["longest_edge"]
MIN_FRAMES = 4
MAX_FRAMES = 768
MAX_VIDEO_TOKENS = 128000
UNKNOWN_FPS = 24  # VideoMetadata.sampled_fps when the clip's fps is unknown

VIDEO_STAGES = ("input", "sampled", "resized", "normalized", "padded")
VIDEO_OUTPUT_STAGES = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")


# ---------------------------------------------------------------- inputs


def _is_frame(x):  # an [H, W, C] array, tensor or PIL image (np.asarray reads all three)
    return not isinstance(x, (list, tuple)) and np.ndim(x) == 3


def as_video_list(videos):
    """One clip or several -> a list of uint8 [T, H, W, 3] arrays, each checked.

    A clip is a uint8 [T, H, W, 3] array, or a list of uint8 [H, W, 3] frames (arrays or PIL
    images: anything ``np.asarray`` turns into one). Several clips: a list of clips, or a
    [B, T, H, W, 3] array. Channels come last, always (HF guesses channels-first tensors too;
    the reference does not guess: permute a [T, 3, H, W] tensor first).
    """
    if hasattr(videos, "__array__") and not isinstance(videos, (list, tuple)):
        array = np.asarray(videos)
        if array.ndim == 5:
            clips = list(array)
        elif array.ndim == 4:
            clips = [array]
        else:
            raise ValueError(f"preprocess_video: a clip must be [T, H, W, 3] (or a batch [B, T, H, W, 3]), "
                             f"got shape {array.shape}")
    elif isinstance(videos, (list, tuple)):
        if len(videos) == 0:
            raise ValueError("preprocess_video: no videos given (an empty list)")
        if all(_is_frame(x) for x in videos):
            clips = [_stack_frames(videos, "video 0")]
        else:
            clips = []
            for index, clip in enumerate(videos):
                if isinstance(clip, (list, tuple)):
                    if len(clip) == 0:
                        raise ValueError(f"preprocess_video: video {index} has 0 frames")
                    clips.append(_stack_frames(clip, f"video {index}"))
                else:
                    clips.append(np.asarray(clip))
    else:
        raise TypeError(f"preprocess_video: videos must be an array or a list, got {type(videos).__name__}")
    for index, clip in enumerate(clips):
        check_clip(clip, f"video {index}")
    return clips


def _stack_frames(frames, where):
    arrays = [np.asarray(frame) for frame in frames]
    shapes = sorted({a.shape for a in arrays})
    if len(shapes) > 1:
        raise ValueError(f"preprocess_video: the frames of {where} differ in size: {shapes}")
    return np.stack(arrays)


def check_clip(clip, where):
    """Refuse anything but a uint8 [T, H, W, 3] clip with T, H, W >= 1."""
    if clip.ndim != 4 or clip.shape[3] != 3:
        raise ValueError(f"preprocess_video: {where} must be [T, H, W, 3] (RGB, channels last), got shape {clip.shape}")
    if clip.dtype != np.uint8:
        raise ValueError(f"preprocess_video: {where} must have dtype uint8, got {clip.dtype} "
                         f"({describe_values(clip)}); floats are not rescaled or rounded here")
    if clip.shape[0] == 0:
        raise ValueError(f"preprocess_video: {where} has 0 frames, shape {clip.shape}")
    if clip.shape[1] == 0 or clip.shape[2] == 0:
        raise ValueError(f"preprocess_video: {where} has empty frames, shape {clip.shape}")


def _per_video(value, count, name):
    """A number or None for every clip, or one per clip."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * count
    if len(values) != count:
        raise ValueError(f"preprocess_video: {name} has {len(values)} entries for {count} videos")
    for v in values:
        if v is not None and not v > 0:
            raise ValueError(f"preprocess_video: {name} must be positive, got {v!r}")
    return values


# ---------------------------------------------------------------- stages


def sample_indices(total, *, temporal_patch_size=2, fps=None, num_frames=None, video_fps=None,
                   min_frames=MIN_FRAMES, max_frames=MAX_FRAMES):
    """Frame indices HF's ``Qwen2VLVideoProcessor.sample_frames`` picks from a ``total``-frame clip."""
    tp = temporal_patch_size
    if fps is not None and num_frames is not None:
        raise ValueError("`num_frames` and `fps` are mutually exclusive arguments, please use only one!")
    if num_frames is not None:
        n = round(num_frames / tp) * tp
    elif fps is not None:
        if video_fps is None:
            raise ValueError("preprocess_video: sampling by fps needs the video's own fps (video_fps=...), got None")
        max_frames = math.floor(min(max_frames, total) / tp) * tp
        n = min(max(total / video_fps * fps, min_frames), max_frames, total)
        n = math.floor(n / tp) * tp
    else:
        return np.arange(total)
    if n > total:
        raise ValueError(f"Video can't be sampled. The inferred `num_frames={n}` exceeds `total_num_frames={total}`. "
                         "Decrease `num_frames` or `fps` for sampling.")
    if n < 1:
        raise ValueError(f"preprocess_video: sampling leaves 0 frames (num_frames={num_frames}, fps={fps}, "
                         f"total={total}, temporal_patch_size={tp})")
    count = math.ceil(total / (total / n))  # torch.arange's length, computed in double as torch does
    indices = np.arange(count, dtype=np.int64) * total // n  # [count]: trunc(i * total / n)
    if indices[-1] >= total:
        raise IndexError(f"preprocess_video: HF's torch.arange(0, {total}, {total}/{n}) gives {count} indices, "
                         f"the last one {indices[-1]} is past the clip's {total} frames")
    return indices


def patchify_video(frames, patch_size=14, merge_size=2, temporal_patch_size=2):
    """float32 [T, C, H, W] (T a multiple of tp) -> ([t*gh*gw, C*tp*p*p], t, gh, gw), merge-block order."""
    frames_count, channels, height, width = frames.shape
    t, gh, gw = frames_count // temporal_patch_size, height // patch_size, width // patch_size
    m, p, tp = merge_size, patch_size, temporal_patch_size
    patches = frames.reshape(t, tp, channels, gh // m, m, p, gw // m, m, p)
    patches = patches.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)  # [t, gh/m, gw/m, m, m, C, tp, p, p]
    return patches.reshape(t * gh * gw, channels * tp * p * p), t, gh, gw


def pad_frames(frames, temporal_patch_size):
    """[T, ...] -> [T + pad, ...]: the last frame repeated up to a multiple of temporal_patch_size."""
    pad = -frames.shape[0] % temporal_patch_size
    return np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)]) if pad else frames


def frame_size(height, width, frames_count, *, patch_size, merge_size, temporal_patch_size, min_pixels,
               max_pixels, cap_pixels_per_frame, max_video_tokens):
    """(resized height, width) of a clip's frames, with HF's optional total-video cap."""
    factor = patch_size * merge_size
    if cap_pixels_per_frame:
        total_pixels = int(max_video_tokens * factor * factor * 0.9)
        max_pixels = max(min(max_pixels, total_pixels * temporal_patch_size // frames_count), int(min_pixels * 1.05))
    return smart_resize(height, width, factor, min_pixels, max_pixels)


# ---------------------------------------------------------------- the whole path


def preprocess_video(
    videos,
    *,
    backend="torchvision",
    min_pixels=VIDEO_MIN_PIXELS,
    max_pixels=VIDEO_MAX_PIXELS,
    patch_size=14,
    temporal_patch_size=2,
    merge_size=2,
    do_sample_frames=False,
    fps=None,
    num_frames=None,
    video_fps=None,
    trace=None,
    min_frames=MIN_FRAMES,
    max_frames=MAX_FRAMES,
    cap_pixels_per_frame=False,
    max_video_tokens=MAX_VIDEO_TOKENS,
):
    """Preprocess one clip or several, bit-exact with ``Qwen2VLVideoProcessor`` (torchvision, CPU).

    videos: uint8 [T, H, W, 3], a list of uint8 [H, W, 3] frames, or a list of clips (see
    ``as_video_list``). ``video_fps``: the clips' own frame rate (one number, or one per clip).
    Returns ``{"pixel_values_videos": float32 [N, 3*tp*p*p], "video_grid_thw": int64 [n, 3],
    "second_per_grid_ts": list of n floats}``.

    ``trace``: a dict to fill with ``VIDEO_STAGES`` per clip (an array for one clip, a list for
    several) and the outputs.
    """
    if backend != "torchvision":
        raise ValueError(f"preprocess_video: backend must be 'torchvision' (HF's only video backend), got {backend!r}")
    from .bicubic_torch import resize_bicubic_torch  # here, not at the top: `import reference` must not need it

    clips = as_video_list(videos)
    if fps is not None and not fps > 0:
        raise ValueError(f"preprocess_video: fps must be positive, got {fps!r}")
    if num_frames is not None and not num_frames >= 1:
        raise ValueError(f"preprocess_video: num_frames must be at least 1, got {num_frames!r}")
    if fps is not None and num_frames is not None:
        raise ValueError("`num_frames` and `fps` are mutually exclusive arguments, please use only one!")
    if not do_sample_frames and (fps is not None or num_frames is not None):
        warnings.warn("preprocess_video: fps/num_frames are ignored unless do_sample_frames=True (as in HF)",
                      stacklevel=2)
    clip_fps = _per_video(video_fps, len(clips), "video_fps")
    table = torch_normalize_table(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)  # [3, 256]: the fused step of every level

    stages = {name: [] for name in VIDEO_STAGES}
    rows, grids, seconds = [], [], []
    for clip, own_fps in zip(clips, clip_fps):
        total = clip.shape[0]
        if do_sample_frames:
            indices = sample_indices(total, temporal_patch_size=temporal_patch_size, fps=fps, num_frames=num_frames,
                                     video_fps=own_fps, min_frames=min_frames, max_frames=max_frames)
            sampled = clip[indices]  # [T', H, W, 3]
            sampled_fps = UNKNOWN_FPS if own_fps is None else len(indices) / total * own_fps
        else:
            sampled = clip
            sampled_fps = UNKNOWN_FPS if own_fps is None else own_fps
        height, width = frame_size(clip.shape[1], clip.shape[2], sampled.shape[0], patch_size=patch_size,
                                   merge_size=merge_size, temporal_patch_size=temporal_patch_size,
                                   min_pixels=min_pixels, max_pixels=max_pixels,
                                   cap_pixels_per_frame=cap_pixels_per_frame, max_video_tokens=max_video_tokens)
        resized = np.stack([resize_bicubic_torch(frame, height, width) for frame in sampled])  # [T', h, w, 3] uint8
        channels_first = resized.transpose(0, 3, 1, 2)  # [T', 3, h, w]
        normalized = table[np.arange(3)[None, :, None, None], channels_first]  # [T', 3, h, w] float32
        padded = pad_frames(normalized, temporal_patch_size)  # [T'', 3, h, w]
        patches, t, gh, gw = patchify_video(padded, patch_size, merge_size, temporal_patch_size)
        rows.append(patches)
        grids.append([t, gh, gw])
        seconds.append(temporal_patch_size / sampled_fps)
        if trace is not None:
            for name, value in zip(VIDEO_STAGES, (clip, sampled, resized, normalized, padded)):
                stages[name].append(value)

    out = {
        "pixel_values_videos": rows[0] if len(rows) == 1 else np.concatenate(rows, axis=0),  # [N, 3*tp*p*p]
        "video_grid_thw": np.array(grids, dtype=np.int64),  # [n, 3]
        "second_per_grid_ts": seconds,  # [n] floats
    }
    if trace is not None:
        for name, values in stages.items():
            trace[name] = values[0] if len(values) == 1 else values
        trace.update(out)
    return out
