"""The NumPy vision tower (reference/) against HF's Qwen2_5_VisionTransformerPretrainedModel.

Metric everywhere: max relative error = max|ref - hf| / max|hf| per stage. The bounds in
STAGE_BOUNDS sit a little above the largest value measured over all tiny configs and grids
(float64 reference vs HF float32); a failure prints the whole per-stage table.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import Qwen2_5_VLVisionConfig
from transformers.activations import ACT2FN
from transformers.vision_utils import get_vision_cu_seqlens, get_vision_position_ids, get_vision_window_index

from goldenlib.hf_vision import build_hf_vision, hf_config_dict, hf_vision_trace
from goldenlib.tolerances import (ACTIVATION_VS_HF_BOUNDS, ERF_BOUNDS, FLOAT64_REORDER_BOUND, PLANTED_BUG_MIN_ERROR,
                                  REFERENCE_3B_VS_HF_BOUNDS, REFERENCE_FLOAT32_VS_HF_BOUND, REFERENCE_VS_HF_BOUNDS,
                                  rel_error as rel_err)
from reference import (PRESETS, SUPPORTED_ACTS, VisionConfig, full_cu_seqlens, load_weights, random_weights,
                       segment_attention, vision_forward, vision_weight_shapes, window_index)
from reference.activations import ACTIVATIONS, erf
from reference.vision import vision_position_ids

from checkpoint_folder import write_checkpoint as write_hf_folder
from helpers import GRIDS, TINY_CONFIGS

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- test configs and inputs

CONFIGS = TINY_CONFIGS
IMPLS = ("sdpa", "eager")

# stage family -> bound on max relative error, float64 reference vs HF float32 (see module doc)
STAGE_BOUNDS = REFERENCE_VS_HF_BOUNDS
INT_STAGES = ("window_index", "cu_seqlens", "cu_window_seqlens")


def family(stage: str) -> str:
    parts = stage.split(".")
    return f"blocks.*.{parts[2]}" if parts[0] == "blocks" else stage


@functools.cache
def weights_for(cfg_name: str):
    return random_weights(CONFIGS[cfg_name], seed=1234)


@functools.cache
def pixels_for(grid_name: str, patch_dim: int) -> np.ndarray:
    rows = sum(t * h * w for t, h, w in GRIDS[grid_name])
    rng = np.random.default_rng([7, zlib.crc32(grid_name.encode())])
    return rng.standard_normal((rows, patch_dim), dtype=np.float32)  # every row (and frame) differs


@functools.cache
def hf_model(cfg_name: str, impl: str):
    return build_hf_vision(CONFIGS[cfg_name], weights_for(cfg_name), attn_implementation=impl)


@functools.cache
def hf_trace(cfg_name: str, impl: str, grid_name: str) -> dict:
    cfg = CONFIGS[cfg_name]
    return hf_vision_trace(hf_model(cfg_name, impl), pixels_for(grid_name, cfg.patch_dim), GRIDS[grid_name])


@functools.cache
def ref_trace(cfg_name: str, grid_name: str, dtype: str = "float64") -> dict:
    cfg = CONFIGS[cfg_name]
    trace = {}
    out = vision_forward(pixels_for(grid_name, cfg.patch_dim), GRIDS[grid_name], weights_for(cfg_name), cfg,
                         dtype=np.dtype(dtype), trace=trace)
    assert out is trace["output"]
    return trace


def compare(ref: dict, hf: dict) -> dict[str, float]:
    """Stage -> max relative error; integer stages must be equal."""
    assert set(ref) == set(hf), set(ref) ^ set(hf)
    errs = {}
    for stage, b in hf.items():
        a = ref[stage]
        assert a.shape == b.shape, (stage, a.shape, b.shape)
        if stage in INT_STAGES:
            assert a.dtype == np.int64, (stage, a.dtype)
            assert np.array_equal(a, b), (stage, a.tolist(), b.tolist())
        else:
            errs[stage] = rel_err(a, b)
    return errs


def table(rows: dict[str, dict[str, float]], bounds: dict[str, float]) -> str:
    """Per-family max error for each column (grid), plus the bound."""
    cols = list(rows)
    fams = list(bounds)
    lines = [f"{'stage':<24}" + "".join(f"{c:>12}" for c in cols) + f"{'bound':>10}"]
    for fam in fams:
        vals = [max((v for s, v in rows[c].items() if family(s) == fam), default=float("nan")) for c in cols]
        lines.append(f"{fam:<24}" + "".join(f"{v:12.2e}" for v in vals) + f"{bounds[fam]:10.0e}")
    return "\n".join(lines)


def worst(rows: dict[str, dict[str, float]]) -> dict[str, float]:
    out = {}
    for errs in rows.values():
        for stage, v in errs.items():
            out[family(stage)] = max(out.get(family(stage), 0.0), v)
    return out


# ---------------------------------------------------------------- (a) VisionConfig


@pytest.mark.parametrize("kwargs, field", [
    (dict(depth=0), "depth"),
    (dict(depth=True), "depth"),
    (dict(depth=2.0), "depth"),
    (dict(hidden_size=-32), "hidden_size"),
    (dict(num_heads=0), "num_heads"),
    (dict(intermediate_size=0), "intermediate_size"),
    (dict(out_hidden_size=0), "out_hidden_size"),
    (dict(patch_size=0), "patch_size"),
    (dict(temporal_patch_size=0), "temporal_patch_size"),
    (dict(spatial_merge_size=0), "spatial_merge_size"),
    (dict(in_channels=0), "in_channels"),
    (dict(num_heads=3), "num_heads"),  # 32 / 3 is not an integer
    (dict(hidden_size=24, num_heads=4), "head_dim"),  # head_dim 6 is not a multiple of 4
    (dict(window_size=100), "window_size"),  # not a multiple of 28
    (dict(window_size=0), "window_size"),
    (dict(fullatt_block_indexes=(-1,)), "fullatt_block_indexes holds -1, negative"),
    (dict(fullatt_block_indexes=("a",)), "fullatt_block_indexes"),
    (dict(hidden_act="tanh"), "hidden_act"),
    (dict(rope_theta=0.0), "rope_theta"),
])
def test_config_validation_names_the_field(kwargs, field):
    base = dict(depth=3, hidden_size=32, num_heads=4, intermediate_size=40, out_hidden_size=24,
                fullatt_block_indexes=(0,))
    with pytest.raises(ValueError, match=field):
        VisionConfig(**{**base, **kwargs})


def test_fullatt_indexes_past_depth_warn_and_run_as_hf():
    """HF's tiny test configs keep the released (7, 15, 23, 31) at depth 2: HF runs them (no block
    matches, every block attends in windows); the reference warns, naming them, and runs the same."""
    sizes = dict(depth=2, hidden_size=32, num_heads=4, intermediate_size=40, out_hidden_size=24, window_size=112)
    with pytest.warns(UserWarning, match=r"fullatt_block_indexes holds \[7, 15, 23, 31\], at or past depth=2"):
        cfg = VisionConfig(**sizes)
    with pytest.warns(UserWarning, match=r"holds \[5\], at or past depth=2"):
        assert VisionConfig.from_hf({**sizes, "fullatt_block_indexes": [1, 5]}).fullatt_block_indexes == (1, 5)
    weights = random_weights(cfg, seed=99)
    model = build_hf_vision(cfg, weights)
    assert model.config.fullatt_block_indexes == [7, 15, 23, 31]
    rows = {}
    for g in ("12x20", "two_images"):
        px = pixels_for(g, cfg.patch_dim)
        trace = {}
        vision_forward(px, GRIDS[g], weights, cfg, dtype=np.dtype("float64"), trace=trace)
        rows[g] = compare(trace, hf_vision_trace(model, px, GRIDS[g]))
    report = table(rows, STAGE_BOUNDS)
    bad = {fam: v for fam, v in worst(rows).items() if not v <= STAGE_BOUNDS[fam]}
    assert not bad, f"stages over their bound: {bad}\n{report}"


@pytest.mark.parametrize("cfg", [*CONFIGS.values(), *PRESETS.values()], ids=[*CONFIGS, *PRESETS])
def test_config_from_hf_round_trip(cfg):
    hf = Qwen2_5_VLVisionConfig(**hf_config_dict(cfg))
    assert hf.hidden_size == cfg.hidden_size and hf.out_hidden_size == cfg.out_hidden_size  # the 3584 trap
    back = VisionConfig.from_hf(hf.to_dict())
    assert back == cfg
    # through JSON, as a saved config.json would be, and with string indexes (a known pitfall)
    d = json.loads(json.dumps(hf.to_dict()))
    d["fullatt_block_indexes"] = [str(i) for i in d["fullatt_block_indexes"]]
    assert VisionConfig.from_hf(d) == cfg
    assert VisionConfig.from_hf(d).fullatt_block_indexes == tuple(int(i) for i in cfg.fullatt_block_indexes)
    assert VisionConfig(**cfg.to_dict()) == cfg
    assert VisionConfig.from_hf(cfg.to_dict()) == cfg


def test_config_from_released_config_json_dict():
    # the "vision_config" of Qwen2.5-VL-7B-Instruct's config.json (note "in_chans", extra keys)
    released = {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14,
                "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
                "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "temporal_patch_size": 2,
                "model_type": "qwen2_5_vl"}
    assert VisionConfig.from_hf(released) == PRESETS["7b"]
    without = {k: v for k, v in released.items() if k != "hidden_size"}
    with pytest.raises(ValueError, match="hidden_size.*3584"):
        VisionConfig.from_hf(without)
    with pytest.raises(ValueError, match="fullatt_block_indexes"):
        VisionConfig.from_hf({**released, "fullatt_block_indexes": "7,15"})
    with pytest.raises(ValueError, match="hidden_act"):
        VisionConfig.from_hf({**released, "hidden_act": "relu"})


def test_presets():
    assert set(PRESETS) == {"3b", "7b", "32b", "72b"}
    outs = {"3b": 2048, "7b": 3584, "32b": 5120, "72b": 8192}
    for name, cfg in PRESETS.items():
        assert (cfg.depth, cfg.hidden_size, cfg.num_heads, cfg.intermediate_size, cfg.window_size) == \
            (32, 1280, 16, 3420, 112)
        assert cfg.fullatt_block_indexes == (7, 15, 23, 31) and cfg.head_dim == 80 and cfg.patch_dim == 1176
        assert cfg.out_hidden_size == outs[name]
        assert VisionConfig.preset(name) is cfg and VisionConfig.preset(name.upper()) is cfg
    assert VisionConfig.qwen2_5_vl_3b() is PRESETS["3b"] and VisionConfig.qwen2_5_vl_7b() is PRESETS["7b"]
    assert VisionConfig.qwen2_5_vl_32b() is PRESETS["32b"] and VisionConfig.qwen2_5_vl_72b() is PRESETS["72b"]
    with pytest.raises(ValueError, match="14b"):
        VisionConfig.preset("14b")


# ---------------------------------------------------------------- building blocks vs HF


def test_window_index_and_cu_seqlens_match_hf_on_many_grids():
    for window in (56, 112, 168, 224):
        for h in range(2, 32, 2):
            for w in range(2, 32, 2):
                for grid in ([[1, h, w]], [[2, h, w], [1, w + 2, h]]):
                    g = torch.tensor(grid)
                    hf_idx, hf_cu = get_vision_window_index(g, spatial_merge_size=2, window_size=window,
                                                            patch_size=14)
                    idx, cu = window_index(grid, window_size=window, patch_size=14, spatial_merge_size=2)
                    assert np.array_equal(idx, hf_idx.numpy()), (window, grid)
                    assert np.array_equal(cu, hf_cu.numpy()), (window, grid)
                    assert np.array_equal(np.sort(idx), np.arange(len(idx)))  # a permutation
                    if window == 112:
                        assert np.array_equal(full_cu_seqlens(grid), get_vision_cu_seqlens(g).numpy())
                        assert np.array_equal(vision_position_ids(grid, 2), get_vision_position_ids(g, 2).numpy())


@pytest.mark.parametrize("act", SUPPORTED_ACTS)
def test_activations_match_act2fn(act):
    x = np.concatenate([np.linspace(-30, 30, 60001), [0.0, -0.0, 1e-300, -800.0, 800.0]])
    want = ACT2FN[act](torch.from_numpy(x)).numpy()
    got = ACTIVATIONS[act](x)
    assert np.abs(got - want).max() <= ACTIVATION_VS_HF_BOUNDS["float64"] * np.abs(want).max()
    got32 = ACTIVATIONS[act](x.astype(np.float32))
    assert got32.dtype == np.float32
    assert np.abs(got32 - want).max() <= ACTIVATION_VS_HF_BOUNDS["float32"] * np.abs(want).max()


def test_one_activation_table():
    """VisionConfig accepts exactly the activations the reference computes, all of them HF's names."""
    assert SUPPORTED_ACTS == tuple(ACTIVATIONS)
    assert all(name in ACT2FN for name in ACTIVATIONS)
    with pytest.raises(ValueError, match="hidden_act='relu2'"):
        VisionConfig(depth=1, hidden_size=32, num_heads=2, intermediate_size=8, out_hidden_size=8,
                     fullatt_block_indexes=(0,), hidden_act="relu2")


