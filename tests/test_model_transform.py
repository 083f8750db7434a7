"""torch_port.Qwen2_5_VLTransform and padded_collate_qwen2_5_vl against HF's Qwen2_5_VLProcessor.

The tiny BPE vocabulary is written by tests/tiny_tokenizer.py (no model hub); HF's processor is
built from the same files (``Qwen2Tokenizer``), ``Qwen2VLImageProcessorPil`` with the same pixel
bounds, and a chat template string in Qwen2-VL's format (default system prompt, one placeholder per
image). Expected tokens, pixel values and grids come from that processor, positions from HF's
``get_rope_index``.
"""

from __future__ import annotations

import inspect
import json
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
import torch
from torchtune.data import CROSS_ENTROPY_IGNORE_IDX, Message
from torchtune.models.qwen2_5._tokenizer import Qwen2_5Tokenizer
from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessorPil, Qwen2VLVideoProcessor

import torch_port
from hf_chat import CHAT_TEMPLATE, hf_rope_index
from hf_tiny_vl import hf_and_port
from tiny_tokenizer import SPECIAL_IDS, hf_tiny_tokenizer, write_tiny_tokenizer

MIN_PIXELS, MAX_PIXELS = 56 * 56, 112 * 112  # small images: 4..16 merged tokens each
VIDEO_MAX_PIXELS = 84 * 84  # frames of at most 3x3 merged tokens
IMAGE_ID, VIDEO_ID = SPECIAL_IDS["<|image_pad|>"], SPECIAL_IDS["<|video_pad|>"]
START_ID, END_ID = SPECIAL_IDS["<|vision_start|>"], SPECIAL_IDS["<|vision_end|>"]
PAD_ID, EOS_ID = SPECIAL_IDS["<|endoftext|>"], SPECIAL_IDS["<|im_end|>"]

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_tokenizer")
    vocab, merges = write_tiny_tokenizer(folder)
    return SimpleNamespace(folder=folder, vocab=str(vocab), merges=str(merges))


@pytest.fixture(scope="module")
def transform(files):
    return torch_port.Qwen2_5_VLTransform(files.vocab, files.merges, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS,
                                          video_options={"min_pixels": MIN_PIXELS, "max_pixels": VIDEO_MAX_PIXELS})


@pytest.fixture(scope="module")
def processor(files):
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS),
        tokenizer=hf_tiny_tokenizer(files.folder),
        video_processor=Qwen2VLVideoProcessor(min_pixels=MIN_PIXELS, max_pixels=VIDEO_MAX_PIXELS,
                                              cap_pixels_per_frame=False),
        chat_template=CHAT_TEMPLATE,
    )


def image(seed: int, height: int, width: int) -> PIL.Image.Image:
    return PIL.Image.fromarray(np.random.RandomState(seed).randint(0, 256, (height, width, 3), dtype=np.uint8))


def video(seed: int, frames: int, height: int, width: int) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, (frames, height, width, 3), dtype=np.uint8)


def hf_inputs(processor, conversations, images, add_generation_prompt, padding_side="right"):
    texts = [processor.apply_chat_template(c, add_generation_prompt=add_generation_prompt, tokenize=False)
             for c in conversations]
    return processor(text=texts, images=images or None, padding=True, padding_side=padding_side,
                     return_tensors="pt")


def to_hf(messages):
    """torchtune Messages -> HF chat dicts (image parts without the image: the processor gets them)."""
    out = []
    for m in messages:
        parts = [{"type": p["type"]} if p["type"] in ("image", "video") else {"type": "text", "text": p["content"]}
                 for p in m.content]
        out.append({"role": m.role, "content": parts})
    return out


