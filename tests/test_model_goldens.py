"""The whole-model goldens (kind "model": tiny Qwen2.5-VL models to the logits) and their HF folders."""

import functools

import numpy as np
import pytest
import torch
from transformers import Qwen2_5_VLForConditionalGeneration

import reference
from goldenlib import store
from goldenlib.cases import MODEL_CASES
from goldenlib.hf_model import hf_model_trace
from goldenlib.model_folders import MODELS, write_model_folder
from goldenlib.tolerances import GOLDEN_FLOAT64_REPRODUCE_BOUND, HF_CROSSCHECK_BOUND, rel_error

INPUTS = ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts")


@functools.cache
def golden(name):
    return store.read_case(name)


def inputs_of(tensors):
    return {name: tensors[name] for name in INPUTS if name in tensors}


@pytest.mark.parametrize("case", MODEL_CASES, ids=lambda c: c.name)
def test_golden_reproduces_from_its_inputs_and_seed(case):
    """The reference on the stored inputs and the seeded weights gives every stored stage again."""
    tensors, meta = golden(case.name)
    model = MODELS[meta["model"]]
    vision, text = model.weights()
    trace = {}
    reference.model_forward(tensors["input_ids"], vision, text, model.config, trace=trace, **inputs_of(tensors))
    stored = [name for name in tensors if name in trace]
    assert {"lm.inputs_embeds", "lm.norm", "lm.logits", "position_ids", "mrope_cos", "mrope_sin",
            "mm_token_type_ids"} <= set(stored)
    for name in stored:
        expected, actual = tensors[name], np.asarray(trace[name])
        assert actual.dtype == expected.dtype and actual.shape == expected.shape, name
        scale = max(1.0, float(np.abs(expected).max()))
        assert np.abs(actual.astype(np.float64) - expected).max() / scale <= GOLDEN_FLOAT64_REPRODUCE_BOUND, name


def test_stage_names():
    tensors, meta = golden("lm_two_images")
    depth = MODELS[meta["model"]].config.text.num_hidden_layers
    lm = {"lm.inputs_embeds", "lm.norm", "lm.logits"} | {f"lm.layers.{i}.{s}" for i in range(depth)
                                                          for s in ("attn_residual", "output")}
    assert lm <= set(tensors)
    assert {"visual.patch_embed", "visual.output", "visual.window_index"} <= set(tensors)
    assert "visual_video.output" in golden("lm_video")[0]
    assert not [k for k in golden("lm_text")[0] if k.startswith("visual")]


@pytest.mark.parametrize("case_name", ["lm_one_image", "lm_two_images"])  # one tied, one untied model
def test_hf_folder_loads_and_gives_the_golden_logits(tmp_path, case_name):
    tensors, meta = golden(case_name)
    folder = write_model_folder(meta["model"], tmp_path / meta["model"])
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(folder), dtype=torch.float32).eval()
    assert model.config.tie_word_embeddings == MODELS[meta["model"]].config.text.tie_word_embeddings
    hf = hf_model_trace(model, tensors["input_ids"], tensors["mm_token_type_ids"], tower=False, **inputs_of(tensors))
    for stage in ("lm.inputs_embeds", "lm.logits"):
        assert rel_error(tensors[stage], hf[stage]) <= HF_CROSSCHECK_BOUND, stage


def test_folder_bytes_are_reproducible(tmp_path):
    a, b = write_model_folder("lm_tied", tmp_path / "a"), write_model_folder("lm_tied", tmp_path / "b")
    assert sorted(p.name for p in a.iterdir()) == ["config.json", "merges.txt", "model.safetensors",
                                                   "preprocessor_config.json", "tokenizer_config.json", "vocab.json"]
    for path in a.iterdir():
        assert path.read_bytes() == (b / path.name).read_bytes(), path.name
