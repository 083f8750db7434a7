"""Packed batches (``dataset.pack=True``): every sample inside a pack is computed as it is alone.

Four samples in the layout ``Qwen2_5_VLTransform`` gives (text only, one image, two images, a video
with ``second_per_grid_ts``), each with its own 3-D positions from ``qwen2_5_vl_rope_index``, on a
tiny random model:

* packed (2 packs of 2, ``padded_collate_qwen2_5_vl``) vs unpacked (one padded batch of 4):
  the token-weighted loss and every parameter's gradient agree (float64), and each sample's logits
  inside its pack equal its logits alone (float64 and float32);
* HF's own packed mode (``position_ids`` ``[4, b, L]``, text row restarting per sample, no
  attention mask) gives the port's packed logits;
* the two things packing must get right each matter: without the block-causal mask, or with the
  positions computed over the whole pack, a sample's logits change;
* the collate's block-causal mask and padding, the dataset builder (``pack=True``; ``packed=True``
  refused naming ``dataset.pack=True``, also as a recipe instantiates the config), and one ``tune run``
  of the stock recipe packed against the unpacked run on the same samples (slow).
"""

import functools
import json

import pytest
import torch
import torch.nn.functional as F
from torchtune.data import CROSS_ENTROPY_IGNORE_IDX as IGNORE

import recipe_fixtures as rf
import torch_port
from goldenlib.tolerances import (
    FUSED_LOGITS_VS_HF_BOUND,
    PACKED_LOGITS_VS_ALONE_BOUND,
    PACKED_TUNE_RUN_LOSS_BOUND,
    PACKED_VS_UNPACKED_GRAD_BOUND,
    PACKED_VS_UNPACKED_LOSS_BOUND,
    rel_error,
)
from hf_tiny_vl import VIDEO_PAD, config_dict, hf_and_port, pixel_values, text_ids, token_types, vision_run
from torch_port._packing import best_fit_packs, pack_samples

CONFIG = "untied_gqa_hd8"
SECONDS = 1.0  # the video's second_per_grid_ts: its temporal positions step by tokens_per_second * 1.0


def _sample(g, images=(), video=None, answer=6):
    """A transformed sample: system/user text with its vision runs (masked), then the answer."""
    prompt = text_ids(4, g)
    grids = torch.tensor(images).view(-1, 3) if images else None
    for grid in images:
        prompt += vision_run(grid) + text_ids(2, g)
    vgrid = torch.tensor([video]) if video else None
    if video:
        prompt += vision_run(video, pad=VIDEO_PAD) + text_ids(2, g)
    reply = text_ids(answer, g)
    ids = torch.tensor([prompt + reply])
    pos = torch_port.qwen2_5_vl_rope_index(ids, token_types(ids), grids, vgrid,
                                           torch.tensor([SECONDS]) if video else None, tokens_per_second=2)[0]
    encoder_input = {}
    if images:
        encoder_input["image"] = {"pixel_values": pixel_values(grids, g), "grid_thw": grids}
    if video:
        encoder_input["video"] = {"pixel_values": pixel_values(vgrid, g), "grid_thw": vgrid}
    return {"tokens": prompt + reply, "labels": [IGNORE] * len(prompt) + reply, "input_pos": pos[:, 0],
            "encoder_input": encoder_input}


@functools.cache
def _samples():
    g = torch.Generator().manual_seed(0)
    return (_sample(g, answer=9), _sample(g, images=[[1, 4, 6]]), _sample(g, images=[[1, 2, 4], [1, 4, 4]]),
            _sample(g, video=[2, 4, 4]))


def _cast(sample, dtype):
    enc = {m: {"pixel_values": v["pixel_values"].to(dtype), "grid_thw": v["grid_thw"]}
           for m, v in sample["encoder_input"].items()}
    return {**sample, "encoder_input": enc}


def _model(dtype):
    return torch_port.load_hf_model(config_dict(CONFIG), hf_and_port(CONFIG)[0].state_dict(), dtype=dtype)


def _collate(samples):
    return torch_port.padded_collate_qwen2_5_vl(list(samples), padding_idx=0)  # the tiny vocabulary's pad


