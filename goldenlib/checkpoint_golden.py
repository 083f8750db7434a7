"""Goldens to the logits for any HF Qwen2.5-VL checkpoint folder and input (the porter's own).

`checkpoint_golden(folder, prompt, images=..., videos=...)`:

1. reads config.json (a non-Qwen2.5-VL folder is refused, naming its model_type), the processor
   settings (preprocessor_config.json, video_preprocessor_config.json) and the tokenizer;
2. tokenizes the prompt with the folder's tokenizer (the only step the reference does not specify).
   The prompt holds one `<|image_pad|>` per image and one `<|video_pad|>` per video (each usually
   between `<|vision_start|>` and `<|vision_end|>`); a prompt with none gets one
   `<|vision_start|><|image_pad|><|vision_end|>` run per image, then per video, in front. A count that
   differs from the media is refused, naming both counts;
3. preprocesses with the reference (HF's default backend, torchvision) and expands the placeholders;
4. runs `reference.model_forward` in float64 with the weights streamed from the shards (one block or
   layer in float64 at a time; the embedding and lm_head read by rows);
5. cross-checks against HF on the same folder and input (AutoProcessor: input ids, token types, pixel
   values and grids must be equal; `Qwen2_5_VLForConditionalGeneration` in float32, fed
   mm_token_type_ids: every float stage within `bound`) and raises `CrosscheckError` otherwise.

Stages kept: everything, except tower blocks and decoder layers outside `blocks` / `layers` (default:
all of them for small models, else a subset that can still be teacher-forced, see `default_subset`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

import reference
from reference import ModelConfig

from reference.preprocess import TORCHVISION_STAGES

from .image_goldens import image_stage_tensors
from .shard_weights import FolderError, ShardWeights
from .stage_vocabulary import case_stages
from .tolerances import CHECKPOINT_VS_HF_FLOAT32_BOUND, float32_text_rotary_error, rel_error

IMAGE_PAD, VIDEO_PAD, START, END = "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"
# stages whose values must equal HF's exactly (integers and the processor's outputs)
EXACT = ("input_ids", "mm_token_type_ids", "position_ids", "pixel_values", "image_grid_thw", "pixel_values_videos",
         "video_grid_thw")


class CheckpointCrosscheckError(RuntimeError):
    """The reference disagrees with HF on this folder and input: nothing may be written."""


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise FolderError(f"{path}: {what} not found")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FolderError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise FolderError(f"{path}: expected a JSON object")
    return data


def read_model_config(folder: Path) -> ModelConfig:
    config = read_json(folder / "config.json", "config.json")
    kind = config.get("model_type")
    if kind != "qwen2_5_vl":
        raise FolderError(f"{folder / 'config.json'}: model_type {kind!r} (architectures "
                          f"{config.get('architectures')}): not a Qwen2.5-VL checkpoint (model_type 'qwen2_5_vl')")
    try:
        return ModelConfig.from_hf(config)
    except ValueError as error:
        raise FolderError(f"{folder / 'config.json'}: {error}") from None


def processor_settings(folder: Path):
    """(image keyword arguments, video keyword arguments) of reference.preprocess / preprocess_video."""
    image = read_json(folder / "preprocessor_config.json", "preprocessor_config.json")
    video_path = folder / "video_preprocessor_config.json"
    video = {**image, **(read_json(video_path, "video_preprocessor_config.json") if video_path.is_file() else {})}

    def common(d, min_default, max_default):
        size = d.get("size") or {}
        return {"min_pixels": d.get("min_pixels", size.get("shortest_edge", min_default)),
                "max_pixels": d.get("max_pixels", size.get("longest_edge", max_default)),
                **{k: d[k] for k in ("patch_size", "merge_size", "temporal_patch_size") if k in d}}

    from reference.video import VIDEO_MAX_PIXELS, VIDEO_MIN_PIXELS

    image_kwargs = {"backend": "torchvision", **common(image, reference.MIN_PIXELS, reference.MAX_PIXELS),
                    **{k: image[k] for k in ("image_mean", "image_std", "rescale_factor") if k in image}}
    video_kwargs = {"backend": "torchvision", **common(video, VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS)}
    return image_kwargs, video_kwargs


def prompt_with_placeholders(prompt: str, n_images: int, n_videos: int) -> str:
    found = (prompt.count(IMAGE_PAD), prompt.count(VIDEO_PAD))
    if found == (0, 0):
        return f"{START}{IMAGE_PAD}{END}" * n_images + f"{START}{VIDEO_PAD}{END}" * n_videos + prompt
    if found != (n_images, n_videos):
        raise ValueError(f"the prompt holds {found[0]} {IMAGE_PAD} and {found[1]} {VIDEO_PAD} placeholders but "
                         f"{n_images} image(s) and {n_videos} video(s) were given; they must be equal (or the prompt "
                         "holds none, and one run per medium is put in front)")
    return prompt


def read_media(image_paths=(), video_paths=()):
    """(images, clips) as uint8 arrays from files: images decoded with Pillow (reference.io); a video is a
    folder of frame images (sorted by name) or a .npy uint8 [T, H, W, 3]. A missing file is named."""
    from reference.io import load_image

    images = []
    for path in map(Path, image_paths):
        if not path.is_file():
            raise FolderError(f"image {path}: no such file")
        images.append(load_image(path))
    clips = []
    for path in map(Path, video_paths):
        if path.is_dir():
            frames = sorted(p for p in path.iterdir() if p.is_file())
            if not frames:
                raise FolderError(f"video folder {path}: holds no frame files")
            clips.append(np.stack([load_image(p) for p in frames]))
        elif path.suffix == ".npy" and path.is_file():
            clip = np.load(path, allow_pickle=False)
            if clip.dtype != np.uint8 or clip.ndim != 4 or clip.shape[-1] != 3:
                raise FolderError(f"video {path}: expected uint8 [T, H, W, 3], got {clip.dtype} {clip.shape}")
            clips.append(clip)
        else:
            raise FolderError(f"video {path}: neither a folder of frames nor a .npy file")
    return images, clips


def default_subset(depth: int, fullatt=()) -> tuple[int, ...]:
    """All of a small stack (<= 8); else every 8th, the last, the full-attention ones, and the one before
    each of them (so that each kept stage can be fed its golden input)."""
    if depth <= 8:
        return tuple(range(depth))
    keep = set(range(0, depth, 8)) | {depth - 1} | set(fullatt)
    keep |= {i - 1 for i in keep if i > 0}
    return tuple(sorted(keep))


def reference_inputs(folder, config, prompt, images, videos, video_fps=None):
    """Tokenize, preprocess and expand: the model's inputs and the preprocessing stages."""
    from transformers import AutoTokenizer

    image_kwargs, video_kwargs = processor_settings(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    ids = np.array([tokenizer(prompt)["input_ids"]], dtype=np.int64)
    inputs, stages = {}, {}
    if images:
        trace = {}
        out = reference.preprocess(list(images), trace=trace, **image_kwargs)
        inputs.update(pixel_values=out["pixel_values"], image_grid_thw=out["image_grid_thw"])
        ran = tuple(stage for stage in TORCHVISION_STAGES if stage in trace)
        stages.update(image_stage_tensors(list(images), trace, ran))
    if videos:
        out = reference.preprocess_video(list(videos), video_fps=video_fps, **video_kwargs)
        inputs.update(pixel_values_videos=out["pixel_values_videos"], video_grid_thw=out["video_grid_thw"],
                      second_per_grid_ts=np.asarray(out["second_per_grid_ts"], dtype=np.float32))
    ids, types = reference.expand_vision_tokens(ids, inputs.get("image_grid_thw"), inputs.get("video_grid_thw"),
                                                image_token_id=config.image_token_id,
                                                video_token_id=config.video_token_id,
                                                merge_size=config.vision.spatial_merge_size)
    return ids, types, inputs, stages


def hf_processor_check(folder, prompt, images, videos, ids, types, inputs, video_fps=None):
    """HF's AutoProcessor on the same prompt and media: every output must equal the reference's."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(folder))
    media = {"images": list(images) or None}
    if videos:  # as the reference: every frame kept, no per-frame pixel cap, the clips' own fps when given
        media.update(videos=list(videos), do_sample_frames=False, cap_pixels_per_frame=False)
        if video_fps is not None:
            media["video_metadata"] = [{"total_num_frames": len(clip), "fps": video_fps} for clip in videos]
    out = processor(text=[prompt], return_tensors="np", **media)
    ours = {"input_ids": ids, "mm_token_type_ids": types, **inputs}
    differ = []
    for name, value in ours.items():
        theirs = out.get(name)
        if theirs is None or np.shape(theirs) != np.shape(value) or not np.array_equal(np.asarray(theirs, value.dtype),
                                                                                       value):
            differ.append(name)
    if differ:
        raise CheckpointCrosscheckError(f"{folder}: the reference's inputs differ from HF's AutoProcessor at {differ}")


class KeptStages(dict):
    """A trace that keeps only the stages ``keep(name)`` accepts, as they come (the 3B tower's 64 block
    stages of a large image never sit in memory at once)."""

    def __init__(self, keep):
        super().__init__()
        self.keep = keep

    def __setitem__(self, name, value):
        if self.keep(name):
            super().__setitem__(name, value)

    def update(self, *args, **kwargs):
        for name, value in dict(*args, **kwargs).items():
            self[name] = value


def run_reference(folder, config, ids, types, inputs, keep, dtype=np.float64):
    weights = ShardWeights(folder, dtype)
    vision, text = reference.split_model_weights(weights)
    trace = KeptStages(keep)
    reference.model_forward(ids, vision, text, config, mm_token_type_ids=types, trace=trace, dtype=dtype,
                            vision=reference.fast.vision_forward, **inputs)
    return dict(trace)


def hf_crosscheck(folder, ids, types, inputs, trace):
    """{stage: rel. error of the reference vs HF float32 (inf: an exact stage differs)}."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from .hf_model import hf_model_trace

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(folder), dtype=torch.float32).eval()
    hf = hf_model_trace(model, ids, types, **inputs)
    del model
    errors = {}
    for name, value in trace.items():
        if name not in hf:
            continue
        if not np.issubdtype(np.asarray(value).dtype, np.floating):
            errors[name] = 0.0 if np.array_equal(hf[name], value) else float("inf")
        else:
            errors[name] = rel_error(value, hf[name])
    return errors


