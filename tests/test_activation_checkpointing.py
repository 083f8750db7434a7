"""Activation checkpointing of the vision tower, as torchtune's recipes switch it on.

The recipes call ``training.set_activation_checkpointing(model, auto_wrap_policy=
{modules.TransformerSelfAttentionLayer})``: that wraps the decoder layers only (the vision blocks are
plain torch modules). The fused model then checkpoints the vision blocks too
(``Qwen2_5_VLEarlyFusionModel.vision_activation_checkpointing``: None follows the decoder). On a tiny
random model with an image, in training mode:

* the blocks run twice per step (forward, then the recompute in backward) and the tensors autograd
  keeps from the forward shrink;
* the logits and every gradient are bit-equal to the run without checkpointing (the recompute runs the
  same operations on the same inputs, on CPU deterministically);
* ``vision_activation_checkpointing = False`` keeps the decoder-only behaviour the recipes had.
The peak-memory table of the benchmark model is ``benchmarks/ac_memory.py`` (docs/torchtune.md).
"""

import copy

import torch
from torchtune import modules, training

import torch_port
from hf_tiny_vl import config_dict, hf_model, pixel_values, text_ids, vision_run

WRAPPED = "._checkpoint_wrapped_module"


def _model_and_batch():
    model = torch_port.load_hf_model(config_dict("untied_mha"), hf_model("untied_mha").state_dict())
    g = torch.Generator().manual_seed(0)
    grid = torch.tensor([[1, 8, 8]])
    tokens = torch.tensor([text_ids(5, g) + vision_run(grid[0].tolist()) + text_ids(6, g)])
    pos = torch_port.qwen2_5_vl_rope_index(tokens, torch.zeros_like(tokens) + (tokens == 5).long(), grid)[0]
    return model.train(), dict(tokens=tokens, encoder_input={"image": {"pixel_values": pixel_values(grid, g),
                                                                        "grid_thw": grid}}, input_pos=pos)


def _step(model, batch):
    """(logits, {name: grad}, bytes autograd saved in the forward, vision block calls (pre-hooks: the
    recompute stops early, so a forward hook would not see it))."""
    calls, saved = [], []
    hooks = [b.register_forward_pre_hook(lambda *_: calls.append(1)) for b in model.encoder.layers]
    model.zero_grad(set_to_none=True)

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(batch["tokens"], encoder_input=batch["encoder_input"], input_pos=batch["input_pos"])
    forward_bytes = sum(saved)
    logits.square().mean().backward()
    for h in hooks:
        h.remove()
    grads = {n.replace(WRAPPED, ""): p.grad for n, p in model.named_parameters()}
    return logits.detach(), grads, forward_bytes, len(calls)


def test_recipe_checkpointing_covers_the_tower_with_equal_gradients():
    model, batch = _model_and_batch()
    plain = _step(model, batch)
    wrapped = copy.deepcopy(model)
    training.set_activation_checkpointing(wrapped, auto_wrap_policy={modules.TransformerSelfAttentionLayer})
    assert wrapped.vision_activation_checkpointing is None  # follows the decoder
    ckpt = _step(wrapped, batch)
    blocks = len(model.encoder.layers)
    print(f"saved in forward: {plain[2]} bytes without, {ckpt[2]} with checkpointing; "
          f"vision block calls {plain[3]} / {ckpt[3]}")
    assert plain[3] == blocks and ckpt[3] == 2 * blocks  # recomputed in backward
    assert ckpt[2] < plain[2]
    assert torch.equal(ckpt[0], plain[0])
    assert ckpt[1].keys() == plain[1].keys()
    for name, grad in plain[1].items():
        assert torch.equal(ckpt[1][name], grad), name

    wrapped.vision_activation_checkpointing = False  # decoder layers only, as before
    decoder_only = _step(wrapped, batch)
    assert decoder_only[3] == blocks and ckpt[2] < decoder_only[2] < plain[2]
    for name, grad in plain[1].items():
        assert torch.equal(decoder_only[1][name], grad), name


def test_standalone_tower_checkpointing_and_no_grad():
    model, batch = _model_and_batch()
    tower = model.encoder
    inp = batch["encoder_input"]["image"]
    with torch.no_grad():
        reference = tower(**inp)
    tower.activation_checkpointing = True
    with torch.no_grad():  # no gradients recorded: nothing to checkpoint, same output
        assert torch.equal(tower(**inp), reference)
    out = tower(**inp)
    assert torch.equal(out.detach(), reference)
    out.sum().backward()
    assert all(p.grad is not None for p in tower.parameters())