def test_erf_matches_math_erf():
    x = np.concatenate([np.linspace(-8, 8, 160001), [0.0, 1.9999999, 2.0, 2.0000001, 40.0, -40.0]])
    want = np.array([math.erf(v) for v in x])
    assert np.abs(erf(x) - want).max() <= ERF_BOUNDS["float64"]  # a few ulp of 1
    assert np.abs(erf(x.astype(np.float32)) - want).max() <= ERF_BOUNDS["float32"]


def test_segment_attention_matches_dense_masked_attention_and_chunks():
    rng = np.random.default_rng(0)
    S, heads, d = 52, 3, 8
    q, k, v = (rng.standard_normal((S, heads, d)) for _ in range(3))
    cu = np.array([0, 16, 32, 36, 52, 52])  # equal lengths, a short one, an empty one
    seg = np.repeat(np.arange(5), np.diff(cu))
    scores = np.einsum("shd,thd->hst", q, k) / math.sqrt(d) + np.where(seg[:, None] == seg[None, :], 0, -np.inf)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    dense = np.einsum("hst,thd->shd", p / p.sum(-1, keepdims=True), v)
    got = segment_attention(q, k, v, cu)
    assert np.abs(got - dense).max() < FLOAT64_REORDER_BOUND
    chunked = segment_attention(q, k, v, cu, max_scores=100)  # forces segment and query-row chunks
    assert np.abs(chunked - got).max() < FLOAT64_REORDER_BOUND


