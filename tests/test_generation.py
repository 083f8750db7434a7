"""torch_port.generate (greedy, torchtune KV caches, HF's rope deltas) against HF's
``generate(do_sample=False)`` on tiny random Qwen2.5-VL models: the generated ids must be equal."""

import pytest
import torch

import torch_port
from hf_tiny_vl import (
    TINY_VL_CONFIGS,
    VIDEO_PAD,
    hf_and_port,
    pixel_values,
    text_ids,
    token_types,
    vision_run,
)

EOS = 2  # the tiny configs' eos_token_id, HF's default stop token there
SECONDS = torch.tensor([1.5])  # second_per_grid_ts of the video (both sides get it)


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
    hf, model = hf_and_port(name)
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
    hf, model = hf_and_port("untied_mha")
    ids, grid, pv = _image_prompt(seed=1, grids=((1, 4, 6), (1, 6, 4)))
    with torch.no_grad():
        expected = _hf_generate(hf, ids, pixel_values=pv, image_grid_thw=grid)
    got = torch_port.generate(model, ids, encoder_input={"image": {"pixel_values": pv, "grid_thw": grid}},
                              max_new_tokens=8, stop_tokens=[EOS])
    assert torch.equal(got, expected)


@pytest.mark.parametrize("name", ["tied_gqa", "untied_gqa_hd8"])
def test_greedy_video_prompt_matches_hf(name):
    hf, model = hf_and_port(name)
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
    hf, model = hf_and_port("untied_gqa_hd8")
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
    _, model = hf_and_port("tied_gqa")
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
    _, model = hf_and_port("tied_gqa")
    ids, grid, pv = _image_prompt()
    enc = {"image": {"pixel_values": pv, "grid_thw": grid}}
    with pytest.raises(ValueError, match="max_new_tokens must be a positive int, got 0"):
        torch_port.generate(model, ids, encoder_input=enc, max_new_tokens=0)
    with pytest.raises(ValueError, match=r"input_pos must be \[3, b, s\]"):
        torch_port.generate(model, ids, encoder_input=enc, input_pos=torch.zeros(1, ids.shape[1]), max_new_tokens=2)
    with pytest.raises(ValueError, match="exceeds the decoder's max_seq_len 512"):
        torch_port.generate(model, ids, encoder_input=enc, max_new_tokens=600)
    assert not model.caches_are_setup()


# ----------------------------------------------------------------------------- sampling


def _torchtune_sampled(hf, ids, n, enc_hf, temperature, top_k, seed):
    """The reference: HF's logits (uncached, whole sequence each step) and torchtune's ``sample`` with
    ``q`` drawn as torchtune's ``generate(rng=...)`` draws it, one ``[b, vocab]`` block per step."""
    from torchtune.generation import sample

    rng = torch.Generator().manual_seed(seed)
    out = ids
    with torch.no_grad():
        for _ in range(n):
            logits = hf(input_ids=out, attention_mask=torch.ones_like(out), mm_token_type_ids=token_types(out),
                        **enc_hf).logits[:, -1]
            q = torch.empty(logits.shape).exponential_(1, generator=rng)
            out = torch.cat([out, sample(logits.clone(), temperature=temperature, top_k=top_k, q=q).long()], dim=1)
    return out


@pytest.mark.parametrize("temperature, top_k", [(1.0, None), (0.7, 5)])
def test_sampling_matches_torchtune_sample_on_hf_logits(temperature, top_k):
    hf, model = hf_and_port("untied_gqa_hd8")
    ids, grid, pv = _image_prompt(seed=5, grids=((1, 4, 6), (1, 6, 4)))
    expected = _torchtune_sampled(hf, ids, 6, {"pixel_values": pv, "image_grid_thw": grid}, temperature, top_k, 11)
    got = torch_port.generate(model, ids, encoder_input={"image": {"pixel_values": pv, "grid_thw": grid}},
                              max_new_tokens=6, temperature=temperature, top_k=top_k,
                              rng=torch.Generator().manual_seed(11))
    print(f"T={temperature} top_k={top_k}: torchtune sample on HF logits {expected[:, ids.shape[1]:].tolist()}, "
          f"port {got[:, ids.shape[1]:].tolist()}")
    assert torch.equal(got, expected)
    greedy = torch_port.generate(model, ids, encoder_input={"image": {"pixel_values": pv, "grid_thw": grid}},
                                 max_new_tokens=6)
    assert not torch.equal(got, greedy)  # the draws do change the tokens here


