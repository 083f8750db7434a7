"""The torch port of the Qwen2.5-VL vision encoder against HF Transformers' own model.

HF ``Qwen2_5_VisionTransformerPretrainedModel`` (float32, sdpa) is built for several tiny configs
with HF's own random init (``initializer_range`` raised so attention is far from uniform, and
every norm weight and bias perturbed away from 1/0); the port gets the same weights through
``load_hf_vision`` and must match ``pooler_output``. Errors are ``max|port - hf| / max|hf|``.

Run with ``-s`` to see the measured errors.
"""

import json

import pytest
import torch
from transformers import Qwen2_5_VLVisionConfig
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel
from transformers.vision_utils import get_vision_cu_seqlens, get_vision_position_ids, get_vision_window_index

from parity.implementations import port_block, port_stages
from reference.vision import patch_rows
from torch_port import (
    Qwen2_5_VisionMLP,
    Qwen2_5_VisionRMSNorm,
    Qwen2_5_VisionRotaryEmbedding,
    load_hf_checkpoint,
    load_hf_vision,
    qwen2_5_vision_hf_to_tune,
    qwen2_5_vision_tune_to_hf,
    qwen2_5_vl_3b_vision_encoder,
    qwen2_5_vl_7b_vision_encoder,
    qwen2_5_vl_32b_vision_encoder,
    qwen2_5_vl_72b_vision_encoder,
    qwen2_5_vl_image_transform,
)
from torch_port._hf_config import HF_OPTIONAL_DEFAULTS, HF_REQUIRED_DEFAULTS
from torch_port._hf_processor import image_transform_kwargs as _transform_kwargs

from goldenlib.tolerances import (PORT_CUDA_3B_BFLOAT16_FACTOR_MARGIN, PORT_CUDA_3B_FLOAT32_BOUND, PORT_FLOAT32_VS_HF_BOUND,
                                  PORT_LOW_PRECISION_VS_HF_BOUNDS, PORT_MLP_ORIENTATION_BOUND,
                                  PORT_STAGE_ALONE_VS_FORWARD_BOUND)
from goldenlib.tolerances import rel_error as rel_err

from helpers import GRIDS, TINY_CONFIGS, hf_sizes
from checkpoint_folder import PREPROCESSOR_JSON, VISION_CONFIG_JSON, write_checkpoint

FP32_TOL = PORT_FLOAT32_VS_HF_BOUND  # measured values: in goldenlib/tolerances.py
# low-precision bounds vs HF fp32 (measured values: in goldenlib/tolerances.py)
LOW_TOL = {getattr(torch, name): bound for name, bound in PORT_LOW_PRECISION_VS_HF_BOUNDS.items()}

# tiny configs: every one has at least one full-attention and one window block
CONFIGS = {name: hf_sizes(name) for name in TINY_CONFIGS}  # HF keyword arguments per tiny config


def make_config(name: str) -> Qwen2_5_VLVisionConfig:
    sizes = CONFIGS[name]
    config = Qwen2_5_VLVisionConfig(**sizes, initializer_range=1.5 / sizes["hidden_size"] ** 0.5)
    config._attn_implementation = "sdpa"
    return config


_HF_MODELS: dict[str, Qwen2_5_VisionTransformerPretrainedModel] = {}


def hf_model(name: str) -> Qwen2_5_VisionTransformerPretrainedModel:
    """HF model with HF's random init, norm weights and biases perturbed (cached per config)."""
    if name not in _HF_MODELS:
        torch.manual_seed(sorted(CONFIGS).index(name))
        model = Qwen2_5_VisionTransformerPretrainedModel(make_config(name)).eval()
        with torch.no_grad():
            for key, p in model.named_parameters():
                if key.endswith("bias"):
                    p.add_(0.1 * torch.randn_like(p))
                elif "norm" in key or "ln_q" in key:
                    p.mul_(1 + 0.2 * torch.randn_like(p))
        _HF_MODELS[name] = model
    return _HF_MODELS[name]


def inputs(name: str, grid: list, dtype=torch.float32, seed: int = 0):
    config = make_config(name)
    g = torch.tensor(grid)
    n = int((g[:, 0] * g[:, 1] * g[:, 2]).sum())
    dim = config.in_channels * config.temporal_patch_size * config.patch_size**2
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=gen).to(dtype), g