# ---------------------------------------------------------------- (b) whole tower vs HF


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("cfg_name", CONFIGS)
def test_reference_matches_hf_stage_by_stage(cfg_name, impl):
    for g in GRIDS:
        assert all(v.dtype == (np.int64 if k in INT_STAGES else np.float64) for k, v in ref_trace(cfg_name, g).items())
    rows = {g: compare(ref_trace(cfg_name, g), hf_trace(cfg_name, impl, g)) for g in GRIDS}
    report = table(rows, STAGE_BOUNDS)
    print(f"\n{cfg_name} / {impl} (float64 reference vs HF float32):\n{report}")
    bad = {fam: v for fam, v in worst(rows).items() if not v <= STAGE_BOUNDS[fam]}
    assert not bad, f"stages over their bound: {bad}\n{report}"


FLOAT32_BOUND = REFERENCE_FLOAT32_VS_HF_BOUND  # float32 reference vs HF float32, any stage


@pytest.mark.parametrize("cfg_name", CONFIGS)
def test_float32_reference_matches_hf(cfg_name):
    rows = {}
    for g in GRIDS:
        ref = ref_trace(cfg_name, g, "float32")
        assert all(v.dtype == (np.int64 if k in INT_STAGES else np.float32) for k, v in ref.items())
        rows[g] = compare(ref, hf_trace(cfg_name, "sdpa", g))
    report = table(rows, {fam: FLOAT32_BOUND for fam in STAGE_BOUNDS})
    print(f"\n{cfg_name} (float32 reference vs HF float32 sdpa):\n{report}")
    assert max(worst(rows).values()) <= FLOAT32_BOUND, report


