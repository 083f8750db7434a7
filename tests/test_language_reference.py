"""The NumPy language model and whole-model forward (reference.model_forward) against HF's
Qwen2_5_VLForConditionalGeneration on tiny random models (tests/hf_tiny_vl.py), fed mm_token_type_ids.

Every stage (positions, rotary tables, the scattered embeddings, each layer's attention residual and
output, the final norm, the logits) is compared with HF's float32 model; the logits also with HF's
"float64" model, which still computes RMSNorm and the rotary in float32.
"""

import functools

import numpy as np
import pytest
import torch

import reference
from goldenlib.hf_model import hf_model_trace
from goldenlib.tolerances import (LM_REFERENCE_VS_HF_FLOAT32_BOUND, LM_REFERENCE_VS_HF_FLOAT64_BOUND,
                                  PLANTED_BUG_MIN_ERROR, rel_error)
from hf_tiny_vl import IMAGE_PAD, VIDEO_PAD, hf_model, pixel_values, text_ids, token_types, vision_run

CONFIGS = ("tied_gqa", "untied_mha", "untied_gqa_hd8")
PROMPTS = ("text", "image", "two_images", "video", "padded_batch")


def prompt(name, seed=0):
    """(input_ids [b, s], keyword inputs of the forward) of a named prompt; float64 pixel values."""
    g = torch.Generator().manual_seed(seed)
    kw = {}
    if name == "text":
        rows = [text_ids(11, g)]
    elif name == "image":
        grid = [[1, 4, 6]]
        rows = [text_ids(3, g) + vision_run(grid[0]) + text_ids(4, g)]
        kw = dict(pixel_values=pixel_values(grid, g), image_grid_thw=torch.tensor(grid))
    elif name == "two_images":
        grid = [[1, 4, 4], [1, 6, 2]]
        rows = [text_ids(2, g) + vision_run(grid[0]) + text_ids(2, g) + vision_run(grid[1]) + text_ids(3, g)]
        kw = dict(pixel_values=pixel_values(grid, g), image_grid_thw=torch.tensor(grid))
    elif name == "video":
        grid = [[2, 4, 4]]
        rows = [text_ids(2, g) + vision_run(grid[0], pad=VIDEO_PAD) + text_ids(3, g)]
        kw = dict(pixel_values_videos=pixel_values(grid, g), video_grid_thw=torch.tensor(grid),
                  second_per_grid_ts=torch.tensor([1.5]))
    else:  # a left-padded batch of two, one image each
        grid = [[1, 4, 4], [1, 4, 4]]
        rows = [[0, 0, 0] + text_ids(2, g) + vision_run(grid[0]) + text_ids(1, g),
                text_ids(3, g) + vision_run(grid[1]) + text_ids(3, g)]
        kw = dict(pixel_values=pixel_values(grid, g), image_grid_thw=torch.tensor(grid),
                  attention_mask=torch.tensor([[0] * 3 + [1] * (len(rows[0]) - 3), [1] * len(rows[1])]))
    ids = torch.tensor(rows)
    return ids, {k: (v.double() if v.is_floating_point() and k != "second_per_grid_ts" else v) for k, v in kw.items()}


@functools.cache
def model(name, dtype=torch.float32):
    return hf_model(name).to(dtype)


@functools.cache
def weights(name):
    config = reference.ModelConfig.from_hf(model(name).config.to_dict())
    vision, text = reference.split_model_weights({k: v.numpy() for k, v in model(name).state_dict().items()})
    return config, vision, text


def run_reference(name, ids, kw, **overrides):
    config, vision, text = weights(name)
    trace = {}
    inputs = {k: v.numpy() for k, v in kw.items()}
    reference.model_forward(ids.numpy(), vision, text, overrides.pop("config", config), trace=trace,
                            **{**inputs, **overrides})
    return trace


@functools.cache
def hf_stages(name, prompt_name, dtype=torch.float32):
    ids, kw = prompt(prompt_name)
    return hf_model_trace(model(name, dtype), ids.numpy(), token_types(ids).numpy(), tower=False,
                          **{k: v.numpy() for k, v in kw.items()})


def real_rows(stage, value, kw):
    """The rows of a [b, s, ...] stage at real tokens (padded queries are not specified)."""
    mask = kw.get("attention_mask")
    if mask is None or not stage.startswith("lm.") or stage == "lm.inputs_embeds":
        return value
    return value[mask.numpy() != 0]


@pytest.mark.parametrize("prompt_name", PROMPTS)
@pytest.mark.parametrize("name", CONFIGS)
def test_every_stage_matches_hf_float32(name, prompt_name):
    ids, kw = prompt(prompt_name)
    ours, hf = run_reference(name, ids, kw), hf_stages(name, prompt_name)
    depth = model(name).config.text_config.num_hidden_layers
    lm = ["lm.inputs_embeds", *[f"lm.layers.{i}.{s}" for i in range(depth) for s in ("attn_residual", "output")],
          "lm.norm", "lm.logits"]
    assert set(lm) | {"position_ids", "mrope_cos", "mrope_sin"} <= set(ours)
    np.testing.assert_array_equal(ours["position_ids"], hf["position_ids"])
    np.testing.assert_array_equal(ours["mm_token_type_ids"], token_types(ids).numpy())
    errors = {stage: rel_error(real_rows(stage, ours[stage], kw), real_rows(stage, hf[stage], kw))
              for stage in lm + ["mrope_cos", "mrope_sin"]}
    bad = {stage: f"{error:.2e}" for stage, error in errors.items() if not error <= LM_REFERENCE_VS_HF_FLOAT32_BOUND}
    assert not bad, f"beyond {LM_REFERENCE_VS_HF_FLOAT32_BOUND:g}: {bad}"


