"""The fused model (torchtune EarlyFusionModel + mRoPE Qwen2 decoder + this port's vision tower)
against HF ``Qwen2_5_VLForConditionalGeneration`` on tiny random models; builders, conversion,
loading and the forward contract's errors.

Padding (the batch test): HF gets ``attention_mask`` (0 on the left padding) and computes its own
positions; the port gets the positions of ``qwen2_5_vl_rope_index(..., attention_mask)`` and a
``[b, s, s]`` boolean mask = causal AND the key is a real token (a padded query row attends to
itself only, so that its softmax is defined). Only the real tokens' logits are compared: the
padded rows are garbage on both sides.
"""

import copy
import warnings

import pytest
import torch

import torch_port
from torch_port._hf_config import vision_encoder_kwargs
from goldenlib.tolerances import FUSED_LOGITS_VS_HF_BOUND, rel_error
from hf_tiny_vl import (
    IMAGE_PAD,
    TINY_VL_CONFIGS,
    VIDEO_PAD,
    config_dict,
    hf_and_port,
    pixel_values,
    text_ids,
    token_types,
    vision_run,
)


def _prompt(kind, seed=0):
    """(ids [1, s], image grid | None, video grid | None, image pv | None, video pv | None)."""
    g = torch.Generator().manual_seed(seed)
    image_grids, video_grids, ids = [], [], text_ids(4, g)
    if kind in ("one_image", "two_images", "image_video"):
        image_grids.append([1, 4, 6])
    if kind == "two_images":
        image_grids.append([1, 6, 2])
    if kind == "image_video":
        video_grids.append([2, 4, 4])
    for grid in image_grids:
        ids += vision_run(grid) + text_ids(3, g)
    for grid in video_grids:
        ids += vision_run(grid, pad=VIDEO_PAD) + text_ids(3, g)
    ig = torch.tensor(image_grids) if image_grids else None
    vg = torch.tensor(video_grids) if video_grids else None
    return (torch.tensor([ids]), ig, vg, None if ig is None else pixel_values(ig, g),
            None if vg is None else pixel_values(vg, g))


def _encoder_input(ig, vg, ipv, vpv):
    enc = {}
    if ig is not None:
        enc["image"] = {"pixel_values": ipv, "grid_thw": ig}
    if vg is not None:
        enc["video"] = {"pixel_values": vpv, "grid_thw": vg}
    return enc or None


SECONDS = torch.tensor([1.0])  # second_per_grid_ts of the one video (both sides get it)


def _positions(ids, ig, vg, attention_mask=None):
    return torch_port.qwen2_5_vl_rope_index(
        ids, token_types(ids), ig, vg, SECONDS if vg is not None else None, attention_mask, tokens_per_second=2
    )[0]


def _hf_kwargs(ids, ig, vg, ipv, vpv):
    kw = dict(input_ids=ids, mm_token_type_ids=token_types(ids))
    if ig is not None:
        kw.update(pixel_values=ipv, image_grid_thw=ig)
    if vg is not None:
        kw.update(pixel_values_videos=vpv, video_grid_thw=vg, second_per_grid_ts=SECONDS)
    return kw


@pytest.mark.parametrize("name", sorted(TINY_VL_CONFIGS))
@pytest.mark.parametrize("kind", ["text", "one_image", "two_images", "image_video"])
def test_logits_match_hf(name, kind):
    hf, model = hf_and_port(name)
    ids, ig, vg, ipv, vpv = _prompt(kind)
    pos = _positions(ids, ig, vg)
    with torch.no_grad():
        expected = hf(**_hf_kwargs(ids, ig, vg, ipv, vpv)).logits
        hf_pos = hf.model.get_rope_index(ids, token_types(ids), ig, vg, SECONDS if vg is not None else None)[0]
        got = model(ids, encoder_input=_encoder_input(ig, vg, ipv, vpv), input_pos=pos)
    assert torch.equal(pos, hf_pos)
    assert got.shape == (1, ids.shape[1], config_dict(name)["vocab_size"])
    err = rel_error(got, expected)
    print(f"{name} {kind}: logits rel err {err:.3g}")
    assert err <= FUSED_LOGITS_VS_HF_BOUND