def test_comparison_has_teeth():
    """Plausible port bugs land far above the bounds."""
    cfg_name, g = "hd16_win56_full_last", "12x20"
    cfg, w = CONFIGS[cfg_name], weights_for(cfg_name)
    px, grid = pixels_for(g, cfg.patch_dim), GRIDS[g]
    hf_out = hf_trace(cfg_name, "sdpa", g)["output"]
    all_full = dataclasses.replace(cfg, fullatt_block_indexes=tuple(range(cfg.depth)))  # no windows
    assert rel_err(vision_forward(px, grid, w, all_full), hf_out) > PLANTED_BUG_MIN_ERROR
    no_bias = {**w, "blocks.1.attn.qkv.bias": np.zeros_like(w["blocks.1.attn.qkv.bias"])}
    assert rel_err(vision_forward(px, grid, no_bias, cfg), hf_out) > PLANTED_BUG_MIN_ERROR
    other_theta = dataclasses.replace(cfg, rope_theta=1000.0)
    assert rel_err(vision_forward(px, grid, w, other_theta), hf_out) > PLANTED_BUG_MIN_ERROR


def test_vision_forward_input_errors():
    cfg = CONFIGS["hd8_win112_full_first"]
    w = weights_for("hd8_win112_full_first")
    px = pixels_for("10x10", cfg.patch_dim)
    with pytest.raises(ValueError, match="pixel_values"):
        vision_forward(px[:-4], [[1, 10, 10]], w, cfg)
    with pytest.raises(ValueError, match="spatial_merge_size"):
        vision_forward(px[:90], [[1, 9, 10]], w, cfg)
    broken = {k: v for k, v in w.items() if k != "blocks.2.mlp.up_proj.bias"}
    broken["merger.mlp.0.weight"] = broken["merger.mlp.0.weight"][:, :-1]
    with pytest.raises(ValueError, match=r"(?s)blocks\.2\.mlp\.up_proj\.bias.*merger\.mlp\.0\.weight"):
        vision_forward(px, [[1, 10, 10]], broken, cfg)