def check_against_hf(sample, hf, row=0):
    """Tokens, vision inputs and positions of one transformed sample == HF's processor (row ``row``)."""
    real = hf["attention_mask"][row].bool()
    ids = hf["input_ids"][row][real]
    assert sample["tokens"] == ids.tolist()
    grid = hf.get("image_grid_thw")
    if grid is None:
        assert "image" not in sample["encoder_input"]
    else:
        got = sample["encoder_input"]["image"]
        assert torch.equal(got["grid_thw"], grid)
        assert torch.equal(got["pixel_values"], hf["pixel_values"])  # bit-exact (Pillow backend)
        # placeholders per image = grid.prod() // merge**2
        runs = torch.tensor(sample["tokens"]) == IMAGE_ID
        assert int(runs.sum()) == int((grid.prod(dim=1) // 4).sum())
    positions = hf_rope_index(hf["input_ids"][row : row + 1], hf["mm_token_type_ids"][row : row + 1],
                              grid, None, None, hf["attention_mask"][row : row + 1])
    assert torch.equal(sample["input_pos"], positions[:, 0, real])


# ----------------------------------------------------------------------------- transform vs HF


def test_generation_prompt_with_one_image_equals_hf(transform, processor):
    img = image(0, 60, 90)
    messages = [Message("user", [{"type": "image", "content": img},
                                 {"type": "text", "content": " What is in this image?"}]),
                Message("assistant", "")]
    sample = transform({"messages": messages}, inference=True)
    hf = hf_inputs(processor, [to_hf(messages[:1])], [img], add_generation_prompt=True)
    check_against_hf(sample, hf)
    assert sample["input_pos"].shape == (3, len(sample["tokens"])) and sample["input_pos"].dtype == torch.int64
    # <|vision_start|> <|image_pad|> x n <|vision_end|> with n from the grid
    n = int(hf["image_grid_thw"][0].prod()) // 4
    k = sample["tokens"].index(START_ID)
    assert sample["tokens"][k : k + n + 2] == [START_ID] + [IMAGE_ID] * n + [END_ID]


def test_conversation_with_two_images_equals_hf(transform, processor):
    """Training sample, two turns, three images of different sizes: HF's tokens but the final newline
    (torchtune's convention: the conversation ends with the eos <|im_end|>, no footer after it)."""
    imgs = [image(1, 40, 100), image(2, 120, 70), image(3, 56, 56)]
    messages = [
        Message("user", [{"type": "image", "content": imgs[0]}, {"type": "image", "content": imgs[1]},
                         {"type": "text", "content": " Describe the picture"}], masked=True),
        Message("assistant", " A cat and a dog"),
        Message("user", [{"type": "text", "content": " What is in this image?"}, {"type": "image", "content": imgs[2]}],
                masked=True),
        Message("assistant", " A red square"),
    ]
    sample = transform({"messages": messages, "id": 7})
    hf = hf_inputs(processor, [to_hf(messages)], imgs, add_generation_prompt=False)
    newline = transform.encode("\n", add_bos=False, add_eos=False)
    assert hf["input_ids"][0, -len(newline):].tolist() == newline
    rows = ("input_ids", "attention_mask", "mm_token_type_ids")
    trimmed = {**hf, **{key: hf[key][:, : -len(newline)] for key in rows}}
    check_against_hf(sample, trimmed)
    assert sample["id"] == 7 and "messages" not in sample
    # loss mask: system + user turns masked, assistant turns (and the final eos) not
    tokens, mask = sample["tokens"], sample["mask"]
    assert tokens[-1] == EOS_ID and mask[-1] is False
    assert sample["labels"] == [CROSS_ENTROPY_IGNORE_IDX if m else t for t, m in zip(tokens, mask)]
    assert not any(m is False and t in (IMAGE_ID, START_ID, END_ID) for t, m in zip(tokens, mask))
    assert transform.tokenize_messages(messages) == (tokens, mask)


def test_image_and_video_equal_hf(transform, processor):
    """A video (5 frames -> t = 3, clip at 1.6 fps: 1.25 s per temporal patch, positions 2.5 apart)
    after an image: tokens, pixel values, grids and positions (with second_per_grid_ts) as HF's."""
    img, clip = image(11, 64, 96), video(12, 5, 50, 70)
    messages = [Message("user", [{"type": "image", "content": img}, {"type": "text", "content": " and"},
                                 {"type": "video", "content": clip, "video_fps": 1.6},
                                 {"type": "text", "content": " What is"}]), Message("assistant", "")]
    sample = transform({"messages": messages}, inference=True)
    text = processor.apply_chat_template(to_hf(messages[:1]), add_generation_prompt=True, tokenize=False)
    hf = processor(text=[text], images=[img], videos=[clip], video_metadata=[{"total_num_frames": 5, "fps": 1.6}],
                   return_tensors="pt")
    assert sample["tokens"] == hf["input_ids"][0].tolist()
    got = sample["encoder_input"]
    assert torch.equal(got["image"]["pixel_values"], hf["pixel_values"])
    assert torch.equal(got["video"]["grid_thw"], hf["video_grid_thw"]) and int(hf["video_grid_thw"][0, 0]) == 3
    assert torch.equal(got["video"]["pixel_values"], hf["pixel_values_videos"])
    n = int(hf["video_grid_thw"][0].prod()) // 4
    assert sample["tokens"].count(VIDEO_ID) == n
    positions = hf_rope_index(hf["input_ids"], hf["mm_token_type_ids"], hf["image_grid_thw"], hf["video_grid_thw"],
                              hf["second_per_grid_ts"], hf["attention_mask"])
    assert torch.equal(sample["input_pos"], positions[:, 0])
    batch = torch_port.padded_collate_qwen2_5_vl([sample, transform({"messages": messages[:1]})])
    assert set(batch["encoder_input"]) == {"image", "video"}
    assert torch.equal(batch["encoder_input"]["video"]["grid_thw"], hf["video_grid_thw"].repeat(2, 1))


def test_explicit_system_message_and_no_default(files, processor):
    img = image(4, 64, 64)
    system = Message("system", "You are a helpful assistant", masked=True)
    user = Message("user", [{"type": "text", "content": "What is"}, {"type": "image", "content": img}], masked=True)
    plain = torch_port.Qwen2_5_VLTransform(files.vocab, files.merges, system_prompt=None,
                                           min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    with_system = plain({"messages": [system, user, Message("assistant", "")]}, inference=True)
    check_against_hf(with_system, hf_inputs(processor, [to_hf([system, user])], [img], add_generation_prompt=True))
    bare = plain({"messages": [user, Message("assistant", "")]}, inference=True)
    assert bare["tokens"][:3] == plain.encode("<|im_start|>user\n", add_bos=False, add_eos=False)


def test_text_only_equals_torchtune_qwen2_5_tokenizer(files):
    """Without images the transform is torchtune's Qwen2_5Tokenizer (same vocabulary, truncation)."""
    messages = [Message("system", "You are a helpful assistant.", masked=True), Message("user", "What is", masked=True),
                Message("assistant", " A red square")]
    for max_seq_len in (None, 9, 20):
        ours = torch_port.Qwen2_5_VLTransform(files.vocab, files.merges, max_seq_len=max_seq_len)
        theirs = Qwen2_5Tokenizer(files.vocab, files.merges, max_seq_len=max_seq_len)
        for add_eos in (True, False):
            expected = theirs.tokenize_messages(messages, add_eos=add_eos)
            assert ours.tokenize_messages(messages, add_eos=add_eos) == expected
    sample = ours({"messages": messages})
    assert sample["encoder_input"] == {}
    assert torch.equal(sample["input_pos"], torch.arange(len(sample["tokens"])).expand(3, -1))


def test_special_tokens_from_hf_tokenizer_json(files, processor, tmp_path):
    processor.tokenizer.save_pretrained(tmp_path)
    path = tmp_path / "tokenizer.json"
    from_file = torch_port.Qwen2_5_VLTransform(files.vocab, files.merges, special_tokens_path=str(path))
    assert from_file.image_token_id == IMAGE_ID and from_file.pad_id == PAD_ID
    text = "<|im_start|>user\n What is<|im_end|>"
    assert from_file.encode(text, add_bos=False, add_eos=False) == processor.tokenizer(text)["input_ids"]
    data = json.loads(path.read_text())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != "<|image_pad|>"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"lack \['<\|image_pad\|>'\]"):
        torch_port.Qwen2_5_VLTransform(files.vocab, files.merges, special_tokens_path=str(path))


def test_truncation_drops_a_cut_vision_run_whole(files):
    img = image(5, 112, 112)  # 4x4 merged tokens
    messages = [Message("user", [{"type": "text", "content": " What is"}, {"type": "image", "content": img}],
                        masked=True),
                Message("assistant", " A cat")]
    full = torch_port.Qwen2_5_VLTransform(files.vocab, files.merges, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    whole = full({"messages": messages})
    start = whole["tokens"].index(START_ID)
    end = whole["tokens"].index(END_ID)
    for max_seq_len in (start + 1, start + 5, end, end + 1):  # the eos would land inside the run
        cut = torch_port.Qwen2_5_VLTransform(files.vocab, files.merges, max_seq_len=max_seq_len,
                                             min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
        sample = cut({"messages": messages})
        assert sample["tokens"] == whole["tokens"][:start] + [EOS_ID], max_seq_len
        assert sample["mask"] == whole["mask"][:start] + [True]
        assert sample["encoder_input"] == {}
        assert sample["input_pos"].shape == (3, start + 1)
    # room for the run and the eos: the image stays, torchtune's truncation after it
    cut = torch_port.Qwen2_5_VLTransform(files.vocab, files.merges, max_seq_len=end + 2,
                                         min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    sample = cut({"messages": messages})
    assert sample["tokens"] == whole["tokens"][: end + 1] + [EOS_ID]
    assert torch.equal(sample["encoder_input"]["image"]["grid_thw"], whole["encoder_input"]["image"]["grid_thw"])
    assert torch.equal(sample["input_pos"], whole["input_pos"][:, : end + 2])


# ----------------------------------------------------------------------------- collate


@pytest.mark.parametrize("side", ["right", "left"])
def test_collate_equals_hf_padded_batch(transform, processor, side):
    imgs = [image(6, 50, 80), image(7, 90, 60), image(8, 70, 70)]
    conversations = [
        [Message("user", [{"type": "image", "content": imgs[0]}, {"type": "text", "content": " Describe the picture"}]),
         Message("assistant", "")],
        [Message("user", " What is"), Message("assistant", "")],  # text only, shortest
        [Message("user", [{"type": "image", "content": imgs[1]}, {"type": "text", "content": " and"},
                          {"type": "image", "content": imgs[2]}]), Message("assistant", "")],
    ]
    samples = [transform({"messages": c}, inference=True) for c in conversations]
    batch = torch_port.padded_collate_qwen2_5_vl(samples, padding_idx=transform.pad_id, pad_direction=side)
    hf = hf_inputs(processor, [to_hf(c[:1]) for c in conversations], imgs, add_generation_prompt=True,
                   padding_side=side)
    real = hf["attention_mask"].bool()
    assert torch.equal(batch["tokens"], hf["input_ids"])  # HF pads with the same <|endoftext|>
    learn = torch.zeros_like(real)  # not padded and not masked by the transform
    for b, sample in enumerate(samples):
        learn[b, real[b]] = ~torch.tensor(sample["mask"])
    assert learn.any()
    assert torch.equal(batch["labels"], torch.where(learn, hf["input_ids"], CROSS_ENTROPY_IGNORE_IDX))
    grid = hf["image_grid_thw"]
    assert torch.equal(batch["encoder_input"]["image"]["grid_thw"], grid)
    assert torch.equal(batch["encoder_input"]["image"]["pixel_values"], hf["pixel_values"])
    assert "video" not in batch["encoder_input"]
    # positions of the padded batch: HF's get_rope_index and the port's, with the attention mask
    expected = hf_rope_index(hf["input_ids"], hf["mm_token_type_ids"], grid, None, None, hf["attention_mask"])
    assert torch.equal(batch["input_pos"], expected)
    ours, _ = torch_port.qwen2_5_vl_rope_index(batch["tokens"], hf["mm_token_type_ids"], grid,
                                               attention_mask=hf["attention_mask"])
    assert torch.equal(batch["input_pos"], ours)
    if side == "left":  # causal, padded keys hidden
        s = batch["tokens"].shape[1]
        causal = torch.ones(s, s, dtype=torch.bool).tril()
        for b in range(3):
            allowed = causal & real[b][None, :]
            rows = real[b]
            assert torch.equal(batch["mask"][b][rows], allowed[rows])
    else:
        assert "mask" not in batch


def test_collated_keys_are_forward_keywords(transform):
    """torchtune's recipe pops labels and calls model(**batch): every other key is a forward keyword."""
    samples = [transform({"messages": [Message("user", [{"type": "image", "content": image(9, 56, 84)}]),
                                       Message("assistant", " A cat")]}),
               transform({"messages": [Message("user", " What is"), Message("assistant", " A dog")]})]
    for side in ("right", "left"):
        batch = torch_port.padded_collate_qwen2_5_vl(samples, pad_direction=side)
        from torchtune.modules.model_fusion import EarlyFusionModel

        forward = inspect.signature(EarlyFusionModel.forward).parameters
        assert set(batch) - {"labels"} <= set(forward), sorted(batch)
        assert set(batch["encoder_input"]) == {"image"}
        assert set(batch["encoder_input"]["image"]) == {"pixel_values", "grid_thw"}
        assert batch["tokens"].dtype == batch["labels"].dtype == batch["input_pos"].dtype == torch.int64
        assert batch["input_pos"].shape == (3, 2, batch["tokens"].shape[1])


def test_collate_text_only_default_padding(transform):
    samples = [transform({"messages": [Message("user", t), Message("assistant", " A cat")]}) for t in (" What is", "?")]
    batch = torch_port.padded_collate_qwen2_5_vl(samples)
    short = len(samples[1]["tokens"])
    assert batch["encoder_input"] == {}
    assert (batch["tokens"][1, short:] == PAD_ID).all()
    assert (batch["labels"][1, short:] == CROSS_ENTROPY_IGNORE_IDX).all()
    assert (batch["input_pos"][:, 1, short:] == 0).all()


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "content, error, match",
    [
        ([{"type": "image", "content": "cat.png"}], ValueError,
         r"content\[0\]: an image part's 'content' must be .* got str"),
        ([{"type": "image"}], ValueError, r"must be a PIL image.*got NoneType"),
        ([{"type": "text", "content": "<|image_pad|> What is"}], ValueError,
         r"vision special tokens \['<\|image_pad\|>'\]"),
        ([{"type": "text", "content": "<|vision_start|>"}], ValueError,
         r"vision special tokens \['<\|vision_start\|>'\]"),
        ([{"type": "audio", "content": b""}], ValueError, r"unsupported content type 'audio'"),
        ([{"type": "text", "content": 3}], ValueError, r"text part's 'content' must be a str, got int"),
    ],
)
def test_bad_content_parts(transform, content, error, match):
    with pytest.raises(error, match=match):
        transform({"messages": [Message("user", content), Message("assistant", "")]})


def test_bad_messages_and_samples(files, transform):
    with pytest.raises(KeyError, match="no 'messages'"):
        transform({"text": "What is"})
    with pytest.raises(ValueError, match="non-empty list"):
        transform({"messages": []})
    with pytest.raises(ValueError, match=r"messages\[0\] must be a torchtune Message, got dict"):
        transform({"messages": [{"role": "user", "content": "What is"}]})
    with pytest.raises(ValueError, match="max_seq_len must be a positive int"):
        torch_port.Qwen2_5_VLTransform(files.vocab, files.merges, max_seq_len=0)


def test_bad_video_parts(transform):
    where = r"messages\[0\] \(user\) content\[0\]: "  # the caller's index (system prompt not counted)
    with pytest.raises(ValueError, match=where + r"a video part needs its frames in 'content'"):
        transform({"messages": [Message("user", [{"type": "video"}]), Message("assistant", "")]})
    with pytest.raises(ValueError, match=where + r".*must be uint8, got dtype float32"):
        transform({"messages": [Message("user", [{"type": "video", "content": np.zeros((2, 28, 28, 3), np.float32)}]),
                                Message("assistant", "")]})
    with pytest.raises(ValueError, match=where + r"unexpected keys \['fps'\] in a 'video' part"):
        transform({"messages": [Message("user", [{"type": "video", "content": video(0, 2, 28, 28), "fps": 2}]),
                                Message("assistant", "")]})


def test_bad_collate_input(transform):
    sample = transform({"messages": [Message("user", " What is"), Message("assistant", " A cat")]})
    with pytest.raises(ValueError, match="pad_direction must be 'right' or 'left', got 'up'"):
        torch_port.padded_collate_qwen2_5_vl([sample], pad_direction="up")
    with pytest.raises(ValueError, match="batch is empty"):
        torch_port.padded_collate_qwen2_5_vl([])
    with pytest.raises(ValueError, match=r"batch\[1\] lacks \['input_pos'\]"):
        torch_port.padded_collate_qwen2_5_vl([sample, {"tokens": [1], "labels": [1]}])
    short = {**sample, "labels": sample["labels"][:-1]}
    with pytest.raises(ValueError, match=r"batch\[0\]: tokens \[\d+\], labels \[\d+\] and input_pos"):
        torch_port.padded_collate_qwen2_5_vl([short])
    with pytest.raises(ValueError, match=r"unknown keys \['audio'\]"):
        torch_port.padded_collate_qwen2_5_vl([{**sample, "encoder_input": {"audio": {}}}])


# ----------------------------------------------------------------------------- into the model


@pytest.mark.parametrize("side", ["right", "left"])
def test_collated_batch_trains_the_fused_model_like_hf(transform, side):
    """The recipe's step on a collated batch: labels popped, ``model(**batch)``, torchtune's shifted
    cross-entropy. HF gets the same ids, pixel values, grids and attention mask (it computes its own
    positions) and its own loss on the same labels: logits and loss within the fused-model bound."""
    from goldenlib.tolerances import FUSED_LOGITS_VS_HF_BOUND, rel_error

    hf, fused = hf_and_port("tied_gqa", qwen_ids=True)  # Qwen's special ids: the tiny tokenizer's ids reach it
    samples = [
        transform({"messages": [Message("user", [{"type": "image", "content": image(13, 60, 84)},
                                                 {"type": "text", "content": " What is"}], masked=True),
                                Message("assistant", " A red square")]}),
        transform({"messages": [Message("user", " Describe the picture", masked=True),
                                Message("assistant", " A cat")]}),
    ]
    batch = torch_port.padded_collate_qwen2_5_vl(samples, padding_idx=transform.pad_id, pad_direction=side)
    labels = batch.pop("labels")
    with torch.no_grad():
        logits = fused(**batch)
    width = batch["tokens"].shape[1]
    lengths = torch.tensor([len(sample["tokens"]) for sample in samples])[:, None]
    slots = torch.arange(width)[None, :]
    real = slots >= width - lengths if side == "left" else slots < lengths  # [b, s] not padding
    types = (batch["tokens"] == IMAGE_ID).long()
    image_in = batch["encoder_input"]["image"]
    with torch.no_grad():
        out = hf(input_ids=batch["tokens"], attention_mask=real.long(), mm_token_type_ids=types,
                 pixel_values=image_in["pixel_values"], image_grid_thw=image_in["grid_thw"], labels=labels)
    assert bool((batch["tokens"][~real] == PAD_ID).all())
    assert rel_error(logits[real], out.logits[real]) <= FUSED_LOGITS_VS_HF_BOUND
    shifted = torch.hstack([labels[:, 1:], torch.full_like(labels[:, :1], CROSS_ENTROPY_IGNORE_IDX)])
    loss = torch.nn.CrossEntropyLoss(ignore_index=CROSS_ENTROPY_IGNORE_IDX)(  # torchtune's plain CE loss
        logits.reshape(-1, logits.shape[-1]), shifted.reshape(-1))
    assert rel_error(loss, out.loss) <= FUSED_LOGITS_VS_HF_BOUND


def test_image_options_mapping_equals_the_old_keywords(files, transform):
    """``image_options`` (as videos take ``video_options``) gives the transform the old keywords give."""
    mapped = torch_port.Qwen2_5_VLTransform(files.vocab, files.merges,
                                            image_options={"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS},
                                            video_options={"min_pixels": MIN_PIXELS, "max_pixels": VIDEO_MAX_PIXELS})
    img, clip = image(21, 70, 50), video(22, 3, 40, 60)
    messages = [Message("user", [{"type": "image", "content": img}, {"type": "video", "content": clip}]),
                Message("assistant", "")]
    got, want = mapped({"messages": messages}, inference=True), transform({"messages": messages}, inference=True)
    assert got["tokens"] == want["tokens"] and torch.equal(got["input_pos"], want["input_pos"])
    for kind in ("image", "video"):
        for key in ("pixel_values", "grid_thw"):
            assert torch.equal(got["encoder_input"][kind][key], want["encoder_input"][kind][key])
    with pytest.raises(ValueError, match=r"\['max_pixels'\] given both in image_options and as keywords"):
        torch_port.Qwen2_5_VLTransform(files.vocab, files.merges, image_options={"max_pixels": 9000}, max_pixels=9000)
    with pytest.raises(ValueError, match=r"image_options holds \['fps'\]"):
        torch_port.Qwen2_5_VLTransform(files.vocab, files.merges, image_options={"fps": 2})
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['max_pixel'\]"):
        torch_port.Qwen2_5_VLTransform(files.vocab, files.merges, max_pixel=9000)
