"""A video case's processor stages: the port's video transform on the golden clip, against the golden.

``Qwen2_5_VLVideoTransform`` runs in one step from the clip (sampling, resize, fused
rescale+normalize, padding by the last frame, patches), so its outputs are compared, not its
inner steps: ``pixel_values_videos`` (float32 [N, 1176]), ``video_grid_thw`` (int64 [1, 3]) and
``second_per_grid_ts`` (seconds per temporal patch). Each is judged exactly (the golden is HF's
``Qwen2VLVideoProcessor`` + ``Qwen2_5_VLProcessor``, cross-checked when written); its local error
is its accumulated one (the step's input is the golden input itself).
"""

from __future__ import annotations

import numpy as np

from .cases import VIDEO_OUTPUTS
from .stages import compare_stage

# Golden params that are the clip's, not the transform's.
SAMPLE_PARAMS = ("video_fps",)


def video_transform(params):
    """The port's video transform with a video golden's ``params`` (preprocess_video's keywords)."""
    from torch_port import Qwen2_5_VLVideoTransform

    return Qwen2_5_VLVideoTransform(**{k: v for k, v in params.items() if k not in SAMPLE_PARAMS})


def video_outputs(case, transform=None):
    """{name in VIDEO_OUTPUTS: NumPy array} of ``transform`` (default: the port's) on the case's clip."""
    transform = transform or video_transform(case.params)
    out = transform({"video": np.ascontiguousarray(case.video), "video_fps": case.params.get("video_fps")})
    return {"pixel_values_videos": out["pixel_values_videos"].numpy(),
            "video_grid_thw": out["video_grid_thw"].numpy(),
            "second_per_grid_ts": np.asarray(out["second_per_grid_ts"], dtype=np.float64)}


def video_rows(case, dtype="float32", transform=None):
    """(rows, pixel_values_videos, video_grid_thw): the video outputs against the golden's, exact."""
    if case.video is None:
        raise ValueError(f"case {case.name} is not a video case")
    outputs = video_outputs(case, transform)
    rows = [compare_stage(name, case.video_outputs[name], outputs[name], outputs[name], dtype)
            for name in VIDEO_OUTPUTS]
    return rows, outputs["pixel_values_videos"], outputs["video_grid_thw"]