@pytest.mark.slow
def test_full_size_tower_matches_hf():
    """The released 3B tower's sizes (hidden 1280, depth 32, head_dim 80) on a 6x10-patch image, with the
    full_size_3b golden's seeded weights (made once per session: parity.cases.full_weights)."""
    from parity.cases import full_weights

    cfg = PRESETS["3b"]
    w = full_weights("3b")
    grid = [[1, 6, 10]]
    px = np.random.default_rng(5).standard_normal((60, cfg.patch_dim), dtype=np.float32)
    hf = hf_vision_trace(build_hf_vision(cfg, w, "sdpa"), px, grid)
    ref = {}
    vision_forward(px, grid, w, cfg, trace=ref)
    rows = {"6x10": compare(ref, hf)}
    bounds = REFERENCE_3B_VS_HF_BOUNDS  # measured values: in goldenlib/tolerances.py
    report = table(rows, bounds)
    scale = max(np.abs(hf[f"blocks.{i}.output"]).max() for i in range(cfg.depth))
    print(f"\nfull-size 3B tower, float64 reference vs HF float32 sdpa (max |block output| {scale:.1f}):\n{report}")
    assert 1 < scale < 100  # random weights keep activations O(1)-O(10) through 32 blocks
    bad = {fam: v for fam, v in worst(rows).items() if not v <= bounds[fam]}
    assert not bad, f"{bad}\n{report}"


# ---------------------------------------------------------------- (c) random weights


