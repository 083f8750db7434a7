"""The torch port's whole model against the whole-model goldens (kind "model": lm_one_image, lm_two_images,
lm_video, lm_text), layer by layer, in float32 and bfloat16, as tests/test_port_goldens.py does for the tower.

Every language-model stage is checked twice:

* local error: the stage's module fed the golden input of that stage (layer i from the golden output of
  layer i-1, or from `lm.inputs_embeds` for layer 0; the final norm from the golden last layer output;
  the output projection from the golden `lm.norm`);
* accumulated error: the whole fused model run from the golden inputs (token ids, pixel values, grids,
  the port's own positions).

The port's positions must equal the golden's `position_ids`. Bounds: `PORT_LM_VS_GOLDEN_BOUNDS`.
"""

import functools

import numpy as np
import pytest
import torch

import torch_port
from goldenlib import store
from goldenlib.cases import MODEL_CASES
from goldenlib.model_folders import MODELS, hf_config_json, released_state_dict
from goldenlib.tolerances import PORT_LM_VS_GOLDEN_BOUNDS, rel_error

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@functools.cache
def golden(name):
    return store.read_case(name)


@functools.cache
def port(model_name, dtype):
    model = MODELS[model_name]
    state = {k: torch.from_numpy(np.asarray(v)) for k, v in released_state_dict(*model.weights()).items()}
    return torch_port.load_hf_model(hf_config_json(model.config), state, dtype=DTYPES[dtype])


def stage_names(depth):
    layers = [f"lm.layers.{i}.{s}" for i in range(depth) for s in ("attn_residual", "output")]
    return ["lm.inputs_embeds", *layers, "lm.norm", "lm.logits"]


def port_positions(tensors, tokens_per_second):
    seconds = tensors.get("second_per_grid_ts")
    return torch_port.qwen2_5_vl_rope_index(
        torch.from_numpy(tensors["input_ids"]), torch.from_numpy(tensors["mm_token_type_ids"]),
        *(None if tensors.get(k) is None else torch.from_numpy(tensors[k]) for k in ("image_grid_thw", "video_grid_thw")),
        None if seconds is None else torch.from_numpy(seconds), None, tokens_per_second=tokens_per_second)[0]


def accumulated(model, tensors, pos, dtype):
    """Every lm stage of one forward of the fused model, from the golden inputs."""
    captured, hooks = {}, []
    layers = model.decoder.layers
    hooks.append(layers[0].register_forward_pre_hook(
        lambda m, args: captured.__setitem__("lm.inputs_embeds", args[0].detach())))
    for i, layer in enumerate(layers):
        hooks.append(layer.mlp_norm.register_forward_pre_hook(
            lambda m, args, i=i: captured.__setitem__(f"lm.layers.{i}.attn_residual", args[0].detach())))
        hooks.append(layer.register_forward_hook(
            lambda m, args, out, i=i: captured.__setitem__(f"lm.layers.{i}.output", out.detach())))
    hooks.append(model.decoder.norm.register_forward_hook(
        lambda m, args, out: captured.__setitem__("lm.norm", out.detach())))
    encoder_input = {}
    for modality, pixels, grid in (("image", "pixel_values", "image_grid_thw"),
                                   ("video", "pixel_values_videos", "video_grid_thw")):
        if pixels in tensors:
            encoder_input[modality] = {"pixel_values": torch.from_numpy(tensors[pixels]).to(dtype),
                                       "grid_thw": torch.from_numpy(tensors[grid])}
    try:
        with torch.no_grad():
            captured["lm.logits"] = model(torch.from_numpy(tensors["input_ids"]), encoder_input=encoder_input or None,
                                          input_pos=pos)
    finally:
        for hook in hooks:
            hook.remove()
    return captured


def local(model, tensors, pos, dtype, depth):
    """Each stage's module fed the golden input of that stage."""
    out = {}
    g = {k: torch.from_numpy(v).to(dtype) for k, v in tensors.items() if k.startswith("lm.")}
    with torch.no_grad():
        for i, layer in enumerate(model.decoder.layers):
            x = g["lm.inputs_embeds"] if i == 0 else g[f"lm.layers.{i - 1}.output"]
            hook = layer.mlp_norm.register_forward_pre_hook(
                lambda m, args, i=i: out.__setitem__(f"lm.layers.{i}.attn_residual", args[0].detach()))
            out[f"lm.layers.{i}.output"] = layer(x, input_pos=pos)
            hook.remove()
        out["lm.norm"] = model.decoder.norm(g[f"lm.layers.{depth - 1}.output"])
        out["lm.logits"] = model.decoder.output(g["lm.norm"])
    return out


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", MODEL_CASES, ids=lambda c: c.name)
def test_port_matches_model_goldens_per_stage(case, dtype):
    tensors, meta = golden(case.name)
    config = MODELS[meta["model"]].config
    model = port(meta["model"], dtype)
    pos = port_positions(tensors, config.tokens_per_second)
    np.testing.assert_array_equal(pos.numpy(), tensors["position_ids"])
    depth = config.text.num_hidden_layers
    ours = {"accumulated": accumulated(model, tensors, pos, DTYPES[dtype]),
            "local": local(model, tensors, pos, DTYPES[dtype], depth)}
    rows, bad = [], []
    for stage in stage_names(depth):
        for kind, values in ours.items():
            if stage not in values:
                continue
            error = rel_error(values[stage], tensors[stage])
            bound = PORT_LM_VS_GOLDEN_BOUNDS[(dtype, kind)]
            rows.append(f"{stage:28s} {kind:11s} {error:.2e} (bound {bound:g})")
            if not error <= bound:
                bad.append(rows[-1])
    print("\n".join(rows))
    assert not bad, f"{case.name} {dtype}: first beyond its bound: {bad[0]}\n" + "\n".join(rows)