def _forward(model, batch):
    batch = dict(batch)
    batch.pop("labels")
    return model(**batch)


def _loss(logits, labels):
    """The recipe's loss: labels shifted left by one, cross-entropy summed over the labelled tokens /
    their number (token-weighted), in the logits' dtype."""
    shifted = torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], IGNORE)], dim=1)
    return F.cross_entropy(logits.flatten(0, 1), shifted.flatten(), ignore_index=IGNORE, reduction="sum") / (
        shifted != IGNORE).sum()


def _pieces(logits, packs):
    """Each sample's rows of a packed batch's logits, in sample order."""
    out = []
    for row, pack in enumerate(packs):
        start = 0
        for length in pack["seq_lens"].tolist():
            out.append(logits[row, start:start + length])
            start += length
    return out


def test_pack_keeps_each_samples_own_positions_labels_and_vision_inputs():
    samples = _samples()
    pack = pack_samples(samples)
    lengths = [len(s["tokens"]) for s in samples]
    assert pack["seq_lens"].tolist() == lengths
    starts = [sum(lengths[:k]) for k in range(len(samples))]
    for start, sample in zip(starts, samples):
        end = start + len(sample["tokens"])
        assert pack["tokens"][start:end].tolist() == sample["tokens"]
        assert torch.equal(pack["input_pos"][:, start:end], sample["input_pos"])  # restarting at 0
        assert pack["input_pos"][:, start].tolist() == [0, 0, 0]
        assert pack["labels"][start] == IGNORE  # no loss across the boundary
        assert pack["labels"][start + 1:end].tolist() == sample["labels"][1:]
    image_grids = [s["encoder_input"]["image"]["grid_thw"] for s in samples if "image" in s["encoder_input"]]
    assert torch.equal(pack["encoder_input"]["image"]["grid_thw"], torch.cat(image_grids))
    assert torch.equal(pack["encoder_input"]["image"]["pixel_values"],
                       torch.cat([s["encoder_input"]["image"]["pixel_values"] for s in samples
                                  if "image" in s["encoder_input"]]))
    assert torch.equal(pack["encoder_input"]["video"]["grid_thw"], samples[3]["encoder_input"]["video"]["grid_thw"])
    with pytest.raises(ValueError, match="cannot pack an empty list"):
        pack_samples([])
    with pytest.raises(ValueError, match=r"samples\[1\]: tokens \[20\], labels \[19\]"):
        pack_samples([samples[0], {**samples[1], "labels": samples[1]["labels"][1:]}])


def test_best_fit_packs_and_a_sample_too_long_named():
    # 5 -> A (4 free); 6 -> B (3 free); 3 -> B, the fullest that fits; 4 -> A; 2 -> C; 1 -> C
    assert best_fit_packs([5, 6, 3, 4, 2, 1], 9) == [[0, 3], [1, 2], [4, 5]]
    assert best_fit_packs([9, 9], 9) == [[0], [1]]
    assert best_fit_packs([4, 4, 1, 1], 9) == [[0, 1, 2], [3]]  # a full pack takes nothing more
    with pytest.raises(ValueError, match="sample 1 has 10 tokens.*max_seq_len = 9"):
        best_fit_packs([3, 10], 9)


