"""Video goldens: ``reference.preprocess_video`` with a trace, every stage cross-checked with HF's
``Qwen2VLVideoProcessor`` (torchvision, CPU) and ``Qwen2_5_VLProcessor``'s ``second_per_grid_ts``.

HF's stages come from the processor's own methods, in its order: ``sample_frames`` (indices),
``resize`` (torch's uint8 antialiased bicubic on the [1, T, 3, H, W] tensor), ``rescale_and_normalize``
(the fused float32 step); ``padded`` is HF's ``pixel_values_videos`` read back as frames (its
patchify pads, then only reshapes).
"""

import numpy as np

import reference
from reference.video import VIDEO_MAX_PIXELS, VIDEO_MIN_PIXELS, VIDEO_OUTPUT_STAGES, VIDEO_STAGES

from .tolerances import abs_errors

STAGES = VIDEO_STAGES + VIDEO_OUTPUT_STAGES


def video_stage_tensors(clips, trace):
    """A preprocess_video trace as golden tensors: ``stage`` for one clip, ``stage.{i}`` for several."""
    tensors = {}
    for stage in VIDEO_STAGES:
        values = [trace[stage]] if len(clips) == 1 else trace[stage]
        for index, value in enumerate(values):
            tensors[stage if len(clips) == 1 else f"{stage}.{index}"] = value
    tensors["pixel_values_videos"] = trace["pixel_values_videos"]  # float32 [N, 1176]
    tensors["video_grid_thw"] = trace["video_grid_thw"]  # int64 [n, 3]
    tensors["second_per_grid_ts"] = np.asarray(trace["second_per_grid_ts"], dtype=np.float64)  # [n]
    return tensors


def run_reference(case):
    clips = case.images()
    trace = {}
    reference.preprocess_video(clips if len(clips) > 1 else clips[0], trace=trace, **case.params)
    return clips, video_stage_tensors(clips, trace)


def _hf_processor(params):
    from .hf_compat import video_processor_class  # UnsupportedVersion where the video path is missing

    size = {"shortest_edge": params.get("min_pixels", VIDEO_MIN_PIXELS),
            "longest_edge": params.get("max_pixels", VIDEO_MAX_PIXELS)}
    processor = video_processor_class()(cap_pixels_per_frame=False, size=size)
    got = (processor.size.shortest_edge, processor.size.longest_edge)
    if got != (size["shortest_edge"], size["longest_edge"]):  # transformers#41955: settings silently dropped
        raise RuntimeError(f"HF video processor ignored size: asked {size}, has {got}")
    return processor


def _sampling(params):
    return {key: params[key] for key in ("do_sample_frames", "fps", "num_frames") if key in params}


def hf_outputs(clips, params):
    """HF's processor on the clips: pixel_values_videos, video_grid_thw, second_per_grid_ts (NumPy)."""
    from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor

    call = _sampling(params)
    if params.get("video_fps") is not None:
        call["video_metadata"] = [{"total_num_frames": len(c), "fps": params["video_fps"]} for c in clips]
    stub = object.__new__(Qwen2_5_VLProcessor)  # only the video half runs: no tokenizer needed
    stub.video_processor = _hf_processor(params)
    out, _ = stub._process_videos(list(clips), return_metadata=True, return_tensors="pt", **call)
    return {"pixel_values_videos": out["pixel_values_videos"].numpy(),
            "video_grid_thw": out["video_grid_thw"].numpy(),
            "second_per_grid_ts": np.asarray(out["second_per_grid_ts"], dtype=np.float64)}


def hf_stages(clip, params, pixel_values_videos, grid):
    """One clip's stages as HF's processor methods compute them (NumPy, the reference's layouts)."""
    import torch
    from transformers.video_utils import VideoMetadata

    processor = _hf_processor(params)
    sampled = clip
    if params.get("do_sample_frames"):
        metadata = VideoMetadata(total_num_frames=len(clip), fps=params.get("video_fps"))
        indices = processor.sample_frames(metadata, fps=params.get("fps"), num_frames=params.get("num_frames"))
        sampled = clip[indices.numpy()]
    frames = torch.from_numpy(np.ascontiguousarray(sampled)).permute(0, 3, 1, 2)[None]  # [1, T, 3, H, W]
    resized = processor.resize(videos=frames, size=processor.size, resample=processor.resample,
                               factor=processor.patch_size * processor.merge_size)
    normalized = processor.rescale_and_normalize(resized, True, processor.rescale_factor, True,
                                                 processor.image_mean, processor.image_std)
    t, gh, gw = (int(v) for v in grid)
    m, p, tp = processor.merge_size, processor.patch_size, processor.temporal_patch_size
    # HF's patchify order [t, gh/m, gw/m, m, m, C, tp, p, p] undone: the padded frames [t*tp, C, h, w]
    patches = pixel_values_videos.reshape(t, gh // m, gw // m, m, m, 3, tp, p, p)
    padded = patches.transpose(0, 6, 5, 1, 3, 7, 2, 4, 8).reshape(t * tp, 3, gh * p, gw * p)
    return {"input": clip, "sampled": sampled, "resized": resized[0].permute(0, 2, 3, 1).numpy(),
            "normalized": normalized[0].numpy(), "padded": padded}


def crosscheck(case, clips, tensors):
    """Max abs difference of every stage against HF; all must be exactly 0."""
    hf = hf_outputs(clips, case.params)
    diffs = {key: abs_errors(tensors[key], hf[key])[0] for key in VIDEO_OUTPUT_STAGES}
    start = 0
    for index, (clip, grid) in enumerate(zip(clips, hf["video_grid_thw"])):
        rows = int(np.prod(grid))
        stages = hf_stages(clip, case.params, hf["pixel_values_videos"][start:start + rows], grid)
        start += rows
        suffix = "" if len(clips) == 1 else f".{index}"
        for stage, value in stages.items():
            diffs[stage + suffix] = abs_errors(tensors[stage + suffix], value)[0]
    return diffs


def video_metadata(case):
    import importlib.metadata as md

    from .hf_image import versions

    return {
        "case": case.name,
        "kind": "video",
        "description": case.description,
        "params": dict(case.params),
        "versions": {**versions(), "torchvision": md.version("torchvision")},
        "hf_crosscheck": "transformers.Qwen2VLVideoProcessor (torchvision, CPU: sample_frames, resize, "
                         "rescale_and_normalize, pixel_values_videos) + Qwen2_5_VLProcessor second_per_grid_ts",
        "stages": list(STAGES),
    }


__all__ = ["run_reference", "crosscheck", "video_metadata", "hf_outputs"]
