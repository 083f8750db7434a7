"""QLoRA (``quantize_base=True``): torchtune's NF4 base weights in the decoder, on a tiny random HF
model whose decoder linears are whole NF4 blocks (width 256, 4 heads, 2 kv heads, MLP 256).

What is checked, and against what:

* which weights are NF4: exactly the base weights of the decoder linears with an adapter; the
  embedding, the output projection (torchtune leaves it), the norms and the vision tower stay float;
* the quantization error of every NF4 weight is within the bound NF4's construction gives,
  computed from the original weights: ``|w - deq(w)| <= (g / 2) * s_b + 2 * A / 256`` per block,
  ``g`` the widest gap of the 16-value code (read from the tensor), ``s_b`` the block's absmax,
  ``A`` the largest deviation from the mean absmax among the 256 blocks whose scales are stored
  together (the int8 scales are within one step, ``2 * A / 256``, of the absmax; the code
  value is within ``g / 2`` of ``w / s_b``);
* the QLoRA model computes the LoRA model whose base weights are the dequantized ones (float32,
  FUSED_LOGITS_VS_HF_BOUND: torchao adds the bias after the product, a float32 reordering);
  with the bound above this is the whole difference from the unquantized model (on these random
  weights, std 0.2, 0.43 relative: 4-bit weights through 2 layers);
* only the adapters get gradients; the NF4 weights and the tower none;
* the merged state dict (``state_dict()`` dequantizes, then torchtune's ``get_merged_lora_ckpt``)
  converts to HF keys and loads strictly into ``Qwen2_5_VLForConditionalGeneration``, whose logits
  equal the QLoRA model's (FUSED_LOGITS_VS_HF_BOUND);
* bf16, the dtype QLoRA is run in: the forward is finite and the NF4 weights hold about a quarter of
  the bf16 bytes (measured bytes of the NF4 tensors' parts against 2 bytes a weight).
"""

import functools

import pytest
import torch
from safetensors.torch import save_file
from torchao.dtypes.nf4tensor import NF4Tensor
from torchtune import training
from torchtune.modules.peft import LoRALinear, get_adapter_params, get_merged_lora_ckpt, set_trainable_params
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

import torch_port
from goldenlib.tolerances import FUSED_LOGITS_VS_HF_BOUND, rel_error
from hf_tiny_vl import (
    IMAGE_PAD,
    TEXT_BASE,
    VIDEO_PAD,
    VISION_BASE,
    VISION_END,
    VISION_START,
    pixel_values,
    random_hf_model,
    text_ids,
    token_types,
    vision_run,
)