def test_temperature_zero_is_hf_greedy_and_top_k_one_is_argmax():
    hf, model = hf_and_port("tied_gqa")
    ids, grid, pv = _image_prompt(seed=6)
    enc = {"image": {"pixel_values": pv, "grid_thw": grid}}
    with torch.no_grad():
        expected = _hf_generate(hf, ids, pixel_values=pv, image_grid_thw=grid)
    assert torch.equal(torch_port.generate(model, ids, encoder_input=enc, max_new_tokens=8, temperature=0,
                                           top_k=3, rng=torch.Generator().manual_seed(0)), expected)
    # top_k=1 leaves one token to draw: the argmax, whatever the temperature and the draws
    assert torch.equal(torch_port.generate(model, ids, encoder_input=enc, max_new_tokens=8, temperature=1.3,
                                           top_k=1, rng=torch.Generator().manual_seed(1)), expected)


def test_bad_sampling_arguments_named():
    _, model = hf_and_port("tied_gqa")
    ids, grid, pv = _image_prompt()
    enc = {"image": {"pixel_values": pv, "grid_thw": grid}}
    for kwargs, message in [({"temperature": -0.5}, "temperature must be a finite number >= 0 .* got -0.5"),
                            ({"temperature": float("nan")}, "temperature must be a finite number >= 0 .* got nan"),
                            ({"top_k": 0}, "top_k must be None or a positive int, got 0"),
                            ({"rng": 7}, "rng must be a torch.Generator or None, got int")]:
        with pytest.raises(ValueError, match=message):
            torch_port.generate(model, ids, encoder_input=enc, max_new_tokens=2, **kwargs)
    assert not model.caches_are_setup()


# ----------------------------------------------------------------------------- the generation command


@pytest.mark.slow
def test_generation_config_command_prints_hf_greedy_answer(tmp_path):
    """``tune run tune_recipes/generate.py --config configs/qwen2_5_vl_3b_generation.yaml`` on a synthetic
    HF folder (tests/hf_tiny_folder.py, plus the tokenizer.json a released folder has), at temperature 0:
    the printed ids are HF's greedy ``generate`` on the same prompt, the printed answer their decoding."""
    import subprocess
    import sys
    from pathlib import Path

    import PIL.Image
    from torchtune.data import Message
    from transformers import Qwen2_5_VLForConditionalGeneration

    from hf_tiny_folder import write_hf_folder
    from tiny_tokenizer import hf_tiny_tokenizer, write_tiny_tokenizer

    root = Path(__file__).resolve().parents[1]
    folder = write_hf_folder(tmp_path / "hf")
    hf_tiny_tokenizer(folder).save_pretrained(tmp_path / "tok")
    (folder / "tokenizer.json").write_bytes((tmp_path / "tok" / "tokenizer.json").read_bytes())
    write_tiny_tokenizer(folder)
    image, question, n = "data/photos/chelsea.png", "What is in this image?", 6
    tune = Path(sys.executable).with_name("tune")
    proc = subprocess.run(
        [str(tune), "run", "tune_recipes/generate.py", "--config", "configs/qwen2_5_vl_3b_generation.yaml",
         f"model_dir={folder}", "model._component_=torch_port.qwen2_5_vl_from_hf_config",
         f"model.config={folder / 'config.json'}", f"output_dir={tmp_path}", "device=cpu", "dtype=fp32",
         "temperature=0", f"max_new_tokens={n}", f"prompt.user.image={image}", f"prompt.user.text={question}"],
        cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    print("\n".join(lines[-2:]))
    assert lines[-1].startswith("generated ids: ")
    ids = [int(x) for x in lines[-1][len("generated ids: ["):-1].split(",") if x.strip()]

    transform = torch_port.Qwen2_5_VLTransform(str(folder / "vocab.json"), str(folder / "merges.txt"),
                                               str(folder / "tokenizer.json"), max_pixels=1003520)
    user = Message(role="user", content=[{"type": "image", "content": PIL.Image.open(root / image).convert("RGB")},
                                         {"type": "text", "content": question}])
    prompt = transform({"messages": [user, Message(role="assistant", content="")]}, inference=True)
    tokens = torch.tensor([prompt["tokens"]])
    hf = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        expected = hf.generate(input_ids=tokens, attention_mask=torch.ones_like(tokens),
                               mm_token_type_ids=(tokens == transform.image_token_id).long(), do_sample=False,
                               max_new_tokens=n, eos_token_id=list(transform.stop_tokens),
                               pixel_values=prompt["encoder_input"]["image"]["pixel_values"],
                               image_grid_thw=prompt["encoder_input"]["image"]["grid_thw"])[0, tokens.shape[1]:].tolist()
    assert ids == expected
    assert lines[-2] == transform.decode(ids, skip_special_tokens=True)
