"""torch_port.generate (greedy, torchtune KV caches, HF's rope deltas) against HF's
``generate(do_sample=False)`` on tiny random Qwen2.5-VL models: the generated ids must be equal."""

import functools

import pytest
import torch


import torch_port  # noqa: E402
from hf_tiny_vl import (  # noqa: E402
    TINY_VL_CONFIGS,
    VIDEO_PAD,
    config_dict,
    hf_model,
    pixel_values,
    text_ids,
    token_types,
    vision_run,
)

EOS = 2  # the tiny configs' eos_token_id, HF's default stop token there
SECONDS = torch.tensor([1.5])  # second_per_grid_ts of the video (both sides get it)


@functools.cache
def models(name):
    hf = hf_model(name)
    return hf, torch_port.load_hf_model(config_dict(name), hf.state_dict())


def _image_prompt(seed=0, grids=((1, 4, 6),)):
    """ids [b, s] (one image per row, same length), grids [b, 3], pixel values."""
    g = torch.Generator().manual_seed(seed)
    rows = [text_ids(4, g) + vision_run(grid) + text_ids(3, g) for grid in grids]
    grid = torch.tensor(grids)
    return torch.tensor(rows), grid, pixel_values(grid, g)


def _hf_generate(hf, ids, n=8, **kw):
    out = hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=token_types(ids),
                      do_sample=False, max_new_tokens=n, **kw)
    return out


@pytest.mark.parametrize("name", sorted(TINY_VL_CONFIGS))
def test_greedy_image_prompt_matches_hf(name):
    hf, model = models(name)
    ids, grid, pv = _image_prompt()
    with torch.no_grad():
        expected = _hf_generate(hf, ids, pixel_values=pv, image_grid_thw=grid)
    got = torch_port.generate(model, ids, encoder_input={"image": {"pixel_values": pv, "grid_thw": grid}},
                              max_new_tokens=8, stop_tokens=[EOS])
    print(f"{name}: HF {expected[0, ids.shape[1]:].tolist()} port {got[0, ids.shape[1]:].tolist()}")
    assert torch.equal(got, expected)
    assert not model.caches_are_setup()


@pytest.mark.slow
def test_batch_of_two_images_matches_hf():
    hf, model = models("untied_mha")
    ids, grid, pv = _image_prompt(seed=1, grids=((1, 4, 6), (1, 6, 4)))
    with torch.no_grad():
        expected = _hf_generate(hf, ids, pixel_values=pv, image_grid_thw=grid)
    got = torch_port.generate(model, ids, encoder_input={"image": {"pixel_values": pv, "grid_thw": grid}},
                              max_new_tokens=8, stop_tokens=[EOS])
    assert torch.equal(got, expected)


@pytest.mark.parametrize("name", ["tied_gqa", "untied_gqa_hd8"])
def test_greedy_video_prompt_matches_hf(name):
    hf, model = models(name)
    g = torch.Generator().manual_seed(2)
    vgrid = torch.tensor([[4, 4, 4]])
    ids = torch.tensor([text_ids(3, g) + vision_run(vgrid[0].tolist(), pad=VIDEO_PAD) + text_ids(2, g)])
    pvv = pixel_values(vgrid, g)
    pos = torch_port.qwen2_5_vl_rope_index(ids, token_types(ids), None, vgrid, SECONDS, tokens_per_second=2)[0]
    with torch.no_grad():
        expected = _hf_generate(hf, ids, pixel_values_videos=pvv, video_grid_thw=vgrid, second_per_grid_ts=SECONDS)
    got = torch_port.generate(model, ids, encoder_input={"video": {"pixel_values": pvv, "grid_thw": vgrid}},
                              input_pos=pos, max_new_tokens=8, stop_tokens=[EOS])
    assert torch.equal(got, expected)


def test_stop_token_ends_generation_as_hf():
    hf, model = models("untied_gqa_hd8")
    ids, grid, pv = _image_prompt(seed=3)
    enc = {"image": {"pixel_values": pv, "grid_thw": grid}}
    free = torch_port.generate(model, ids, encoder_input=enc, max_new_tokens=8)  # no stop tokens
    new = free[0, ids.shape[1]:].tolist()
    k = next(i for i in range(1, len(new)) if new[i] not in new[:i])  # first token not seen before it
    with torch.no_grad():
        expected = _hf_generate(hf, ids, pixel_values=pv, image_grid_thw=grid, eos_token_id=new[k])
    got = torch_port.generate(model, ids, encoder_input=enc, max_new_tokens=8, stop_tokens=[new[k]])
    assert got.shape[1] == ids.shape[1] + k + 1 and got[0, -1] == new[k]
    assert torch.equal(got, expected)


def test_model_reusable_after_generate():
    _, model = models("tied_gqa")
    ids, grid, pv = _image_prompt(seed=4)
    enc = {"image": {"pixel_values": pv, "grid_thw": grid}}
    pos = torch_port.qwen2_5_vl_rope_index(ids, token_types(ids), grid)[0]
    with torch.no_grad():
        before = model(ids, encoder_input=enc, input_pos=pos)
    first = torch_port.generate(model, ids, encoder_input=enc, max_new_tokens=4)
    with torch.no_grad():
        after = model(ids, encoder_input=enc, input_pos=pos)
    assert torch.equal(before, after) and not model.caches_are_setup()
    assert torch.equal(torch_port.generate(model, ids, encoder_input=enc, max_new_tokens=4), first)
    # the first new token is the argmax of the uncached forward's last row
    assert first[0, ids.shape[1]] == before[0, -1].argmax()


def test_bad_arguments_named():
    _, model = models("tied_gqa")
    ids, grid, pv = _image_prompt()
    enc = {"image": {"pixel_values": pv, "grid_thw": grid}}
    with pytest.raises(ValueError, match="max_new_tokens must be a positive int, got 0"):
        torch_port.generate(model, ids, encoder_input=enc, max_new_tokens=0)
    with pytest.raises(ValueError, match=r"input_pos must be \[3, b, s\]"):
        torch_port.generate(model, ids, encoder_input=enc, input_pos=torch.zeros(1, ids.shape[1]), max_new_tokens=2)
    with pytest.raises(ValueError, match="exceeds the decoder's max_seq_len 512"):
        torch_port.generate(model, ids, encoder_input=enc, max_new_tokens=600)
    assert not model.caches_are_setup()