CONFIG = {
    "model_type": "qwen2_5_vl", **TEXT_BASE,
    "hidden_size": 256, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "rope_scaling": {"type": "mrope", "mrope_section": [8, 12, 12]},
    "vision_config": {**VISION_BASE, "depth": 2, "hidden_size": 32, "num_heads": 2, "intermediate_size": 40,
                      "out_hidden_size": 256, "window_size": 56, "fullatt_block_indexes": [1]},
    "tie_word_embeddings": False, "vision_start_token_id": VISION_START, "vision_end_token_id": VISION_END,
    "image_token_id": IMAGE_PAD, "video_token_id": VIDEO_PAD,
}
LORA = dict(lora_attn_modules=["q_proj", "k_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True,
            apply_lora_to_output=True, lora_rank=4, lora_alpha=8.0)
RANK, ALPHA = LORA["lora_rank"], LORA["lora_alpha"]


@functools.cache
def _hf():
    return random_hf_model(CONFIG)


@functools.cache
def _adapters() -> dict:
    """Random adapter weights (lora_b starts at zero in torchtune: the adapters would add nothing)."""
    model = torch_port.lora_qwen2_5_vl_from_hf_config(CONFIG, **LORA)
    g = torch.Generator().manual_seed(1)
    return {n: 0.05 * torch.randn(p.shape, generator=g) for n, p in model.named_parameters() if ".lora_" in n}


def _model(quantize_base: bool, dtype=torch.float32, base=None):
    """The LoRA model built as torchtune's recipes build it (default dtype), base weights loaded."""
    with training.set_default_dtype(dtype):
        model = torch_port.lora_qwen2_5_vl_from_hf_config(CONFIG, **LORA, quantize_base=quantize_base)
    base = torch_port.qwen2_5_vl_hf_to_tune(_hf().state_dict()) if base is None else base
    missing, unexpected = model.load_state_dict({**base, **_adapters()}, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return model.eval()


def _prompt():
    g = torch.Generator().manual_seed(0)
    grid = [1, 4, 6]
    ids = torch.tensor([text_ids(4, g) + vision_run(grid) + text_ids(5, g)])
    ig = torch.tensor([grid])
    pos = torch_port.qwen2_5_vl_rope_index(ids, token_types(ids), ig, None, None, None, tokens_per_second=2)[0]
    pv = pixel_values(ig, g)
    return ids, ig, pv, pos


def _logits(model, dtype=torch.float32):
    ids, ig, pv, pos = _prompt()
    return model(ids, encoder_input={"image": {"pixel_values": pv.to(dtype), "grid_thw": ig}}, input_pos=pos)


def _nf4_weights(model) -> dict:
    return {n: p for n, p in model.named_parameters() if isinstance(p, NF4Tensor)}


def _nf4_bound(w: torch.Tensor, nf4: NF4Tensor) -> torch.Tensor:
    """Per-weight bound of |w - dequantized w| from NF4's construction (module docstring)."""
    blocks = w.detach().flatten().view(-1, nf4.block_size)
    absmax = blocks.abs().amax(-1)  # s_b
    deviation = (absmax - absmax.mean()).view(-1, nf4.scaler_block_size).abs().amax(-1)  # A per scale block
    gap = float(torch.diff(nf4.nf4.sort().values).max())
    scale_step = (2 * deviation / 256).repeat_interleave(nf4.scaler_block_size)
    bound = gap / 2 * absmax + scale_step
    return (bound * (1 + 1e-5)).repeat_interleave(nf4.block_size).view(w.shape)  # + float32 rounding


def test_which_weights_are_nf4_and_their_error_bound():
    model = _model(quantize_base=True)
    nf4 = _nf4_weights(model)
    adapted = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, LoRALinear) and n != "decoder.output"}
    assert set(nf4) == adapted and len(adapted) == 2 * 7  # q, k, v, output_proj, w1, w2, w3 in each layer
    others = {n: p.dtype for n, p in model.named_parameters() if n not in nf4}
    assert set(others.values()) == {torch.float32}
    assert "decoder.output.weight" in others and any(n.startswith("encoders.image.") for n in others)

    original = torch_port.qwen2_5_vl_hf_to_tune(_hf().state_dict())
    for name, q in nf4.items():
        w = original[name]
        err = (w - q.get_original_weight()).abs()
        bound = _nf4_bound(w, q)
        assert bool((err <= bound).all()), (name, float((err - bound).max()))
        assert float(err.max()) > 0  # quantized, not stored as is


def test_forward_is_the_lora_model_on_the_dequantized_weights():
    qlora = _model(quantize_base=True)
    dequantized = {**torch_port.qwen2_5_vl_hf_to_tune(_hf().state_dict()),
                   **{n: p.get_original_weight() for n, p in _nf4_weights(qlora).items()}}
    with torch.no_grad():
        got = _logits(qlora)
        want = _logits(_model(quantize_base=False, base=dequantized))
    assert torch.isfinite(got).all()
    err = rel_error(got, want)
    print(f"QLoRA vs LoRA on the dequantized weights: logits rel err {err:.3g}")
    assert err <= FUSED_LOGITS_VS_HF_BOUND


def test_only_the_adapters_get_gradients():
    model = _model(quantize_base=True).train()
    set_trainable_params(model, get_adapter_params(model))  # what torchtune's LoRA recipes do
    _logits(model).logsumexp(-1).mean().backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {n for n in dict(model.named_parameters()) if ".lora_" in n}
    assert all(p.grad is None for p in _nf4_weights(model).values())