@pytest.mark.parametrize("name", sorted(TINY_VL_CONFIGS))
def test_padded_batch_matches_hf(name):
    hf, model = hf_and_port(name)
    g = torch.Generator().manual_seed(3)
    grids = torch.tensor([[1, 4, 6], [1, 2, 4]])
    rows = [text_ids(3, g) + vision_run([1, 4, 6]) + text_ids(4, g),
            text_ids(2, g) + vision_run([1, 2, 4]) + text_ids(2, g)]
    s = max(map(len, rows))
    ids = torch.zeros(2, s, dtype=torch.long)  # left padding with id 0
    attention_mask = torch.zeros(2, s, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, s - len(row):] = torch.tensor(row)
        attention_mask[i, s - len(row):] = 1
    pv = pixel_values(grids, g)
    pos = _positions(ids, grids, None, attention_mask)
    real = attention_mask.bool()
    mask = torch.tril(torch.ones(s, s, dtype=torch.bool)) & real[:, None, :]
    mask |= torch.eye(s, dtype=torch.bool)  # padded rows attend to themselves (defined softmax, unused)
    with torch.no_grad():
        expected = hf(**_hf_kwargs(ids, grids, None, pv, None), attention_mask=attention_mask).logits
        hf_pos = hf.model.get_rope_index(ids, token_types(ids), grids, None, None, attention_mask)[0]
        got = model(ids, mask=mask, encoder_input=_encoder_input(grids, None, pv, None), input_pos=pos)
    assert torch.equal(pos, hf_pos)
    err = rel_error(got[real], expected[real])
    print(f"{name} padded batch: logits rel err {err:.3g}")
    assert err <= FUSED_LOGITS_VS_HF_BOUND


def test_every_parameter_trainable_and_one_tower():
    _, model = hf_and_port("tied_gqa")
    assert all(p.requires_grad for p in model.parameters())
    keys = list(model.state_dict())
    assert any(k.startswith("encoders.image.") for k in keys)
    assert not any(k.startswith("encoders.video.") for k in keys)
    assert "decoder.tok_embeddings.weight" in keys and "decoder.output.weight" not in keys  # tied


def test_forward_contract_errors():
    _, model = hf_and_port("untied_mha")
    ids, ig, vg, ipv, vpv = _prompt("image_video")
    pos = _positions(ids, ig, vg)
    n_image, n_video = int((ids == IMAGE_PAD).sum()), int((ids == VIDEO_PAD).sum())
    with pytest.raises(ValueError, match=f"{n_video} video placeholders.*0 video rows"):
        model(ids, encoder_input={"image": {"pixel_values": ipv, "grid_thw": ig}}, input_pos=pos)
    with pytest.raises(ValueError, match=f"{n_image} image placeholders.*0 image rows"):
        model(ids, encoder_input=None, input_pos=pos)
    wrong = torch.tensor([[1, 4, 4]])
    with pytest.raises(ValueError, match=f"{n_image} image placeholders.*give 4 encoder rows"):
        model(ids, encoder_input={"image": {"pixel_values": pixel_values(wrong, torch.Generator()),
                                            "grid_thw": wrong},
                                  "video": {"pixel_values": vpv, "grid_thw": vg}}, input_pos=pos)
    with pytest.raises(ValueError, match="unknown keys.*audio"):
        model(ids, encoder_input={"audio": {}}, input_pos=pos)


def test_builders_match_hf_parameter_counts():
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    # the released text configs (HF config.json of each size); vision tower: HF's class defaults
    released = {
        torch_port.qwen2_5_vl_3b: dict(hidden_size=2048, num_hidden_layers=36, num_attention_heads=16,
                                       num_key_value_heads=2, intermediate_size=11008, vocab_size=151936,
                                       tie_word_embeddings=True),
        torch_port.qwen2_5_vl_7b: dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28,
                                       num_key_value_heads=4, intermediate_size=18944, vocab_size=152064,
                                       tie_word_embeddings=False),
        torch_port.qwen2_5_vl_32b: dict(hidden_size=5120, num_hidden_layers=64, num_attention_heads=40,
                                        num_key_value_heads=8, intermediate_size=27648, vocab_size=152064,
                                        tie_word_embeddings=False),
        torch_port.qwen2_5_vl_72b: dict(hidden_size=8192, num_hidden_layers=80, num_attention_heads=64,
                                        num_key_value_heads=8, intermediate_size=29568, vocab_size=152064,
                                        tie_word_embeddings=False),
    }
    for builder, text in released.items():
        config = Qwen2_5_VLConfig(**text, rms_norm_eps=1e-6,
                                  vision_config=dict(depth=32, hidden_size=1280, num_heads=16, intermediate_size=3420,
                                                     out_hidden_size=text["hidden_size"]))
        with torch.device("meta"):
            hf = Qwen2_5_VLForConditionalGeneration(config)
            ours = builder()
        hf_count = sum(p.numel() for p in hf.parameters())
        our_count = sum(p.numel() for p in ours.parameters())
        assert our_count == hf_count, builder.__name__
        assert ours.decoder.layers[0].attn.pos_embeddings.mrope_section == [16, 24, 24]
        assert ours.decoder.layers[0].attn.pos_embeddings is ours.decoder.layers[-1].attn.pos_embeddings
        assert ours.decoder.norm.eps == 1e-6