def test_collate_packs_block_causal_mask_and_padding():
    samples = _samples()
    packs = [pack_samples(samples[:2]), pack_samples(samples[2:3])]
    batch = _collate(packs)
    width = max(len(p["tokens"]) for p in packs)
    assert batch["tokens"].shape == (2, width) and batch["input_pos"].shape == (3, 2, width)
    pad = width - len(packs[1]["tokens"])
    assert pad > 0 and batch["labels"][1, -pad:].eq(IGNORE).all() and batch["input_pos"][:, 1, -pad:].eq(0).all()
    for row, lengths in enumerate([packs[0]["seq_lens"].tolist(), packs[1]["seq_lens"].tolist() + [pad]]):
        doc = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
        i, j = torch.arange(width)[:, None], torch.arange(width)[None]
        expected = (j <= i) & (doc[:, None] == doc[None])
        assert torch.equal(batch["mask"][row], expected), row
    # left padding: the padding is the first block
    left = torch_port.padded_collate_qwen2_5_vl(packs, padding_idx=0, pad_direction="left")
    assert torch.equal(left["mask"][1], batch["mask"][1].roll((pad, pad), (0, 1)))
    assert torch.equal(left["input_pos"][:, 1, pad:], packs[1]["input_pos"])
    # a plain sample next to a pack is a pack of one
    mixed = _collate([packs[0], samples[2]])
    assert torch.equal(mixed["mask"][1], batch["mask"][1])
    with pytest.raises(ValueError, match=r"batch\[0\]: seq_lens \[3\] must be positive and sum to the pack's"):
        _collate([{**packs[0], "seq_lens": torch.tensor([3])}])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_each_samples_logits_in_a_pack_equal_its_logits_alone(dtype):
    model = _model(dtype)
    samples = [_cast(s, dtype) for s in _samples()]
    packs = [pack_samples(samples[:2]), pack_samples(samples[2:])]
    with torch.no_grad():
        packed = _pieces(_forward(model, _collate(packs)), packs)
        errors = [rel_error(got, _forward(model, _collate([s]))[0]) for got, s in zip(packed, samples)]
    print(f"{dtype}: packed vs alone, logits rel err per sample {[f'{e:.3g}' for e in errors]}")
    assert max(errors) <= PACKED_LOGITS_VS_ALONE_BOUND


def test_packed_loss_and_gradients_equal_unpacked():
    """float64: the same four samples as one padded batch and as two packs."""
    grads, losses = {}, {}
    for name, batch_samples in (("unpacked", list(_samples())),
                                ("packed", [pack_samples(_samples()[:2]), pack_samples(_samples()[2:])])):
        model = _model(torch.float64).train()
        batch = _collate([_cast(s, torch.float64) for s in batch_samples])
        loss = _loss(_forward(model, batch), batch["labels"])
        loss.backward()
        losses[name] = loss.item()
        grads[name] = {n: p.grad for n, p in model.named_parameters()}
    loss_err = abs(losses["packed"] - losses["unpacked"]) / abs(losses["unpacked"])
    assert grads["packed"].keys() == grads["unpacked"].keys()
    assert all(g is not None for g in grads["unpacked"].values())  # the tower too (images and a video)
    grad_err = max(rel_error(grads["packed"][n], grads["unpacked"][n]) for n in grads["unpacked"])
    print(f"float64 loss packed {losses['packed']:.12f} vs unpacked {losses['unpacked']:.12f}: rel diff "
          f"{loss_err:.3g}; gradients max rel err {grad_err:.3g} over {len(grads['unpacked'])} tensors")
    assert loss_err <= PACKED_VS_UNPACKED_LOSS_BOUND
    assert grad_err <= PACKED_VS_UNPACKED_GRAD_BOUND


def test_port_packed_logits_equal_hf_packed_mode():
    """HF's packed mode: ``position_ids`` [4, 1, L] (text positions restarting per sample on row 0,
    each sample's own 3-D positions below), no attention mask: a block-diagonal causal mask."""
    pack = pack_samples(_samples())
    enc = pack["encoder_input"]
    text = torch.cat([torch.arange(n) for n in pack["seq_lens"].tolist()])
    ids = pack["tokens"][None]
    with torch.no_grad():
        expected = hf_and_port(CONFIG)[0](input_ids=ids, position_ids=torch.cat([text[None], pack["input_pos"]])[:, None],
                         mm_token_type_ids=token_types(ids), use_cache=False,
                         pixel_values=enc["image"]["pixel_values"], image_grid_thw=enc["image"]["grid_thw"],
                         pixel_values_videos=enc["video"]["pixel_values"], video_grid_thw=enc["video"]["grid_thw"],
                         second_per_grid_ts=torch.tensor([SECONDS])).logits
        got = _forward(_model(torch.float32), _collate([pack]))
    err = rel_error(got, expected)
    print(f"port packed vs HF packed mode (float32): logits rel err {err:.3g}")
    assert err <= FUSED_LOGITS_VS_HF_BOUND