def test_merged_state_dict_loads_in_hf(tmp_path):
    qlora = _model(quantize_base=True)
    state = qlora.state_dict()  # torchtune's hook: NF4 weights back in float32, on the CPU
    assert not any(isinstance(v, NF4Tensor) for v in state.values())
    # merged in place: a copy, since the unquantized tensors (the adapted output) share the model's storage
    merged = get_merged_lora_ckpt({k: v.clone() for k, v in state.items()}, rank=RANK, alpha=ALPHA)
    assert not any(".lora_" in k for k in merged)
    # an HF folder of the released layout, read by HF's from_pretrained (which renames to its own keys)
    save_file({k: v.contiguous() for k, v in torch_port.qwen2_5_vl_tune_to_hf(merged).items()},
              str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    Qwen2_5_VLConfig(**CONFIG).save_pretrained(tmp_path)
    hf, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path, dtype=torch.float32,
                                                                  attn_implementation="eager", output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched key
    hf.eval()
    ids, ig, pv, _ = _prompt()
    with torch.no_grad():
        expected = hf(input_ids=ids, mm_token_type_ids=token_types(ids), pixel_values=pv, image_grid_thw=ig).logits
        got = _logits(qlora)
    err = rel_error(got, expected)
    print(f"HF with the merged QLoRA weights vs the QLoRA model: logits rel err {err:.3g}")
    assert err <= FUSED_LOGITS_VS_HF_BOUND


def test_bfloat16_forward_and_base_weight_bytes():
    model = _model(quantize_base=True, dtype=torch.bfloat16)
    nf4 = _nf4_weights(model)
    assert {p.dtype for n, p in model.named_parameters() if n not in nf4} == {torch.bfloat16}
    with torch.no_grad():
        out = _logits(model, torch.bfloat16)
    assert torch.isfinite(out).all()
    parts = ("quantized_data", "quantized_scalers", "quantization_factor", "scaler_mean", "nf4")
    nf4_bytes = sum(getattr(p, part).nbytes for p in nf4.values() for part in parts)
    bf16_bytes = sum(2 * p.numel() for p in nf4.values())
    print(f"NF4 base weights: {nf4_bytes} bytes vs bf16 {bf16_bytes} ({nf4_bytes / bf16_bytes:.3f})")
    # 4 bits a weight + one int8 scale per 64 weights: 0.516 bytes a weight, plus per-tensor extras
    assert nf4_bytes < 0.27 * bf16_bytes


def test_quantize_base_sizes_refused_by_name():
    config = {**CONFIG, "intermediate_size": 96}
    with pytest.raises(ValueError, match=r"mlp\.w1 \(96 x 256 = 24576 weights\) is not a multiple of 16384"):
        torch_port.lora_qwen2_5_vl_from_hf_config(config, **LORA, quantize_base=True)
    with pytest.raises(ValueError, match="use_dora=True is not supported"):
        torch_port.lora_qwen2_5_vl_from_hf_config(CONFIG, **LORA, quantize_base=True, use_dora=True)


@pytest.mark.parametrize("size", ["3b", "7b"])
def test_qlora_configs_are_the_lora_configs_with_the_qlora_model(size):
    """configs/qwen2_5_vl_<size>_qlora.yaml: the LoRA config of that size (recipe, data, optimizer,
    adapters) with torch_port.qlora_qwen2_5_vl_<size> as the model and its own output folder."""
    from pathlib import Path

    from omegaconf import OmegaConf

    configs = Path(__file__).resolve().parent.parent / "configs"
    lora = OmegaConf.to_container(OmegaConf.load(configs / f"qwen2_5_vl_{size}_lora.yaml"))
    qlora = OmegaConf.to_container(OmegaConf.load(configs / f"qwen2_5_vl_{size}_qlora.yaml"))
    assert qlora["model"]["_component_"] == f"torch_port.qlora_qwen2_5_vl_{size}"
    assert qlora["output_dir"] == lora["output_dir"].replace("/lora_", "/qlora_") != lora["output_dir"]
    assert {k: v for k, v in qlora["model"].items() if k != "_component_"} == {
        k: v for k, v in lora["model"].items() if k != "_component_"}
    assert {k: v for k, v in qlora.items() if k not in ("model", "output_dir")} == {
        k: v for k, v in lora.items() if k not in ("model", "output_dir")}
    builder = getattr(torch_port, f"qlora_qwen2_5_vl_{size}")
    assert builder.func is getattr(torch_port, f"lora_qwen2_5_vl_{size}") and builder.keywords == {"quantize_base": True}


def _nf4_recipe_config(tiny_hf_config):
    """recipe_fixtures' tiny tied folder config with this file's NF4-sized decoder."""
    def config(name):
        out = tiny_hf_config(name)
        out.update({k: CONFIG[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                           "num_attention_heads", "num_key_value_heads", "rope_scaling")})
        out["vision_config"] = {**out["vision_config"], "out_hidden_size": CONFIG["hidden_size"]}
        return out
    return config


@pytest.mark.slow
def test_tune_run_qlora_config(tmp_path, monkeypatch):
    """``tune run lora_finetune_single_device --config configs/qwen2_5_vl_3b_qlora.yaml`` (the ``tune``
    executable; the tiny folder's sizes through lora_qwen2_5_vl_from_hf_config + quantize_base=True,
    activation checkpointing on, float32): the step-1 loss is HF's loss on the same batch with the
    adapted decoder linears NF4-rounded (the adapters start at zero), the losses fall on the repeated
    batch, and HF's from_pretrained loads the merged epoch folder."""
    import recipe_fixtures as rf
    from torchao.dtypes.nf4tensor import to_nf4

    from goldenlib.tolerances import TRAIN_LOSS_VS_HF_BOUND

    monkeypatch.setattr(rf, "tiny_hf_config", _nf4_recipe_config(rf.tiny_hf_config))
    folder, data_json, data_dir = rf.write_recipe_folder(tmp_path)
    out = tmp_path / "out"
    overrides = [o for o in rf.recipe_overrides(folder, data_json, data_dir, out, lr=1e-2,
                                                model_component="torch_port.lora_qwen2_5_vl_from_hf_config")
                 if not o.startswith("enable_activation_checkpointing=")]
    rf.tune_run(["lora_finetune_single_device", "--config", "configs/qwen2_5_vl_3b_qlora.yaml", *overrides,
                 "model.quantize_base=True", "lr_scheduler.num_warmup_steps=0", "enable_activation_checkpointing=True"],
                tmp_path / "tune_run.log", timeout=900)
    losses = rf.logged_losses(out / "logs")

    # HF's loss with every adapted linear (attention and MLP of each layer) NF4-rounded as the recipe's load did
    hf = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        rounded = [p.copy_(to_nf4(p.detach().clone()).get_original_weight()) for name, p in hf.named_parameters()
                   if "language_model.layers." in name and name.endswith("proj.weight")]
    assert len(rounded) == 7 * CONFIG["num_hidden_layers"]
    nf4_folder = tmp_path / "nf4_rounded"
    hf.save_pretrained(nf4_folder)
    for extra in folder.iterdir():  # tokenizer and processor files
        if not (nf4_folder / extra.name).exists() and not extra.name.startswith("model"):
            (nf4_folder / extra.name).write_bytes(extra.read_bytes())
    expected = rf.hf_batch_loss(nf4_folder, rf.recipe_samples(folder, data_json, data_dir))
    print(f"tune run QLoRA: losses {losses}; HF on the NF4-rounded weights {expected:.7f}")
    assert abs(losses[0] - expected) <= TRAIN_LOSS_VS_HF_BOUND * abs(expected)
    assert len(losses) == 2 and losses[1] < losses[0]
    merged, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(out / "epoch_0", dtype=torch.float32,
                                                                      output_loading_info=True)
    assert not any(info.values()), info
