"""Image and video files as HF reads them, for the dataset: every failure names the file.

* ``load_image(path)``: HF's ``transformers.image_utils.load_image`` for a local file: Pillow opens
  it, ``ImageOps.exif_transpose`` applies the EXIF orientation (a phone photo saved rotated comes
  out upright; torchtune's ``load_image`` skips this), then ``convert("RGB")`` (an alpha channel
  is dropped, not composited: HF converts here, before its processor sees the image).
* ``load_video(path, video_transform)``: HF's ``load_video`` with its default backend, PyAV, as
  ``read_video_pyav`` decodes: the container's frame count and average rate are the clip's
  metadata, frames are decoded in order and the kept ones converted with ``to_ndarray("rgb24")``.
  Which frames are kept is HF's video processor's choice (``sample_frame_indices`` with the
  transform's ``do_sample_frames`` / ``fps`` / ``num_frames``), made before decoding as HF's
  processor makes it, so a long clip is never held whole when it is sampled.
* ``load_frames(paths)``: a video given as frame files, each read by ``load_image`` (HF's video
  processor reads such a list with ``fetch_images``; it refuses to sample frames from it).

PyAV is imported when a video file is read (the project's ``torchtune`` extra installs it).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import numpy as np
import PIL.Image
import PIL.ImageOps

from ._video_transform import sample_frame_indices

__all__ = ["MediaError", "load_frames", "load_image", "load_video"]


class MediaError(ValueError):
    """A media file that is missing or cannot be decoded; the message names the file."""


def _existing(path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{what} file {path} not found")
    return path


def load_image(path) -> PIL.Image.Image:
    """An RGB PIL image from a local file, upright per its EXIF orientation (HF's ``load_image``).

    Raises:
        MediaError: the file is missing or Pillow cannot decode it.
    """
    path = _existing(path, "image")
    try:
        with PIL.Image.open(path) as opened:
            image = PIL.ImageOps.exif_transpose(opened)
            return image.convert("RGB")  # decodes now, while the file is open
    except (OSError, ValueError, SyntaxError, PIL.Image.DecompressionBombError) as error:
        raise MediaError(f"image file {path} cannot be decoded ({type(error).__name__}: {error})") from None


def load_frames(paths) -> List[PIL.Image.Image]:
    """A video given as frame files: each an RGB PIL image (``load_image``), all of one size.

    Raises:
        MediaError: no frames, a missing or undecodable frame, frames of different sizes.
    """
    if not paths:
        raise MediaError("a video given as frame files lists no files")
    frames = [load_image(p) for p in paths]
    sizes = sorted({frame.size for frame in frames})
    if len(sizes) > 1:
        raise MediaError(f"the frame files {[str(p) for p in paths]} differ in size (width, height): {sizes}")
    return frames


def load_video(path, video_transform) -> Tuple[np.ndarray, float, int]:
    """Decode a video file with PyAV as HF's ``load_video`` does by default.

    Args:
        path: the video file.
        video_transform (Qwen2_5_VLVideoTransform): whose frame sampling picks the frames decoded.

    Returns:
        tuple: uint8 ``[T, H, W, 3]`` RGB frames (the sampled ones), the clip's fps (the stream's
        average rate) and its frame count (the container's), which give HF's sampled fps.

    Raises:
        MediaError: the file is missing, PyAV cannot open or decode it, it has no video stream, or
            the container reports no frames (HF's sampling needs the count).
    """
    import av

    path = _existing(path, "video")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"video file {path} has no video stream")
            stream = container.streams.video[0]
            total, rate = int(stream.frames), stream.average_rate
            if total < 1 or not rate:
                raise MediaError(f"video file {path}: the container reports {total} frames at {rate} fps; HF's "
                                 "decoder samples by that count and cannot read it either")
            fps = float(rate)
            indices = np.arange(total)
            if video_transform.do_sample_frames:
                indices = sample_frame_indices(
                    total, temporal_patch_size=video_transform.temporal_patch_size, fps=video_transform.fps,
                    num_frames=video_transform.num_frames, video_fps=fps, min_frames=video_transform.min_frames,
                    max_frames=video_transform.max_frames).numpy()
            keep, last, frames = set(indices.tolist()), int(indices[-1]), []
            container.seek(0)
            for i, frame in enumerate(container.decode(video=0)):
                if i > last:
                    break
                if i in keep:
                    frames.append(frame.to_ndarray(format="rgb24"))
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError) as error:
        raise MediaError(f"video file {path} cannot be decoded ({type(error).__name__}: {error})") from None
    if not frames:
        raise MediaError(f"video file {path} decoded to no frames (the container reports {total})")
    return np.stack(frames), fps, total