def _released_layout(sd):
    """transformers-5 keys -> released keys (what HF's checkpoint conversion maps)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("model.language_model."):
            out["model." + k[len("model.language_model."):]] = v
        elif k.startswith("model.visual."):
            out["visual." + k[len("model.visual."):]] = v
        else:
            out[k] = v
    return out


@pytest.mark.parametrize("name", sorted(TINY_VL_CONFIGS))
def test_conversion_round_trip_both_layouts(name):
    hf, model = hf_and_port(name)
    v5 = hf.state_dict()
    tied = config_dict(name)["tie_word_embeddings"]
    released = _released_layout(v5)
    if tied:
        released.pop("lm_head.weight")  # released tied checkpoints have no lm_head
    geometry = dict(in_channels=3, temporal_patch_size=2, patch_size=14)
    for sd in (released, v5):
        tune = torch_port.qwen2_5_vl_hf_to_tune(sd)
        back = torch_port.qwen2_5_vl_tune_to_hf(tune, **geometry)
        want = _released_layout(sd)
        assert back.keys() == want.keys()
        assert all(torch.equal(back[k], want[k]) for k in want)
    ours = model.state_dict()
    assert set(torch_port.qwen2_5_vl_hf_to_tune(released)) == set(ours)
    assert set(torch_port.qwen2_5_vl_tune_to_hf(ours, **geometry)) == set(released)


def test_conversion_unknown_keys_named():
    hf, model = hf_and_port("untied_mha")
    sd = dict(hf.state_dict())
    sd["model.language_model.layers.0.self_attn.extra.weight"] = torch.zeros(1)
    sd["something.else"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"(?s)layers\.0\.self_attn\.extra\.weight.*something\.else"):
        torch_port.qwen2_5_vl_hf_to_tune(sd)
    with pytest.raises(ValueError, match="bogus"):
        torch_port.qwen2_5_vl_tune_to_hf({"decoder.bogus": torch.zeros(1)})


@pytest.mark.parametrize("name", ["tied_gqa", "untied_gqa_hd8"])
def test_load_hf_model_transformers5_config_layout(name):
    hf, model = hf_and_port(name)
    v5_config = hf.config.to_dict()
    assert "text_config" in v5_config
    loaded = torch_port.load_hf_model(v5_config, _released_layout(hf.state_dict()))
    ids, ig, vg, ipv, vpv = _prompt("one_image")
    pos = _positions(ids, ig, vg)
    with torch.no_grad():
        a = loaded(ids, encoder_input=_encoder_input(ig, vg, ipv, vpv), input_pos=pos)
        b = model(ids, encoder_input=_encoder_input(ig, vg, ipv, vpv), input_pos=pos)
    assert torch.equal(a, b)


def test_load_hf_model_faults_named():
    hf, _ = hf_and_port("tied_gqa")
    config = config_dict("tied_gqa")
    sd = _released_layout(hf.state_dict())
    bad = {k: v for k, v in sd.items() if k != "model.layers.1.mlp.up_proj.weight"}
    with pytest.raises(ValueError, match=r"missing key.*HF 'model\.layers\.1\.mlp\.up_proj\.weight'"):
        torch_port.load_hf_model(config, bad)
    bad = {k: v for k, v in sd.items() if k != "visual.blocks.0.attn.qkv.bias"}
    with pytest.raises(ValueError, match=r"missing key.*visual\.blocks\.0\.attn\.qkv\.bias"):
        torch_port.load_hf_model(config, bad)
    bad = dict(sd, **{"model.norm.weight": torch.ones(3)})
    with pytest.raises(ValueError, match=r"shape mismatch for 'model\.norm\.weight'"):
        torch_port.load_hf_model(config, bad)
    nan = sd["model.layers.0.self_attn.k_proj.bias"].clone()
    nan[0] = float("nan")
    with pytest.raises(ValueError, match=r"model\.layers\.0\.self_attn\.k_proj\.bias"):
        torch_port.load_hf_model(config, dict(sd, **{"model.layers.0.self_attn.k_proj.bias": nan}))
    with pytest.raises(ValueError, match="differs from the token embedding"):
        head = torch.zeros_like(sd["model.embed_tokens.weight"])
        torch_port.load_hf_model(config, dict(sd, **{"lm_head.weight": head}))
    for field, value, message in [
        ("use_sliding_window", True, "sliding"),
        ("rope_scaling", {"type": "yarn", "factor": 2.0}, "rope type 'yarn'"),
        ("attention_dropout", 0.1, "attention_dropout=0.1"),
        ("num_key_value_heads", None, "lacks.*num_key_value_heads"),
    ]:
        with pytest.raises(ValueError, match=message):
            torch_port.load_hf_model(dict(config, **{field: value}), sd)


def test_recipe_style_call_and_freezing():
    """torchtune recipes call ``model(**batch)`` with tokens, mask, encoder_input, input_pos (and
    may pass more, e.g. encoder_mask): accepted as EarlyFusionModel does; the same logits."""
    hf, model = hf_and_port("untied_mha")
    ids, ig, vg, ipv, vpv = _prompt("one_image")
    pos = _positions(ids, ig, vg)
    s = ids.shape[1]
    batch = dict(tokens=ids, mask=torch.tril(torch.ones(1, s, s, dtype=torch.bool)),
                 encoder_input=_encoder_input(ig, vg, ipv, vpv), input_pos=pos, encoder_mask=None)
    with torch.no_grad():
        assert torch.allclose(model(**batch), model(ids, encoder_input=batch["encoder_input"], input_pos=pos),
                              rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="pixel_values and grid_thw"):
        model(ids, encoder_input={"image": {"pixel_values": ipv}}, input_pos=pos)
    frozen = torch_port.load_hf_model(config_dict("untied_mha"), hf.state_dict())
    assert all(p.requires_grad for p in frozen.parameters())
    config = config_dict("untied_mha")
    with torch.device("meta"):
        encoder = torch_port.qwen2_5_vision_encoder(**vision_encoder_kwargs(config["vision_config"]))
        part = torch_port.qwen2_5_vl(
            encoder=encoder, vocab_size=97, num_layers=2, num_heads=4, num_kv_heads=4, embed_dim=48,
            intermediate_dim=80, max_seq_len=64, norm_eps=1e-6, rope_base=1e6, mrope_section=[2, 2, 2],
            tie_word_embeddings=False, encoder_trainable=False)
    trainable = {n.split(".")[0] for n, p in part.named_parameters() if p.requires_grad}
    assert trainable == {"decoder", "tok_embeddings"}


def test_load_hf_model_bfloat16():
    hf, model = hf_and_port("tied_gqa")
    low = torch_port.load_hf_model(config_dict("tied_gqa"), hf.state_dict(), dtype=torch.bfloat16)
    assert {p.dtype for p in low.parameters()} == {torch.bfloat16}
    rope = low.decoder.layers[0].attn.pos_embeddings
    assert rope.theta.dtype == torch.float32  # the mRoPE frequencies stay float32, as HF's
    ids, ig, vg, ipv, vpv = _prompt("one_image")
    with torch.no_grad():
        out = low(ids, encoder_input=_encoder_input(ig, vg, ipv, vpv), input_pos=_positions(ids, ig, vg))
    # torchtune's TransformerDecoder returns float32 logits whatever the weights (``output(h).float()``)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_bfloat16_forward_warns_nothing_and_norms_round_as_hf():
    """torchtune's RMSNorm fed float32 activations to ``F.rms_norm`` with a bfloat16 scale ("Mismatch
    dtype between input and weight") and kept the product in float32; the decoder's norms now round as
    HF's ``Qwen2_5_VLRMSNorm``: normalise in float32, cast back, multiply by the weight in bfloat16."""
    hf, _ = hf_and_port("tied_gqa")
    low = torch_port.load_hf_model(config_dict("tied_gqa"), hf.state_dict(), dtype=torch.bfloat16)
    ids, ig, vg, ipv, vpv = _prompt("image_video")
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        low(ids, encoder_input=_encoder_input(ig, vg, ipv, vpv), input_pos=_positions(ids, ig, vg))
    assert [str(w.message) for w in caught] == []

    x = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(0)).bfloat16() * 3
    layer = low.decoder.layers[0]
    hf_layer = copy.deepcopy(hf.model.language_model.layers[0]).bfloat16()
    for ours, theirs in ((layer.sa_norm, hf_layer.input_layernorm), (layer.mlp_norm, hf_layer.post_attention_layernorm)):
        with torch.no_grad():
            assert torch.equal(ours(x), theirs(x))
    final = copy.deepcopy(hf.model.language_model.norm).bfloat16()
    with torch.no_grad():
        assert torch.equal(low.decoder.norm(x), final(x))