def test_without_the_mask_or_with_1d_positions_samples_change():
    """What the two rules buy: attention across samples, or plain 1-D positions restarting per sample
    (NeMo Automodel #2172), moves the logits of the samples with vision far beyond the bound."""
    samples = _samples()
    pack = pack_samples(samples)
    model = _model(torch.float32)
    batch = _collate([pack])
    one_d = torch.cat([torch.arange(n) for n in pack["seq_lens"].tolist()]).expand(3, 1, -1)
    with torch.no_grad():
        right = _pieces(_forward(model, batch), [pack])
        no_mask = _pieces(_forward(model, {k: v for k, v in batch.items() if k != "mask"}), [pack])
        wrong_pos = _pieces(_forward(model, {**batch, "input_pos": one_d}), [pack])
    for k in (1, 2, 3):
        assert rel_error(no_mask[k], right[k]) > 100 * PACKED_LOGITS_VS_ALONE_BOUND
        assert rel_error(wrong_pos[k], right[k]) > 100 * PACKED_LOGITS_VS_ALONE_BOUND


def test_positions_over_the_pack_only_shift_each_sample():
    """``qwen2_5_vl_rope_index`` over a whole pack (LLaMA-Factory #7754) shifts each sample's three
    axes by one constant: with the block-causal mask the rotary sees the same relative positions,
    so the logits move only by rounding; the positions themselves are not the sample's own."""
    pack = pack_samples(_samples())
    ids = pack["tokens"][None]
    enc = pack["encoder_input"]
    over_pack = torch_port.qwen2_5_vl_rope_index(ids, token_types(ids), enc["image"]["grid_thw"],
                                                 enc["video"]["grid_thw"], torch.tensor([SECONDS]),
                                                 tokens_per_second=2)[0][:, 0]
    start = 0
    for k, n in enumerate(pack["seq_lens"].tolist()):
        shift = over_pack[:, start:start + n] - pack["input_pos"][:, start:start + n]
        assert shift.unique().numel() == 1 and (k == 0) == (int(shift[0, 0]) == 0), k
        start += n


# ------------------------------------------------------------------ the dataset builder


@pytest.fixture(scope="module")
def chat_files(tmp_path_factory):
    """(transform folder, dataset JSON, image folder): image, text-only, two-image-free rows."""
    from PIL import Image

    from tiny_tokenizer import hf_tiny_tokenizer, write_tiny_tokenizer

    root = tmp_path_factory.mktemp("pack_data")
    folder = root / "tok"
    write_tiny_tokenizer(folder)
    hf_tiny_tokenizer(folder).save_pretrained(folder)  # tokenizer.json: the special tokens' ids
    write_tiny_tokenizer(folder)
    g = torch.Generator().manual_seed(3)
    rows = []
    for k, (question, answer) in enumerate(zip(rf.QUESTIONS, rf.ANSWERS)):
        pixels = torch.randint(0, 256, (56 + 28 * k, 84, 3), generator=g, dtype=torch.uint8).numpy()
        Image.fromarray(pixels).save(root / f"{k}.png")
        rows += [{"conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}],
                  "image": f"{k}.png"}, rf.TEXT_ONLY]
    (root / "data.json").write_text(json.dumps(rows))
    return folder, root / "data.json", root


def _transform(folder, max_seq_len):
    return torch_port.Qwen2_5_VLTransform(str(folder / "vocab.json"), str(folder / "merges.txt"),
                                          str(folder / "tokenizer.json"), max_seq_len=max_seq_len)


