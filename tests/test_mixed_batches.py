"""Batches mixing samples with and without images (text-only chats next to image / video chats).

The fused model runs the vision tower once per forward (images and videos in one call); under a
process group of several ranks a batch with neither runs a zero-weight dummy merge block, which is what
keeps FSDP ranks' collectives paired when one rank's batch is text only (the 2-process run is in
tests/test_distributed.py), while one process skips the tower as HF does. Here, on tiny random models:
one process leaves the tower's gradients None; the dummy pass changes neither the logits nor the
decoder's gradients and gives the tower zero gradients; image + video in one call gives HF's
logits; the dataset passes text-only rows through and the collate batches them with image rows.
"""

import json

import torch
from torchtune.data import Message

import torch_port
from goldenlib.tolerances import FUSED_LOGITS_VS_HF_BOUND, rel_error
from hf_tiny_vl import VIDEO_PAD, config_dict, hf_and_port, pixel_values, text_ids, token_types, vision_run


def _tower_calls(model):
    """A list that gets one entry per forward call of the vision tower."""
    calls = []
    model.encoder.register_forward_hook(lambda *_: calls.append(1))
    return calls


def _grads(model, tokens, **kwargs):
    model.zero_grad(set_to_none=True)
    logits = model(tokens, **kwargs)
    logits.square().mean().backward()
    return logits.detach(), {n: p.grad for n, p in model.named_parameters()}


def test_text_only_batch_in_one_process_skips_the_tower_as_hf():
    """One process: a text-only batch leaves the tower out of the graph (gradients None, as HF's),
    so the optimizer does not step it; train and eval alike."""
    model = torch_port.load_hf_model(config_dict("tied_gqa"), hf_and_port("tied_gqa")[0].state_dict())  # its own hooks
    calls = _tower_calls(model)
    tokens = torch.tensor([text_ids(9, torch.Generator().manual_seed(0))])
    for train in (False, True):
        model.train(train)
        _, grads = _grads(model, tokens)
        assert calls == [] and all(grads[n] is None for n, _ in model.encoder.named_parameters(prefix="encoders.image"))


def test_text_only_batch_with_the_dummy_pass_runs_the_tower_with_weight_zero():
    """The dummy pass (on by default under a process group of several ranks, forced here):
    one tower call, logits and decoder gradients bit-equal to the run without it, tower gradients zero."""
    model = torch_port.load_hf_model(config_dict("tied_gqa"), hf_and_port("tied_gqa")[0].state_dict())  # its own hooks
    calls = _tower_calls(model)
    tokens = torch.tensor([text_ids(9, torch.Generator().manual_seed(0))])
    model.train()
    plain_logits, plain_grads = _grads(model, tokens)
    assert calls == []
    model.vision_dummy_pass = True
    dummy_logits, dummy_grads = _grads(model, tokens)
    assert calls == [1]  # the dummy pass
    assert torch.equal(dummy_logits, plain_logits)  # weight 0: the logits are bit-equal
    for name, grad in dummy_grads.items():
        if name.startswith("encoders."):
            assert grad is not None and not grad.any(), name  # in the graph, with zero gradients
        else:
            assert torch.equal(grad, plain_grads[name]), name


def test_one_tower_call_for_image_and_video_equals_hf():
    hf, _ = hf_and_port("untied_gqa_hd8")
    model = torch_port.load_hf_model(config_dict("untied_gqa_hd8"), hf.state_dict())  # its own hooks
    calls = _tower_calls(model)
    g = torch.Generator().manual_seed(1)
    ig, vg = torch.tensor([[1, 4, 6]]), torch.tensor([[2, 4, 4]])
    ids = torch.tensor([text_ids(4, g) + vision_run(ig[0].tolist()) + text_ids(3, g)
                        + vision_run(vg[0].tolist(), pad=VIDEO_PAD) + text_ids(3, g)])
    ipv, vpv = pixel_values(ig, g), pixel_values(vg, g)
    seconds = torch.tensor([1.0])
    pos = torch_port.qwen2_5_vl_rope_index(ids, token_types(ids), ig, vg, seconds, tokens_per_second=2)[0]
    model.train()
    with torch.no_grad():
        got = model(ids, encoder_input={"image": {"pixel_values": ipv, "grid_thw": ig},
                                        "video": {"pixel_values": vpv, "grid_thw": vg}}, input_pos=pos)
        expected = hf(input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=token_types(ids),
                      pixel_values=ipv, image_grid_thw=ig, pixel_values_videos=vpv, video_grid_thw=vg,
                      second_per_grid_ts=seconds).logits
    model.eval()
    assert calls == [1]
    err = rel_error(got, expected)
    print(f"image + video in one tower call vs HF: logits rel err {err:.3g}")
    assert err <= FUSED_LOGITS_VS_HF_BOUND


def test_dataset_and_collate_mix_text_only_and_image_rows(tmp_path):
    from PIL import Image

    from recipe_fixtures import TEXT_ONLY
    from tiny_tokenizer import hf_tiny_tokenizer, write_tiny_tokenizer

    folder = tmp_path / "tok"
    write_tiny_tokenizer(folder)
    hf_tiny_tokenizer(folder).save_pretrained(folder)  # tokenizer.json: the special tokens' ids
    write_tiny_tokenizer(folder)
    Image.fromarray(torch.randint(0, 256, (56, 84, 3), dtype=torch.uint8).numpy()).save(tmp_path / "a.png")
    image_row = {"conversations": [{"from": "human", "value": "What is it?"}, {"from": "gpt", "value": "A cat."}],
                 "image": "a.png"}
    (tmp_path / "data.json").write_text(json.dumps([image_row, TEXT_ONLY]))  # datasets: row 2 gets image None
    transform = torch_port.Qwen2_5_VLTransform(str(folder / "vocab.json"), str(folder / "merges.txt"),
                                               str(folder / "tokenizer.json"))
    ds = torch_port.qwen2_5_vl_chat_dataset(transform, data_files=str(tmp_path / "data.json"), image_dir=str(tmp_path))
    image_sample, text_sample = ds[0], ds[1]
    assert set(image_sample["encoder_input"]) == {"image"} and text_sample["encoder_input"] == {}
    turns = TEXT_ONLY["conversations"]
    direct = transform({"messages": [Message(role="user", content=turns[0]["value"], masked=True),
                                     Message(role="assistant", content=turns[1]["value"])]})
    assert text_sample["tokens"] == direct["tokens"] and text_sample["labels"] == direct["labels"]
    batch = torch_port.padded_collate_qwen2_5_vl([text_sample, image_sample])
    assert torch.equal(batch["encoder_input"]["image"]["grid_thw"], image_sample["encoder_input"]["image"]["grid_thw"])
    assert int((batch["tokens"][0] == transform.image_token_id).sum()) == 0