def test_random_weights_reproducible_and_all_random():
    cfg = CONFIGS["hd24_win168_full_mid_last"]
    a, b, c = random_weights(cfg, 3), random_weights(cfg, 3), random_weights(cfg, 4)
    shapes = vision_weight_shapes(cfg)
    assert list(a) == list(shapes)
    for name, shape in shapes.items():
        assert a[name].shape == shape and a[name].dtype == np.float32
        assert np.array_equal(a[name], b[name])
        assert not np.array_equal(a[name], c[name])
        assert np.unique(a[name]).size > 0.9 * a[name].size  # non-constant, no structure
        assert np.isfinite(a[name]).all()
    # per-name streams: a tensor's values do not depend on the rest of the config
    deeper = random_weights(dataclasses.replace(cfg, depth=6, fullatt_block_indexes=(5,)), 3)
    assert np.array_equal(deeper["blocks.2.attn.qkv.weight"], a["blocks.2.attn.qkv.weight"])
    # scales: matrices ~ 1/sqrt(fan_in), norms ~ 1, biases small
    assert abs(a["blocks.0.mlp.down_proj.weight"].std() * math.sqrt(cfg.intermediate_size) - 1) < 0.1
    assert abs(a["blocks.0.norm1.weight"].mean() - 1) < 0.1
    assert np.abs(a["blocks.0.attn.qkv.bias"]).max() < 0.5
    with pytest.raises(ValueError, match="seed"):
        random_weights(cfg, -1)


# ---------------------------------------------------------------- (d) checkpoint loading

TINY = CONFIGS["hd8_win112_full_first"]


def released_style_config(cfg: VisionConfig) -> dict:
    vc = {k: v for k, v in hf_config_dict(cfg).items() if k not in ("in_channels", "rope_parameters")}
    vc.update(in_chans=cfg.in_channels, spatial_patch_size=cfg.patch_size, tokens_per_second=2,
              model_type="qwen2_5_vl")
    return {"architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
            "hidden_size": 64, "vision_config": vc}


def write_checkpoint(folder: Path, weights: dict, prefix: str = "visual.", shards: int = 2,
                     dtype=torch.bfloat16) -> dict[str, torch.Tensor]:
    return write_hf_folder(folder, weights, vision_config=released_style_config(TINY)["vision_config"],
                           prefix=prefix, shards=shards, dtype=dtype)


@pytest.mark.parametrize("prefix, shards, dtype", [("visual.", 3, torch.bfloat16),
                                                   ("model.visual.", 1, torch.bfloat16),
                                                   ("visual.", 1, torch.float16),
                                                   ("model.visual.", 2, torch.float32),
                                                   ("visual.", 1, torch.float64)])
def test_load_weights_equals_rounded_weights(tmp_path, prefix, shards, dtype):
    w = random_weights(TINY, 0)
    written = write_checkpoint(tmp_path / "ckpt", w, prefix, shards, dtype)
    cfg, loaded = load_weights(tmp_path / "ckpt")
    assert cfg == TINY
    assert set(loaded) == set(w)
    for name in w:
        want = written[prefix + name].float().numpy() if dtype != torch.float64 else written[prefix + name].numpy()
        assert loaded[name].dtype == want.dtype and loaded[name].shape == want.shape
        assert np.array_equal(loaded[name], want), name
        if dtype == torch.bfloat16:
            assert not np.array_equal(loaded[name], w[name])  # really rounded, not the float32 originals


def test_patch_embed_as_linear_loads_and_runs_like_conv3d(tmp_path):
    """Newer transformers releases keep the patch embedding as a Linear [hidden, C*tp*p*p]; the
    reference takes it as the Conv3d [hidden, C, tp, p, p] it flattens, with the same numbers."""
    w = random_weights(TINY, 0)
    flat = {**w, "patch_embed.proj.weight": w["patch_embed.proj.weight"].reshape(TINY.hidden_size, -1)}
    write_checkpoint(tmp_path / "ckpt", flat, "visual.", 1, torch.float32)
    _, loaded = load_weights(tmp_path / "ckpt")
    assert loaded["patch_embed.proj.weight"].ndim == 2
    grid = np.array(GRIDS["12x20"])
    pixels = np.random.default_rng(0).standard_normal((int(grid.prod()), TINY.patch_dim)).astype(np.float32)
    assert np.array_equal(vision_forward(pixels, grid, loaded, TINY), vision_forward(pixels, grid, w, TINY))