def rotary_floor(position_ids):
    """HF's float32 text rotary error at the largest of ``position_ids`` (``float32_text_rotary_error``)."""
    return float32_text_rotary_error(int(np.max(position_ids, initial=0)))


def checkpoint_golden(folder, prompt, *, images=(), videos=(), video_fps=None, layers=None, blocks=None,
                      crosscheck=True, bound=CHECKPOINT_VS_HF_FLOAT32_BOUND, log=None):
    """(tensors, metadata, {stage: error vs HF float32}) of a checkpoint folder on a prompt and media.

    images: uint8 [H, W, 3] arrays; videos: uint8 [T, H, W, 3] clips. Raises FolderError for a folder that
    cannot be read, ValueError for placeholders that do not match the media, CheckpointCrosscheckError when
    HF disagrees (an exact stage differs, or a float stage beyond ``bound``)."""
    log = log or (lambda message: None)
    folder = Path(folder)
    if not folder.is_dir():
        raise FolderError(f"{folder}: not a directory")
    config = read_model_config(folder)
    ShardWeights(folder)  # a missing shard is refused before any work
    prompt = prompt_with_placeholders(prompt, len(images), len(videos))
    ids, types, inputs, image_stages = reference_inputs(folder, config, prompt, images, videos, video_fps)
    if crosscheck:
        hf_processor_check(folder, prompt, images, videos, ids, types, inputs, video_fps)
    layers = default_subset(config.text.num_hidden_layers) if layers is None else tuple(layers)
    blocks = default_subset(config.vision.depth, config.vision.fullatt_block_indexes) if blocks is None else tuple(
        blocks)

    def keep(stage):
        parts = stage.split(".")
        if stage.startswith("lm.layers."):
            return int(parts[2]) in layers
        if parts[0] in ("visual", "visual_video") and parts[1] == "blocks":
            return int(parts[2]) in blocks
        return True

    start = time.perf_counter()
    trace = run_reference(folder, config, ids, types, inputs, keep)
    log(f"reference float64 forward: {time.perf_counter() - start:.1f}s")
    errors = {}
    if crosscheck:
        start = time.perf_counter()
        errors = hf_crosscheck(folder, ids, types, inputs, trace)
        log(f"HF float32 cross-check: {time.perf_counter() - start:.1f}s")
        floor = rotary_floor(trace["position_ids"])
        bad = {stage: f"{error:.2e}" for stage, error in errors.items()
               if not error <= (max(bound, floor) if stage.startswith(("mrope_", "lm.")) else bound)}
        if bad:
            raise CheckpointCrosscheckError(f"{folder}: the reference differs from HF float32 beyond {bound:g} (text "
                                            f"rotary and language model: {max(bound, floor):.2g}) at {len(bad)} "
                                            f"stage(s): {bad}; nothing written")
    tensors = {**image_stages, **{k: np.asarray(v) for k, v in inputs.items()}, **trace}
    metadata = {"kind": "model", "checkpoint": str(folder.resolve()), "prompt": prompt, "config": config.to_dict(),
                "stored_layers": list(layers), "stored_blocks": list(blocks),
                "dtype": "float64 (reference), weights as stored in the shards",
                "hf_crosscheck": (f"Qwen2_5_VLForConditionalGeneration float32 fed mm_token_type_ids, every float "
                                  f"stage within {bound:g} (the text rotary and the language model within "
                                  f"max({bound:g}, 3 * largest position * 2**-24)); AutoProcessor outputs equal")
                                 if crosscheck else "none",
                "hf_float32_error": {k: float(f"{v:.3g}") for k, v in sorted(errors.items())}}
    metadata["stages"] = case_stages(tensors)
    return tensors, metadata, errors