@pytest.fixture(scope="module")
def ports():
    return {name: load_hf_vision(make_config(name).to_dict(), hf_model(name).state_dict()) for name in CONFIGS}


# ------------------------------------------------------------------ layout vs HF
@pytest.mark.parametrize(
    "grid",
    [
        [[1, 8, 8]],
        [[1, 10, 10]],
        [[1, 12, 20]],
        [[3, 18, 10]],
        [[1, 16, 16]],
        [[1, 8, 12], [2, 10, 6], [1, 2, 2]],
        [[1, 34, 14]],
    ],
)
@pytest.mark.parametrize("window_size", [56, 112, 168])
def test_layout_matches_hf(grid, window_size):
    g = torch.tensor(grid)
    port = make_port_like(window_size)
    layout = port.layout(g)
    window_index, cu_window = get_vision_window_index(g, spatial_merge_size=2, window_size=window_size, patch_size=14)
    assert torch.equal(layout.window_index, window_index)
    assert torch.equal(layout.cu_window_seqlens, cu_window) and layout.cu_window_seqlens.dtype == torch.int32
    assert torch.equal(layout.cu_seqlens, get_vision_cu_seqlens(g))
    assert torch.equal(layout.position_ids, get_vision_position_ids(g, 2))
    # the segment groups partition the rows exactly as cu_window_seqlens / cu_seqlens do
    for groups, cu in ((layout.window_segments, cu_window), (layout.full_segments, layout.cu_seqlens)):
        rows = []
        for group in groups:
            idx = (
                torch.arange(group.count * group.length).view(group.count, group.length) + group.start
                if group.index is None
                else group.index
            )
            rows += [tuple(r) for r in idx.tolist()]
        expected = [tuple(range(a, b)) for a, b in zip(cu[:-1].tolist(), cu[1:].tolist())]
        assert sorted(rows) == sorted(expected)


def make_port_like(window_size: int):
    from torch_port import qwen2_5_vision_encoder

    with torch.device("meta"):
        return qwen2_5_vision_encoder(
            num_layers=1,
            embed_dim=16,
            num_heads=2,
            intermediate_dim=8,
            out_dim=8,
            patch_size=14,
            temporal_patch_size=2,
            spatial_merge_size=2,
            window_size=window_size,
            fullatt_block_indexes=[0],
            in_channels=3,
        )