def test_builder_pack_true_packs_the_transforms_samples(chat_files):
    from torchtune.datasets import ConcatDataset

    folder, data, image_dir = chat_files
    plain = torch_port.qwen2_5_vl_chat_dataset(_transform(folder, 200), data_files=str(data), image_dir=str(image_dir))
    samples = [plain[i] for i in range(len(plain))]
    lengths = [len(s["tokens"]) for s in samples]
    max_seq_len = lengths[0] + lengths[1]  # an image chat and a text-only chat per pack
    packed = torch_port.qwen2_5_vl_chat_dataset(_transform(folder, max_seq_len), data_files=str(data),
                                                image_dir=str(image_dir), pack=True)
    assert isinstance(packed, torch_port.Qwen2_5_VLPackedDataset)
    assert packed.packs == best_fit_packs(lengths, max_seq_len) and len(packed) < len(samples)
    for k, indices in enumerate(packed.packs):
        pack, expected = packed[k], pack_samples([samples[i] for i in indices])
        assert pack.keys() == expected.keys() and len(pack["tokens"]) <= max_seq_len
        for key in ("tokens", "labels", "input_pos", "seq_lens"):
            assert torch.equal(pack[key], expected[key]), (k, key)
        assert pack["encoder_input"].keys() == expected["encoder_input"].keys()
        for modality, inputs in expected["encoder_input"].items():
            for key, value in inputs.items():
                assert torch.equal(pack["encoder_input"][modality][key], value), (k, modality, key)
    assert sum("image" in packed[k]["encoder_input"] for k in range(len(packed))) >= 1
    # torchtune's recipes swap in the text-only collate only for its own PackedDataset
    assert not ConcatDataset([packed]).packed
    first = torch_port.Qwen2_5_VLPackedDataset(plain, max_seq_len=max_seq_len, max_packs=1)
    assert first.packs == packed.packs[:1] and torch.equal(first[0]["tokens"], packed[0]["tokens"])


def test_builder_refuses_packed_naming_pack_and_pack_without_max_seq_len(chat_files):
    folder, data, image_dir = chat_files
    with pytest.raises(ValueError, match=r"dataset\.packed=True is not supported.*padded_collate_packed.*"
                                         r"dataset\.pack=True"):
        torch_port.qwen2_5_vl_chat_dataset(_transform(folder, 64), data_files=str(data), image_dir=str(image_dir),
                                           packed=True)
    with pytest.raises(ValueError, match=r"dataset\.pack=True .* max_seq_len, which is None"):
        torch_port.qwen2_5_vl_chat_dataset(_transform(folder, None), data_files=str(data), image_dir=str(image_dir),
                                           pack=True)


def test_config_with_dataset_packed_fails_when_the_recipe_builds_the_dataset(chat_files):
    """What the stock recipes' ``_setup_data`` does first with ``dataset.packed=True``: instantiate the
    dataset, before any step."""
    from torchtune import config

    folder, data, image_dir = chat_files
    cfg = rf.parse_recipe_config(rf.CONFIGS / "qwen2_5_vl_3b_full.yaml", [
        f"dataset.data_files={data}", f"dataset.image_dir={image_dir}", "dataset.packed=True"])
    with pytest.raises(ValueError, match=r"dataset\.pack=True"):
        config.instantiate(cfg.dataset, _transform(folder, 64))


@pytest.mark.slow  # one `tune run` subprocess (the unpacked run is the session's shared in-process run)
def test_tune_run_packed_logs_the_unpacked_losses(tmp_path, tmp_path_factory):
    """The stock full_finetune_single_device, ``dataset.pack=True``, batch 1: packs of samples (0, 1)
    twice, the same samples as the unpacked run's batches of 2; its logged losses are the unpacked run's."""
    folder, data_json, data_dir = rf.shared_recipe_folder(tmp_path_factory)
    _, _, unpacked = rf.full_single_device_run(tmp_path_factory)
    samples = rf.recipe_samples(folder, data_json, data_dir)
    max_seq_len = sum(len(s["tokens"]) for s in samples)  # exactly samples 0 and 1 per pack
    overrides = [o for o in rf.recipe_overrides(folder, data_json, data_dir, tmp_path / "out",
                                                model_component="torch_port.qwen2_5_vl_from_hf_config")
                 if not o.startswith("batch_size=")]
    rf.tune_run(["full_finetune_single_device", "--config", "configs/qwen2_5_vl_3b_full.yaml", *overrides,
                 "batch_size=1", "dataset.pack=True", f"tokenizer.max_seq_len={max_seq_len}"], tmp_path / "tune.log")
    packed = rf.logged_losses(tmp_path / "out" / "logs")
    diffs = [abs(p - u) / abs(u) for p, u in zip(packed, unpacked)]
    print(f"tune run packed losses {packed}, unpacked {unpacked}: rel diffs {[f'{d:.3g}' for d in diffs]}")
    assert len(packed) == len(unpacked) == 2
    assert max(diffs) <= PACKED_TUNE_RUN_LOSS_BOUND