@pytest.mark.parametrize("prompt_name", ["image", "two_images", "video"])
def test_logits_match_hf_float64(prompt_name):
    ids, kw = prompt(prompt_name)
    ours = run_reference("untied_gqa_hd8", ids, kw)["lm.logits"]
    theirs = hf_stages("untied_gqa_hd8", prompt_name, torch.float64)["lm.logits"]
    error = rel_error(real_rows("lm.logits", ours, kw), real_rows("lm.logits", theirs, kw))
    assert error <= LM_REFERENCE_VS_HF_FLOAT64_BOUND


def test_tower_stages_are_the_towers_trace():
    """visual.* / visual_video.* are vision_forward's trace of the images' and the videos' runs."""
    ids, kw = prompt("image")
    trace = run_reference("tied_gqa", ids, kw)
    config, vision, _ = weights("tied_gqa")
    alone = {}
    reference.vision_forward(kw["pixel_values"].numpy(), kw["image_grid_thw"].numpy(), vision, config.vision,
                             trace=alone)
    assert {k for k in trace if k.startswith("visual.")} == {"visual." + k for k in alone}
    np.testing.assert_array_equal(trace["visual.output"], alone["output"])
    rows = trace["lm.inputs_embeds"][ids.numpy() == IMAGE_PAD]
    np.testing.assert_array_equal(rows, alone["output"])
    video_ids, video_kw = prompt("video")
    assert "visual_video.output" in run_reference("tied_gqa", video_ids, video_kw)


def test_weight_names_and_shapes_are_hfs():
    for name in CONFIGS:
        config, _, text = weights(name)
        expected = reference.text_weight_shapes(config.text)
        hf = {k: tuple(v.shape) for k, v in text.items() if not (k == "lm_head.weight" and config.text.tie_word_embeddings)}
        assert hf == expected


def test_planted_mistakes_move_the_logits():
    """What ports get wrong here moves the logits far beyond the bounds (the reference sees the difference)."""
    ids, kw = prompt("two_images")
    good = run_reference("tied_gqa", ids, kw)["lm.logits"]
    config = weights("tied_gqa")[0]
    text = config.text
    mistakes = {
        # HF 5.x without mm_token_type_ids: 0..s-1 on all three rows
        "1-D positions": dict(position_ids=np.arange(ids.shape[1])[None, None].repeat(3, 0)),
        "pixel rows shifted by one merged token": dict(pixel_values=np.roll(kw["pixel_values"].numpy(), 4, axis=0)),
        "rotary sections permuted": dict(config=reference.ModelConfig(
            config.vision, reference.TextConfig(**{**text.to_dict(), "mrope_section": text.mrope_section[::-1]}),
            config.image_token_id, config.video_token_id, config.vision_start_token_id, config.tokens_per_second)),
        "norm eps 1e-5 -> 1e-3": dict(config=reference.ModelConfig(
            config.vision, reference.TextConfig(**{**text.to_dict(), "rms_norm_eps": 1e-3}),
            config.image_token_id, config.video_token_id, config.vision_start_token_id, config.tokens_per_second)),
    }
    for what, change in mistakes.items():
        bad = run_reference("tied_gqa", ids, kw, **change)["lm.logits"]
        assert rel_error(bad, good) > PLANTED_BUG_MIN_ERROR, what


def test_bad_inputs_are_named():
    ids, kw = prompt("image")
    config, vision, text = weights("tied_gqa")
    inputs = {k: v.numpy() for k, v in kw.items()}
    fewer = ids.numpy()[:, [i for i in range(ids.shape[1]) if i != 5]]  # one image placeholder dropped
    with pytest.raises(ValueError, match="placeholder"):
        reference.model_forward(fewer, vision, text, config, **inputs)
    with pytest.raises(ValueError, match="go together"):
        reference.model_forward(ids.numpy(), vision, text, config, pixel_values=inputs["pixel_values"])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        reference.model_forward(ids.numpy() + 1000, vision, text, config, **inputs)
    with pytest.raises(ValueError, match="layers.0.self_attn.k_proj.weight"):
        reference.model_forward(ids.numpy(), vision, {**text, "layers.0.self_attn.k_proj.weight": np.zeros((3, 3))},
                                config, **inputs)
    with pytest.raises(ValueError, match="num_key_value_heads"):
        reference.TextConfig.from_hf({k: v for k, v in model("tied_gqa").config.to_dict()["text_config"].items()
                                      if k != "num_key_value_heads"})