def test_rotary_bit_equal_to_hf():
    for name in CONFIGS:
        hf = hf_model(name)
        g = torch.tensor([[2, 12, 20], [1, 6, 4]])
        pos = get_vision_position_ids(g, 2)
        cos_hf, sin_hf = hf.rotary_pos_emb(torch.empty(0), pos)
        rope = Qwen2_5_VisionRotaryEmbedding(hf.config.hidden_size // hf.config.num_heads)
        cos, sin = rope(pos)
        assert torch.equal(cos, cos_hf) and torch.equal(sin, sin_hf)
        assert torch.equal(rope.inv_freq(), hf.rotary_pos_emb.inv_freq)
    assert list(rope.state_dict()) == []  # nothing persistent


# ------------------------------------------------------------ float32 parity
@pytest.mark.parametrize("grid", list(GRIDS), ids=list(GRIDS))
@pytest.mark.parametrize("name", list(CONFIGS))
def test_fp32_matches_hf(ports, name, grid):
    hf, port = hf_model(name), ports[name]
    px, g = inputs(name, GRIDS[grid])
    with torch.no_grad():
        ref = hf(px, g).pooler_output
        out = port(px, g)
    assert out.shape == ref.shape == (px.shape[0] // 4, hf.config.out_hidden_size)
    err = rel_err(out, ref)
    print(f"\nfp32 {name:20s} {grid:9s} rel err {err:.2e}")
    assert err < FP32_TOL, f"{name} {grid}: rel err {err:.3e} >= {FP32_TOL}"


def test_fullatt_indexes_past_depth_warn_and_run_as_hf():
    """HF's tiny test configs keep the released (7, 15, 23, 31) at depth 2; HF runs them (no block
    matches, every block attends in windows); the port warns, naming them, and gives HF's output."""
    config = Qwen2_5_VLVisionConfig(depth=2, hidden_size=32, num_heads=4, intermediate_size=40, out_hidden_size=24,
                                    window_size=112)
    assert list(config.fullatt_block_indexes) == [7, 15, 23, 31]
    config._attn_implementation = "sdpa"
    torch.manual_seed(5)
    hf = Qwen2_5_VisionTransformerPretrainedModel(config).eval()
    with pytest.warns(UserWarning, match=r"fullatt_block_indexes holds \[7, 15, 23, 31\], at or past depth=2"):
        port = load_hf_vision(config.to_dict(), hf.state_dict())
    g = torch.tensor(GRIDS["two_images"])
    px = torch.randn(int(g.prod(-1).sum()), 3 * 2 * 14 * 14, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        err = rel_err(port(px, g), hf(px, g).pooler_output)
    assert err < FP32_TOL, f"rel err {err:.3e} >= {FP32_TOL}"


def test_fp32_parity_is_discriminating(ports):
    """Attention segments and rotary matter far above the tolerance for these weights."""
    name = "hd16_win112_full_last"
    hf, port = hf_model(name), ports[name]
    px, g = inputs(name, GRIDS["12x20"])
    with torch.no_grad():
        ref = hf(px, g).pooler_output
        saved_full, saved_rope = port.fullatt_block_indexes, port.rope
        try:
            port.fullatt_block_indexes = tuple(range(len(port.layers)))  # no window blocks
            err_no_windows = rel_err(port(px, g), ref)
            port.fullatt_block_indexes = saved_full
            port.rope = Qwen2_5_VisionRotaryEmbedding(saved_rope.head_dim, base=100.0)
            err_other_rope = rel_err(port(px, g), ref)
        finally:
            port.fullatt_block_indexes, port.rope = saved_full, saved_rope
    print(f"\nwithout windows: {err_no_windows:.2e}; rope base 100: {err_other_rope:.2e}")
    assert err_no_windows > 1e-2 and err_other_rope > 1e-2


# ------------------------------------------------------------- stages vs HF
@pytest.mark.parametrize("name", list(CONFIGS))
def test_stages_match_hf_and_teacher_forcing(ports, name):
    hf, port = hf_model(name), ports[name]
    px, g = inputs(name, [[1, 12, 20], [2, 6, 10]])
    with torch.no_grad():
        out, stages = port_stages(port, px, g)  # forward hooks on the public submodules
        ref = hf(px, g, output_hidden_states=True)
        window_index, cu_window = get_vision_window_index(
            g, spatial_merge_size=2, window_size=hf.config.window_size, patch_size=hf.config.patch_size
        )
        order = torch.from_numpy(patch_rows(window_index.numpy(), 4))  # window-order row -> original row
        cos_hf, sin_hf = hf.rotary_pos_emb(px, get_vision_position_ids(g, 2))
        ln_q_hf = hf.merger.ln_q(ref.last_hidden_state)

    depth = len(port.layers)
    expected = {f"blocks.{i}.{s}" for i in range(depth) for s in ("attn_residual", "output")}
    expected |= {
        "patch_embed",
        "rotary_cos",
        "rotary_sin",
        "window_index",
        "cu_seqlens",
        "cu_window_seqlens",
        "merger.ln_q",
        "output",
    }
    assert set(stages) == expected
    assert torch.equal(stages["output"], out)
    assert torch.equal(stages["window_index"], window_index)
    assert torch.equal(stages["cu_window_seqlens"], cu_window)
    assert torch.equal(stages["cu_seqlens"], get_vision_cu_seqlens(g))
    assert torch.equal(stages["rotary_cos"], cos_hf) and torch.equal(stages["rotary_sin"], sin_hf)
    errs = {"patch_embed": rel_err(stages["patch_embed"][order], ref.hidden_states[0])}
    for i in range(depth):
        errs[f"blocks.{i}.output"] = rel_err(stages[f"blocks.{i}.output"][order], ref.hidden_states[i + 1])
    errs["merger.ln_q"] = rel_err(stages["merger.ln_q"][order], ln_q_hf)
    table = "\n".join(f"  {k:24s} {v:.2e}" for k, v in errs.items())
    print(f"\nstages {name}:\n{table}")
    assert max(errs.values()) < FP32_TOL, f"stage errors vs HF:\n{table}"

    # teacher forcing: each stage alone (composed from the public submodules), fed the previous
    # stage's recorded output
    with torch.no_grad():
        assert rel_err(port.patch_embed(px), stages["patch_embed"]) == 0
        prev = stages["patch_embed"]
        for i in range(depth):
            one = port_block(port, i, prev, g)
            assert rel_err(one["output"], stages[f"blocks.{i}.output"]) < PORT_STAGE_ALONE_VS_FORWARD_BOUND
            assert rel_err(one["attn_residual"], stages[f"blocks.{i}.attn_residual"]) < PORT_STAGE_ALONE_VS_FORWARD_BOUND
            prev = stages[f"blocks.{i}.output"]
        assert rel_err(port.merger(prev), out) < PORT_STAGE_ALONE_VS_FORWARD_BOUND  # merge blocks are whole in both row orders
        assert rel_err(port.merger.ln_q(prev), stages["merger.ln_q"]) < PORT_STAGE_ALONE_VS_FORWARD_BOUND


# ----------------------------------------------------------- bf16 and fp16
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_low_precision_close_to_fp32(dtype):
    """Port in bf16/fp16 vs HF fp32, next to HF's own model in the same dtype vs HF fp32."""
    errs = {}
    for name in CONFIGS:
        hf = hf_model(name)
        port = load_hf_vision(make_config(name).to_dict(), hf.state_dict(), dtype=dtype)
        assert all(p.dtype == dtype for p in port.parameters())
        hf_low = Qwen2_5_VisionTransformerPretrainedModel(make_config(name)).eval()
        hf_low.load_state_dict(hf.state_dict())
        hf_low.to(dtype)
        for grid in ("12x20", "10x10", "two_images", "video_t2_12x8"):
            px, g = inputs(name, GRIDS[grid])
            with torch.no_grad():
                ref = hf(px, g).pooler_output
                out = port(px.to(dtype), g)
                ref_low = hf_low(px.to(dtype), g).pooler_output
            assert out.dtype == dtype and torch.isfinite(out).all()
            errs[(name, grid)] = (rel_err(out, ref), rel_err(ref_low, ref))
    worst_port, worst_hf = max(e[0] for e in errs.values()), max(e[1] for e in errs.values())
    table = "\n".join(f"  {n:20s} {gr:9s} port {a:.2e}  HF {b:.2e}" for (n, gr), (a, b) in errs.items())
    print(f"\n{dtype} vs HF fp32 (max: port {worst_port:.2e}, HF {worst_hf:.2e}):\n{table}")
    assert worst_port < LOW_TOL[dtype], table
    assert worst_port < 1.5 * worst_hf, table  # no worse than HF's own low-precision run


def test_fp16_does_not_overflow_in_norms():
    """Activations above the fp16 square range (x**2 > 65504) stay finite through RMSNorm."""
    norm = Qwen2_5_VisionRMSNorm(8).to(torch.float16)
    x = torch.full((3, 8), 1000.0, dtype=torch.float16)
    assert torch.isfinite(norm(x)).all() and torch.allclose(norm(x).float(), torch.ones(3, 8))


# -------------------------------------------------------- weight conversion
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_round_trip_exact(name, dtype):
    config = make_config(name)
    sd = {k: v.to(dtype) for k, v in hf_model(name).state_dict().items()}
    tune = qwen2_5_vision_hf_to_tune(sd)
    back = qwen2_5_vision_tune_to_hf(
        tune,
        in_channels=config.in_channels,
        temporal_patch_size=config.temporal_patch_size,
        patch_size=config.patch_size,
    )
    assert list(back) == list(sd)
    for k in sd:
        assert back[k].dtype == sd[k].dtype and back[k].shape == sd[k].shape and torch.equal(back[k], sd[k]), k


def test_conversion_prefixes_and_foreign_keys():
    sd = hf_model("hd16_win112_full_last").state_dict()
    plain = qwen2_5_vision_hf_to_tune(sd)
    for prefix in ("visual.", "model.visual."):
        full = {prefix + k: v for k, v in sd.items()}
        full["model.layers.0.self_attn.q_proj.weight"] = torch.zeros(2, 2)
        full["lm_head.weight"] = torch.zeros(2, 2)
        full[prefix + "rotary_pos_emb.inv_freq"] = torch.zeros(2)
        converted = qwen2_5_vision_hf_to_tune(full)
        assert list(converted) == list(plain) and all(
            converted[k] is plain[k] or torch.equal(converted[k], plain[k]) for k in plain
        )
    with pytest.raises(ValueError, match="blocks.0.attn.bogus"):
        qwen2_5_vision_hf_to_tune({**sd, "visual.blocks.0.attn.bogus": torch.zeros(1)})
    assert qwen2_5_vision_tune_to_hf(plain).keys() == sd.keys()  # released geometry by default
    with pytest.raises(ValueError, match="patch_embed"):
        qwen2_5_vision_tune_to_hf(plain, patch_size=7)


def test_load_hf_vision_reports_every_problem():
    name = "hd16_win112_full_last"
    config = make_config(name).to_dict()
    sd = {"visual." + k: v for k, v in hf_model(name).state_dict().items()}
    del sd["visual.blocks.1.norm2.weight"]
    sd["visual.blocks.2.attn.proj.bias"] = torch.zeros(5)
    sd["visual.blocks.9.norm1.weight"] = torch.zeros(32)
    sd["visual.merger.extra.weight"] = torch.zeros(3)
    sd["model.language_model.layers.0.mlp.up_proj.weight"] = torch.zeros(1)  # ignored
    with pytest.raises(ValueError) as info:
        load_hf_vision(config, sd)
    msg = str(info.value)
    for needle in (
        "layers.1.mlp_norm.scale",
        "visual.blocks.2.attn.proj.bias",
        "visual.blocks.9.norm1.weight",
        "visual.merger.extra.weight",
    ):
        assert needle in msg, msg
    assert "language_model" not in msg


def test_config_handling(ports):
    name = "hd16_win112_full_last"
    config = make_config(name).to_dict()
    config["fullatt_block_indexes"] = ["2"]  # strings after a lossy round trip
    config["unused_field"] = 1
    port = load_hf_vision(config, hf_model(name).state_dict())
    assert port.fullatt_block_indexes == (2,)
    px, g = inputs(name, GRIDS["12x20"])
    with torch.no_grad():
        assert torch.equal(port(px, g), ports[name](px, g))
    # the defaults used for missing optional fields, and quoted for missing sizes, are HF's class defaults
    defaults = Qwen2_5_VLVisionConfig().to_dict()
    assert {k: defaults[k] for k in HF_OPTIONAL_DEFAULTS} == HF_OPTIONAL_DEFAULTS
    assert {k: defaults[k] for k in HF_REQUIRED_DEFAULTS} == HF_REQUIRED_DEFAULTS
    # the port does not share the caller's tensors
    assert all(p.data_ptr() != t.data_ptr() for p, t in zip(port.parameters(), hf_model(name).parameters()))


# --------------------------------------------------------------- builders
@pytest.mark.parametrize(
    "builder, out",
    [
        (qwen2_5_vl_3b_vision_encoder, 2048),
        (qwen2_5_vl_7b_vision_encoder, 3584),
        (qwen2_5_vl_32b_vision_encoder, 5120),
        (qwen2_5_vl_72b_vision_encoder, 8192),
    ],
)
def test_released_builders_fit_hf_weights(builder, out):
    with torch.device("meta"):
        port = builder()
        hf = Qwen2_5_VisionTransformerPretrainedModel(Qwen2_5_VLVisionConfig(hidden_size=1280, out_hidden_size=out))
    ours = {k: tuple(v.shape) for k, v in port.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in qwen2_5_vision_hf_to_tune(hf.state_dict()).items()}
    assert ours == theirs
    assert port.fullatt_block_indexes == (7, 15, 23, 31) and port.window_units == 4
    assert port.rope.head_dim == 80


@pytest.mark.parametrize("name", list(CONFIGS))
def test_builder_takes_torchtune_names(name):
    """The builder takes torchtune's argument names (HF's are translated where a config is read) and
    builds HF's tower; an HF name given to it is refused by Python, naming it."""
    sizes = {**dict(patch_size=14, temporal_patch_size=2), **CONFIGS[name]}
    common = dict(num_heads=sizes["num_heads"], patch_size=sizes["patch_size"],
                  temporal_patch_size=sizes["temporal_patch_size"], spatial_merge_size=2,
                  window_size=sizes["window_size"], fullatt_block_indexes=sizes["fullatt_block_indexes"], in_channels=3)
    tune_names = dict(num_layers=sizes["depth"], embed_dim=sizes["hidden_size"],
                      intermediate_dim=sizes["intermediate_size"], out_dim=sizes["out_hidden_size"],
                      activation=torch.nn.SiLU, rope_base=10_000.0)
    from torch_port import qwen2_5_vision_encoder

    encoder = qwen2_5_vision_encoder(**common, **tune_names)
    px, g = inputs(name, GRIDS["12x20"])
    with torch.no_grad():
        ref = hf_model(name)(px, g).pooler_output
        encoder.load_state_dict(qwen2_5_vision_hf_to_tune(hf_model(name).state_dict()))
        assert rel_err(encoder.eval()(px, g), ref) < FP32_TOL

    for hf_name, tune_name in (("depth", "num_layers"), ("hidden_size", "embed_dim"),
                               ("intermediate_size", "intermediate_dim"), ("out_hidden_size", "out_dim"),
                               ("hidden_act", "activation")):
        renamed = {**{k: v for k, v in tune_names.items() if k != tune_name}, hf_name: tune_names[tune_name]}
        with pytest.raises(TypeError, match=rf"unexpected keyword argument '{hf_name}'"):
            qwen2_5_vision_encoder(**common, **renamed)


def test_rope_base_reaches_the_rotary():
    """``rope_base`` (HF: rope_parameters["rope_theta"]) is the rotary's base, in the builder and the loader."""
    name = "hd16_win112_full_last"
    config = make_config(name).to_dict()
    with torch.device("meta"):
        assert qwen2_5_vl_3b_vision_encoder().rope.base == 10_000.0 == config["rope_parameters"]["rope_theta"]
    config["rope_parameters"] = {"rope_type": "axial", "rope_theta": 500.0}
    port = load_hf_vision(config, hf_model(name).state_dict())
    assert port.rope.base == 500.0
    hf = Qwen2_5_VisionTransformerPretrainedModel(Qwen2_5_VLVisionConfig(**config)).eval()
    hf.load_state_dict(hf_model(name).state_dict())
    px, g = inputs(name, GRIDS["12x20"])
    with torch.no_grad():
        assert rel_err(port(px, g), hf(px, g).pooler_output) < FP32_TOL
        assert rel_err(port(px, g), hf_model(name)(px, g).pooler_output) > 1e-2  # the base matters


def test_missing_sizes_are_refused_by_their_hf_names():
    """HF would fill a missing size with its class default (hidden_size 3584); the port, like the
    reference, refuses and names every missing field (HF's aliases count as present)."""
    from reference import VisionConfig

    name = "hd16_win112_full_last"
    full = {k: v for k, v in make_config(name).to_dict().items() if v is not None}
    for missing in (["hidden_size"], ["depth", "out_hidden_size"], list(HF_REQUIRED_DEFAULTS)):
        config = {k: v for k, v in full.items() if k not in missing}
        for loader in (lambda c: load_hf_vision(c, hf_model(name).state_dict()), VisionConfig.from_hf):
            with pytest.raises(ValueError, match="lacks") as info:
                loader(config)
            assert all(repr(k) in str(info.value) for k in missing), str(info.value)
    aliased = {k: v for k, v in full.items() if k not in ("depth", "num_heads")}
    aliased.update(num_hidden_layers=full["depth"], num_attention_heads=full["num_heads"])
    assert load_hf_vision(aliased, hf_model(name).state_dict()).fullatt_block_indexes == (2,)


def test_activations_match_hf_and_the_reference():
    """One activation table: the port's names are the reference's, each module computes HF's ACT2FN."""
    from transformers.activations import ACT2FN

    from reference.vision_config import SUPPORTED_ACTS
    from torch_port import ACTIVATIONS

    assert set(ACTIVATIONS) == set(SUPPORTED_ACTS)
    x = torch.randn(4096, generator=torch.Generator().manual_seed(0)) * 6
    for dtype in (torch.float32, torch.bfloat16):
        for act, make in ACTIVATIONS.items():
            assert torch.equal(make()(x.to(dtype)), ACT2FN[act](x.to(dtype))), (act, dtype)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rows", [1, 64, 300])
def test_mlp_transposed_equals_plain(bias, rows):
    """The gated MLP's transposed float32 CPU path computes the same sums as the obvious form."""
    from torch import nn

    def plain(mlp, x):
        return mlp.w2(mlp.activation(mlp.w1(x)) * mlp.w3(x))

    torch.manual_seed(rows)
    mlp = Qwen2_5_VisionMLP(gate_proj=nn.Linear(80, 342, bias=bias), down_proj=nn.Linear(342, 80, bias=bias),
                            up_proj=nn.Linear(80, 342, bias=bias), activation=nn.SiLU())
    x = torch.randn(rows, 80)
    with torch.inference_mode():
        assert mlp._transposed_hidden(x)
        torch.testing.assert_close(mlp(x), plain(mlp, x), rtol=PORT_MLP_ORIENTATION_BOUND, atol=PORT_MLP_ORIENTATION_BOUND)
        # other shapes and dtypes take the plain form itself
        x3 = x.reshape(1, rows, 80)
        assert not mlp._transposed_hidden(x3)
        assert torch.equal(mlp(x3), plain(mlp, x3))
        mlp16, x16 = mlp.to(torch.bfloat16), x.to(torch.bfloat16)
        assert not mlp16._transposed_hidden(x16)
        assert torch.equal(mlp16(x16), plain(mlp16, x16))


def test_no_names_that_shadow_torchtune():
    """``RMSNorm`` / ``FeedForward`` would shadow torchtune's modules once dropped into torchtune: the
    port names its own ``Qwen2_5_Vision*`` and has no such attributes."""
    import torch_port
    from torch_port import _encoder

    for old in ("RMSNorm", "FeedForward"):
        assert old not in vars(torch_port) and old not in vars(_encoder) and old not in torch_port.__all__
        with pytest.raises(AttributeError, match=f"no attribute '{old}'"):
            getattr(torch_port, old)
    with pytest.raises(AttributeError, match="no attribute 'Bogus'"):
        torch_port.Bogus  # noqa: B018


# ------------------------------------------------------------- checkpoint
def test_load_hf_checkpoint(tmp_path):
    config = Qwen2_5_VLVisionConfig(**{k: v for k, v in VISION_CONFIG_JSON.items() if k != "in_chans"})
    config._attn_implementation = "sdpa"
    sd_bf16 = {k: v.to(torch.bfloat16) for k, v in hf_model("hd16_win112_full_last").state_dict().items()}
    write_checkpoint(tmp_path / "ckpt", sd_bf16)

    hf = Qwen2_5_VisionTransformerPretrainedModel(config).eval()
    hf.load_state_dict({k: v.float() for k, v in sd_bf16.items()})  # the same bf16-rounded weights
    encoder, transform = load_hf_checkpoint(tmp_path / "ckpt", dtype=torch.float32)
    assert all(p.dtype == torch.float32 for p in encoder.parameters())
    errs = {}
    for grid in ("12x20", "two_images", "video_t2_12x8"):
        px, g = inputs("hd16_win112_full_last", GRIDS[grid])
        with torch.no_grad():
            errs[grid] = rel_err(encoder(px, g), hf(px, g).pooler_output)
    print(f"\ncheckpoint fp32 vs HF: {errs}")
    assert max(errs.values()) < FP32_TOL

    from torch_port import Qwen2_5_VLImageTransform

    assert isinstance(transform, Qwen2_5_VLImageTransform)
    assert (transform.min_pixels, transform.max_pixels) == (3136, 12845056)
    assert isinstance(qwen2_5_vl_image_transform(min_pixels=3136, max_pixels=3136 * 4), Qwen2_5_VLImageTransform)

    encoder_bf16, _ = load_hf_checkpoint(str(tmp_path / "ckpt"))  # default: bfloat16
    assert all(p.dtype == torch.bfloat16 for p in encoder_bf16.parameters())
    assert all(torch.equal(p, sd_bf16[k]) for k, p in qwen2_5_vision_tune_to_hf(encoder_bf16.state_dict()).items())


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_hf_checkpoint(tmp_path / "nowhere")
    folder = tmp_path / "pickle"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl", "vision_config": VISION_CONFIG_JSON}))
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_JSON))
    (folder / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ValueError, match="pickle"):
        load_hf_checkpoint(folder)
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_hf_checkpoint(folder)
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json"):
        load_hf_checkpoint(folder)


def test_preprocessor_size_forms():
    assert _transform_kwargs({"size": {"shortest_edge": 100, "longest_edge": 1000}})["min_pixels"] == 100
    kw = _transform_kwargs({"size": {"shortest_edge": 100, "longest_edge": 1000}, "max_pixels": 5000})
    assert (kw["min_pixels"], kw["max_pixels"]) == (100, 5000)  # top-level fields win, as in HF
    kw = _transform_kwargs({})
    assert (kw["min_pixels"], kw["max_pixels"], kw["patch_size"], kw["merge_size"]) == (3136, 1003520, 14, 2)


# ------------------------------------------------------------------ device
@pytest.mark.hardware("cuda")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
def test_cuda_matches_hf_cpu(dtype):
    tol = {torch.float32: FP32_TOL, **LOW_TOL}[dtype]  # measured on an H200: fp32 1.3e-6, bf16 1.7e-2, fp16 2.4e-3
    for name in CONFIGS:
        hf = hf_model(name)
        port = load_hf_vision(make_config(name).to_dict(), hf.state_dict(), dtype=dtype, device="cuda")
        for grid in ("12x20", "two_images", "video_t2_12x8"):
            px, g = inputs(name, GRIDS[grid])
            with torch.no_grad():
                out = port(px.to("cuda", dtype), g.cuda())
                ref = hf(px, g).pooler_output
            assert out.device.type == "cuda"
            err = rel_err(out.cpu(), ref)
            print(f"\ncuda {dtype} {name} {grid}: {err:.2e}")
            assert err < tol


@pytest.mark.hardware("cuda")
def test_cuda_full_size_3b_matches_hf():
    """The released 3B tower (HF random init) on a 1064x1456-pixel image, port vs HF, both on CUDA."""
    import time

    cudnn_tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # HF's Conv3d patch embed would run in TF32 by default
    try:
        torch.manual_seed(0)
        config = Qwen2_5_VLVisionConfig(hidden_size=1280, out_hidden_size=2048)
        config._attn_implementation = "sdpa"
        with torch.device("cuda"):
            hf = Qwen2_5_VisionTransformerPretrainedModel(config).eval()
        port = load_hf_vision(config.to_dict(), hf.state_dict(), device="cuda")
        g = torch.tensor([[1, 76, 104]], device="cuda")
        px = torch.randn(76 * 104, 1176, device="cuda")

        def timed(fn):
            fn()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            y = fn()
            torch.cuda.synchronize()
            return y, (time.perf_counter() - t0) * 1e3

        with torch.no_grad():
            ref, t_hf = timed(lambda: hf(px, g).pooler_output)
            out, t_port = timed(lambda: port(px, g))
            err = rel_err(out, ref)
            hf.to(torch.bfloat16)
            port.to(torch.bfloat16)
            ref_bf16, t_hf16 = timed(lambda: hf(px.bfloat16(), g).pooler_output)
            out_bf16, t_port16 = timed(lambda: port(px.bfloat16(), g))
        err16, err16_hf = rel_err(out_bf16, ref), rel_err(ref_bf16, ref)
        print(
            f"\n3B tower, 7904 patches, CUDA: fp32 rel err {err:.2e} (port {t_port:.0f} ms, HF {t_hf:.0f} ms); "
            f"bf16 vs HF fp32: port {err16:.2e}, HF {err16_hf:.2e} (port {t_port16:.0f} ms, HF {t_hf16:.0f} ms)"
        )
        assert err < PORT_CUDA_3B_FLOAT32_BOUND
        factor, margin = PORT_CUDA_3B_BFLOAT16_FACTOR_MARGIN
        assert err16 < factor * err16_hf + margin
    finally:
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