def test_load_weights_lists_all_key_problems(tmp_path):
    w = dict(random_weights(TINY, 0))
    del w["blocks.1.attn.proj.bias"], w["merger.ln_q.weight"]
    w["blocks.0.attn.extra.weight"] = np.ones(3, np.float32)
    w["blocks.2.mlp.up_proj.weight"] = w["blocks.2.mlp.up_proj.weight"][:-1]
    w["patch_embed.proj.weight"] = w["patch_embed.proj.weight"].reshape(TINY.hidden_size, -1)[:, 1:]  # not C*tp*p*p
    write_checkpoint(tmp_path / "c", w, shards=2)
    with pytest.raises(ValueError) as e:
        load_weights(tmp_path / "c")
    msg = str(e.value)
    for needle in ("2 missing", "blocks.1.attn.proj.bias", "merger.ln_q.weight", "1 unexpected",
                   "blocks.0.attn.extra.weight", "2 wrongly shaped", "blocks.2.mlp.up_proj.weight",
                   "patch_embed.proj.weight"):
        assert needle in msg, (needle, msg)


def test_load_weights_file_errors(tmp_path):
    w = random_weights(TINY, 0)

    def expect(folder, pattern):
        with pytest.raises(ValueError, match=pattern):
            load_weights(folder)

    expect(tmp_path / "nowhere", "not a directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    expect(empty, "config.json")
    (empty / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    expect(empty, "vision_config")
    (empty / "config.json").write_text("{not json")
    expect(empty, "config.json.*JSON")
    (empty / "config.json").write_text(json.dumps(released_style_config(TINY)))
    expect(empty, "no model.safetensors")
    (empty / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    expect(empty, "pickle")

    good = tmp_path / "good"
    write_checkpoint(good, w, shards=1)
    data = (good / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])

    def corrupt(name, blob, pattern):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(released_style_config(TINY)))
        (folder / "model.safetensors").write_bytes(blob)
        with pytest.raises(ValueError, match=pattern) as e:
            load_weights(folder)
        assert "model.safetensors" in str(e.value)

    corrupt("short", data[:5], "header length")
    corrupt("bad_len", struct.pack("<Q", len(data) * 2) + data[8:], "header length")
    corrupt("bad_json", data[:8] + b"#" + data[9:], "not JSON")
    h2 = dict(header)
    key = "visual.blocks.0.norm1.weight"
    h2[key] = {**h2[key], "data_offsets": [len(data), len(data) + 2 * TINY.hidden_size]}
    raw = json.dumps(h2).encode()
    corrupt("bad_offsets", struct.pack("<Q", len(raw)) + raw + data[8 + n:], "outside")
    corrupt("truncated", data[:-100], "outside")

    nan = dict(w)
    nan["blocks.1.mlp.down_proj.bias"] = nan["blocks.1.mlp.down_proj.bias"].copy()
    nan["blocks.1.mlp.down_proj.bias"][3] = np.inf
    write_checkpoint(tmp_path / "nan", nan, shards=2)
    expect(tmp_path / "nan", "blocks.1.mlp.down_proj.bias.*Inf")

    both = tmp_path / "both"
    tensors = {"visual." + k: torch.from_numpy(v) for k, v in w.items()}
    tensors["model.visual.merger.ln_q.weight"] = torch.from_numpy(w["merger.ln_q.weight"].copy())
    both.mkdir()
    (both / "config.json").write_text(json.dumps(released_style_config(TINY)))
    save_file(tensors, str(both / "model.safetensors"))
    expect(both, "twice")

    missing_shard = tmp_path / "missing_shard"
    write_checkpoint(missing_shard, w, shards=2)
    os.remove(missing_shard / "model-00002-of-00002.safetensors")
    expect(missing_shard, "shards that are not there")


# ---------------------------------------------------------------- (e) numpy only


@pytest.mark.slow  # subprocess
def test_reference_imports_no_frameworks():
    code = ("import sys, reference, reference.vision, reference.checkpoint, reference.weights, reference.fast, "
            "reference.activations, reference.validate, reference.bicubic, reference.color, reference.smart_resize, "
            "reference.vision_config, reference.rope_index, reference.mrope, reference.vision_tokens; "
            "bad = [m for m in ('torch', 'PIL', 'transformers', 'safetensors') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
