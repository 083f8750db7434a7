"""The torch port's mRoPE positions, rotary and placeholder expansion against HF transformers 5.x.

Expected values come from HF: ``Qwen2_5_VLModel.get_rope_index`` (called on a stub that carries only
the two config values it reads), ``Qwen2_5_VLRotaryEmbedding`` + ``apply_rotary_pos_emb`` (5.x folds
the multimodal section split into the rotary's ``cos``/``sin``), and the processor's own
``replace_image_token`` / ``replace_video_token`` / ``create_mm_token_type_ids``.
"""

from __future__ import annotations

import functools
import random
from types import SimpleNamespace

import numpy as np

import pytest
import torch
from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLTextConfig
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
    Qwen2_5_VLModel,
    Qwen2_5_VLRotaryEmbedding,
    apply_rotary_pos_emb,
)
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor

from goldenlib import store
from goldenlib.cases import POSITION_CASES
from goldenlib.tolerances import (
    MROPE_PORT_BFLOAT16_VS_HF_BOUND,
    MROPE_PORT_FLOAT32_VS_GOLDEN_BOUND,
    MROPE_PORT_FLOAT32_VS_HF_BOUND,
    rel_error,
)
from torch_port import Qwen2_5_VLRotaryPositionalEmbeddings, expand_vision_tokens, qwen2_5_vl_rope_index

IMAGE_ID, VIDEO_ID, START_ID, END_ID, PAD_ID = 151655, 151656, 151652, 151653, 151643


def hf_rope_index(*args, spatial_merge_size=2, tokens_per_second=2, **kwargs):
    """HF's get_rope_index on a stub model: it reads two config values and its own static helper."""
    vision = SimpleNamespace(spatial_merge_size=spatial_merge_size, tokens_per_second=tokens_per_second)
    stub = SimpleNamespace(config=SimpleNamespace(vision_config=vision),
                           get_vision_position_ids=functools.partial(Qwen2_5_VLModel.get_vision_position_ids, None))
    return Qwen2_5_VLModel.get_rope_index(stub, *args, **kwargs)


def hf_expand(ids: list[int], image_grid_thw, video_grid_thw, merge=2):
    """HF's processor expansion of one row: its replace_*_token with one-token 'strings' (lists)."""
    stub = SimpleNamespace(image_token=[IMAGE_ID], video_token=[VIDEO_ID],
                           image_processor=SimpleNamespace(merge_size=merge),
                           video_processor=SimpleNamespace(merge_size=merge),
                           image_token_ids=[IMAGE_ID], video_token_ids=[VIDEO_ID], audio_token_ids=[])
    out, k = [], {IMAGE_ID: 0, VIDEO_ID: 0}
    for tok in ids:
        if tok == IMAGE_ID:
            out += Qwen2_5_VLProcessor.replace_image_token(stub, {"image_grid_thw": image_grid_thw}, k[tok])
        elif tok == VIDEO_ID:
            out += Qwen2_5_VLProcessor.replace_video_token(stub, {"video_grid_thw": video_grid_thw}, k[tok])
        else:
            out.append(tok)
        k[tok] = k.get(tok, 0) + 1
    return out, Qwen2_5_VLProcessor.create_mm_token_type_ids(stub, [out])[0]


# ------------------------------------------------------------------ layouts
# A row is a list of segments: ("text", n) or ("image" | "video", (t, h, w)); the processor writes
# <|vision_start|> .. <|vision_end|> around every vision segment.


def build_row(segments, rng):
    ids = []
    for kind, arg in segments:
        if kind == "text":
            ids += [rng.randrange(100, 150000) for _ in range(arg)]
        else:
            ids += [START_ID, IMAGE_ID if kind == "image" else VIDEO_ID, END_ID]
    return ids


def build_batch(rows, pad_side=None, seed=0, merge=2):
    """Expanded ids, token types and grids of a batch of segment lists (padded to one length)."""
    rng = random.Random(seed)
    images = [list(a) for row in rows for k, a in row if k == "image"]
    videos = [list(a) for row in rows for k, a in row if k == "video"]
    image_grid = torch.tensor(images) if images else None
    video_grid = torch.tensor(videos) if videos else None
    expanded, n_img, n_vid = [], 0, 0
    for row in rows:
        r_img = [list(a) for k, a in row if k == "image"]
        r_vid = [list(a) for k, a in row if k == "video"]
        ids, types = hf_expand(build_row(row, rng), torch.tensor(r_img or [[1, 1, 1]]),
                               torch.tensor(r_vid or [[1, 1, 1]]), merge)
        expanded.append((ids, types))
        n_img, n_vid = n_img + len(r_img), n_vid + len(r_vid)
    width = max(len(ids) for ids, _ in expanded)
    all_ids, all_types, mask = [], [], []
    for ids, types in expanded:
        pad = width - len(ids)
        side = pad_side if pad_side != "random" else rng.choice(["left", "right"])
        if side == "left":
            all_ids.append([PAD_ID] * pad + ids), all_types.append([0] * pad + types)
            mask.append([0] * pad + [1] * len(ids))
        else:
            all_ids.append(ids + [PAD_ID] * pad), all_types.append(types + [0] * pad)
            mask.append([1] * len(ids) + [0] * pad)
    return (torch.tensor(all_ids), torch.tensor(all_types), image_grid, video_grid,
            torch.tensor(mask) if pad_side else None)


def assert_same_as_hf(ids, types, image_grid, video_grid, seconds, mask, **config):
    want_pos, want_delta = hf_rope_index(ids, types, image_grid, video_grid, seconds, mask, **config)
    pos, delta = qwen2_5_vl_rope_index(ids, types, image_grid, video_grid, seconds, mask, **config)
    assert pos.dtype == torch.int64 and delta.dtype == torch.int64
    assert pos.shape == want_pos.shape and delta.shape == want_delta.shape, (pos.shape, delta.shape)
    assert torch.equal(pos, want_pos), (pos, want_pos)
    assert torch.equal(delta, want_delta), (delta, want_delta)
    return pos, delta


# the golden layouts
GOLDEN_LAYOUTS = {
    "text_and_image": ([[("text", 5), ("image", (1, 4, 6)), ("text", 3)]], None, None),
    "two_images_of_different_grids": ([[("text", 2), ("image", (1, 4, 4)), ("text", 2), ("image", (1, 6, 2)),
                                        ("text", 4)]], None, None),
    "image_and_video_fractional_seconds": ([[("text", 3), ("image", (1, 2, 4)), ("text", 2), ("video", (4, 4, 2)),
                                             ("text", 3)]], torch.tensor([2 / 3], dtype=torch.float32), None),
    "video_only_t3": ([[("video", (3, 4, 4)), ("text", 2)]], None, None),
    "left_padded_batch_of_2": ([[("text", 2), ("image", (1, 4, 4)), ("text", 3)],
                                [("text", 4), ("image", (1, 2, 2)), ("text", 1)]], None, "left"),
}


@pytest.mark.parametrize("name", sorted(GOLDEN_LAYOUTS))
def test_rope_index_matches_hf_on_golden_layouts(name):
    rows, seconds, pad = GOLDEN_LAYOUTS[name]
    ids, types, image_grid, video_grid, mask = build_batch(rows, pad)
    pos, delta = assert_same_as_hf(ids, types, image_grid, video_grid, seconds, mask)
    if name == "video_only_t3":
        # the layout tells 5.x from 4.x: the text after the video does not start past its last time step
        after = int((types[0] == 2).nonzero().max()) + 1
        assert pos[0, 0, after] <= pos[0, 0, :after].max()
    if pad:
        assert (pos[:, mask == 0] == 0).all()  # HF leaves padded slots at 0


def test_rope_index_right_padding_and_text_only():
    rows = [[("text", 2), ("video", (2, 4, 4)), ("text", 3)], [("text", 3)]]
    ids, types, image_grid, video_grid, mask = build_batch(rows, "right")
    assert_same_as_hf(ids, types, image_grid, video_grid, torch.tensor([0.5]), mask)
    ids = torch.randint(0, 1000, (2, 7))
    pos, delta = assert_same_as_hf(ids, torch.zeros_like(ids), None, None, None, None)
    assert torch.equal(pos[0, 0], torch.arange(7)) and not delta.any()


def random_rows(rng: random.Random, n_rows: int, merge: int):
    rows = []
    for _ in range(n_rows):
        row, last = [], None
        for _ in range(rng.randrange(1, 6)):
            kind = rng.choice(["text", "text", "image", "video"])
            if kind == last:  # two runs of one kind side by side would be one run: put text between
                kind = "text" if kind != "text" else "image"
            if kind == "text":
                row.append(("text", rng.randrange(1, 6)))
            else:
                t = 1 if kind == "image" else rng.randrange(1, 5)
                row.append((kind, (t, merge * rng.randrange(1, 4), merge * rng.randrange(1, 4))))
            last = kind
        rows.append(row)
    return rows


N_RANDOM = 200


def test_rope_index_matches_hf_on_random_layouts():
    rng = random.Random(1234)
    for case in range(N_RANDOM):
        merge = rng.choice([2, 2, 1])
        tps = rng.choice([2, 2, 1, 25])
        rows = random_rows(rng, rng.randrange(1, 4), merge)
        pad = rng.choice([None, "left", "right", "random"])
        ids, types, image_grid, video_grid, mask = build_batch(rows, pad, seed=case, merge=merge)
        n_videos = 0 if video_grid is None else len(video_grid)
        values = [rng.choice([0.5, 1.0, 2 / 3, 0.1, 1.5, 0.7, 1 / 3]) for _ in range(n_videos)]
        seconds = rng.choice([None, "f32", "f64", "list"]) if n_videos else None
        seconds = {None: None, "list": values, "f32": torch.tensor(values, dtype=torch.float32),
                   "f64": torch.tensor(values, dtype=torch.float64)}[seconds]
        assert_same_as_hf(ids, types, image_grid, video_grid, seconds, mask,
                          spatial_merge_size=merge, tokens_per_second=tps)


def test_rope_index_bad_inputs():
    ids, types, image_grid, _, _ = build_batch([[("text", 2), ("image", (1, 4, 4)), ("text", 2)]])
    # fewer grids than image runs: HF raises StopIteration / TypeError deep inside; ours names both counts
    with pytest.raises(ValueError, match="more image runs"):
        qwen2_5_vl_rope_index(ids, types, image_grid[:0], None)
    with pytest.raises(ValueError, match="2 image_grid_thw rows given"):
        qwen2_5_vl_rope_index(ids, types, torch.cat([image_grid, image_grid]), None)
    # a grid whose token count is not the run's length: HF raises a RuntimeError, ours is both
    bad = torch.tensor([[1, 4, 8]])
    with pytest.raises(RuntimeError):
        hf_rope_index(ids, types, bad, None)
    with pytest.raises(RuntimeError, match="needs"):
        qwen2_5_vl_rope_index(ids, types, bad, None)
    with pytest.raises(ValueError, match="multiples of spatial_merge_size"):
        qwen2_5_vl_rope_index(ids, types, torch.tensor([[1, 5, 4]]), None)
    # token types shorter than the ids: HF fails on a shape mismatch (RuntimeError), ours is both
    with pytest.raises(RuntimeError):
        hf_rope_index(ids, types[:, :-1], image_grid, None)
    with pytest.raises(RuntimeError, match=rf"mm_token_type_ids must have shape \[1, {ids.shape[1]}\]"):
        qwen2_5_vl_rope_index(ids, types[:, :-1], image_grid, None)
    with pytest.raises(ValueError, match="token types are 0"):
        qwen2_5_vl_rope_index(ids, types * 3, image_grid, None)
    vids, vtypes, _, video_grid, _ = build_batch([[("video", (2, 2, 2)), ("text", 1)]])
    with pytest.raises(ValueError, match="second_per_grid_ts has 2 entries but video_grid_thw has 1"):
        qwen2_5_vl_rope_index(vids, vtypes, None, video_grid, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="masks every token"):
        qwen2_5_vl_rope_index(vids, vtypes, None, video_grid, None, torch.zeros_like(vids))


def test_rope_index_keeps_the_device_and_dtype():
    ids, types, image_grid, _, mask = build_batch([[("text", 1), ("image", (1, 2, 2)), ("text", 1)]], "left")
    pos, delta = qwen2_5_vl_rope_index(ids.int(), types.int(), image_grid.int(), None, None, mask.bool())
    assert pos.device == ids.device and pos.dtype == torch.int64 and delta.shape == (1, 1)


# ------------------------------------------------------------------ placeholder expansion


def test_expand_vision_tokens_matches_hf_processor():
    rng = random.Random(7)
    for _ in range(50):
        rows = random_rows(rng, 1, 2)
        ids = torch.tensor(build_row(rows[0], rng))
        images = [list(a) for k, a in rows[0] if k == "image"]
        videos = [list(a) for k, a in rows[0] if k == "video"]
        image_grid = torch.tensor(images) if images else None
        video_grid = torch.tensor(videos) if videos else None
        want_ids, want_types = hf_expand(ids.tolist(), image_grid, video_grid)
        got_ids, got_types = expand_vision_tokens(ids, image_grid, video_grid)
        assert got_ids.tolist() == want_ids and got_types.tolist() == want_types
        batch_ids, batch_types = expand_vision_tokens(torch.stack([ids, ids]),
                                                      *(None if g is None else torch.cat([g, g])
                                                        for g in (image_grid, video_grid)))
        assert batch_ids.tolist() == [want_ids] * 2 and batch_types.tolist() == [want_types] * 2


def test_expand_vision_tokens_bad_inputs():
    ids = torch.tensor([1, START_ID, IMAGE_ID, END_ID, START_ID, IMAGE_ID, END_ID])
    with pytest.raises(ValueError, match="2 image placeholder tokens .* but 1 image grids"):
        expand_vision_tokens(ids, torch.tensor([[1, 2, 2]]))
    with pytest.raises(ValueError, match="0 video placeholder tokens .* but 1 video grids"):
        expand_vision_tokens(ids, torch.tensor([[1, 2, 2]] * 2), torch.tensor([[2, 2, 2]]))
    with pytest.raises(ValueError, match="multiples of merge_size"):
        expand_vision_tokens(ids, torch.tensor([[1, 2, 2], [1, 3, 2]]))
    with pytest.raises(ValueError, match="different lengths"):
        expand_vision_tokens(torch.stack([ids, ids]), torch.tensor([[1, 2, 2]] * 3 + [[1, 4, 4]]))


# ------------------------------------------------------------------ rotary

HEAD_DIM, SECTION = 16, [2, 3, 3]


def hf_rotate(x, position_ids):
    """HF's text rotary + apply_rotary_pos_emb on x [b, s, heads, d] (positions [3, b, s] or [b, s])."""
    config = Qwen2_5_VLTextConfig(hidden_size=HEAD_DIM * x.shape[2], num_attention_heads=x.shape[2],
                                  rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                                   "mrope_section": SECTION})
    cos, sin = Qwen2_5_VLRotaryEmbedding(config)(x, position_ids)
    return apply_rotary_pos_emb(x, x, cos, sin, unsqueeze_dim=2)[0]


def rotary_cases():
    rng = random.Random(3)
    rows = [[("text", 3), ("image", (1, 4, 6)), ("text", 2), ("video", (3, 4, 4)), ("text", 4)],
            [("text", 5), ("image", (1, 8, 2)), ("text", 7)]]
    ids, types, image_grid, video_grid, mask = build_batch(rows, "left", seed=1)
    pos3, _ = hf_rope_index(ids, types, image_grid, video_grid, torch.tensor([0.5]), mask)
    yield "mrope", pos3
    yield "mrope_far", pos3 + 40000  # past the cached table: computed on the fly
    yield "text_1d", torch.arange(ids.shape[1]).expand(2, -1) + torch.tensor([[0], [rng.randrange(1, 9)]])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rotary_matches_hf(dtype):
    torch.manual_seed(0)
    rope = Qwen2_5_VLRotaryPositionalEmbeddings(HEAD_DIM, SECTION, base=1e6, max_seq_len=4096)
    bound = MROPE_PORT_FLOAT32_VS_HF_BOUND if dtype == torch.float32 else MROPE_PORT_BFLOAT16_VS_HF_BOUND
    for name, pos in rotary_cases():
        x = torch.randn(pos.shape[-2], pos.shape[-1], 4, HEAD_DIM).to(dtype)
        want = hf_rotate(x, pos)
        got = rope(x, input_pos=pos)
        assert got.dtype == dtype and got.shape == x.shape
        assert rel_error(got, want) <= bound, (name, rel_error(got, want))
    x = torch.randn(2, 9, 4, HEAD_DIM).to(dtype)
    assert torch.equal(rope(x), rope(x, input_pos=torch.arange(9).expand(2, 9)))


def test_rotary_tables_stay_float32_after_a_cast():
    rope = Qwen2_5_VLRotaryPositionalEmbeddings(HEAD_DIM, SECTION).to(torch.bfloat16)
    assert rope.theta.dtype == torch.float32
    fresh = Qwen2_5_VLRotaryPositionalEmbeddings(HEAD_DIM, SECTION)
    assert torch.equal(rope.theta, fresh.theta)
    rope.reset_parameters()
    assert torch.equal(rope.theta, fresh.theta)


def test_rotary_bad_inputs():
    with pytest.raises(ValueError, match="summing to dim // 2 = 8"):
        Qwen2_5_VLRotaryPositionalEmbeddings(HEAD_DIM, [2, 3, 4])
    rope = Qwen2_5_VLRotaryPositionalEmbeddings(HEAD_DIM, SECTION)
    with pytest.raises(ValueError, match="input_pos must be"):
        rope(torch.zeros(2, 5, 1, HEAD_DIM), input_pos=torch.zeros(3, 2, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="x must be"):
        rope(torch.zeros(2, 5, HEAD_DIM))


# ------------------------------------------------------------------ the positions goldens and the reference

@pytest.mark.parametrize("case", POSITION_CASES, ids=lambda c: c.name)
def test_port_reproduces_the_positions_goldens(case):
    # through the store: QWEN_VL_GOLDEN_DIR and the manifest's sha256 apply; a missing file fails
    stored, _ = store.read_case(case.name)
    g = {key: torch.from_numpy(value) for key, value in stored.items()}
    image_grid, video_grid = g.get("image_grid_thw"), g.get("video_grid_thw")
    ids, types = expand_vision_tokens(g["input_ids"], image_grid, video_grid)
    assert torch.equal(ids, g["expanded_input_ids"]) and torch.equal(types, g["mm_token_type_ids"])
    pos, delta = qwen2_5_vl_rope_index(ids, types, image_grid, video_grid, g.get("second_per_grid_ts"),
                                       g.get("attention_mask"))
    assert torch.equal(pos, g["position_ids"]) and torch.equal(delta, g["deltas"])
    # the float32 module against the golden float64 tables applied in float64
    x = torch.randn(*ids.shape, 2, HEAD_DIM, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cos, sin = g["mrope_cos"][:, :, None], g["mrope_sin"][:, :, None]
    want = x * cos + torch.cat([-x[..., HEAD_DIM // 2:], x[..., :HEAD_DIM // 2]], dim=-1) * sin
    got = Qwen2_5_VLRotaryPositionalEmbeddings(HEAD_DIM, SECTION)(x.float(), input_pos=pos)
    assert rel_error(got, want) <= MROPE_PORT_FLOAT32_VS_GOLDEN_BOUND, rel_error(got, want)


def test_port_equals_the_reference_on_random_layouts():
    import reference

    rng = random.Random(99)
    for case in range(60):
        merge = rng.choice([2, 1])
        rows = random_rows(rng, rng.randrange(1, 4), merge)
        ids, types, image_grid, video_grid, mask = build_batch(rows, rng.choice([None, "random"]), seed=case,
                                                               merge=merge)
        n_videos = 0 if video_grid is None else len(video_grid)
        seconds = [rng.choice([0.5, 2 / 3, 1.25]) for _ in range(n_videos)] or None
        np_args = [None if a is None else a.numpy() for a in (ids, types, image_grid, video_grid)]
        want = reference.rope_index(*np_args, None if seconds is None else np.array(seconds),
                                    None if mask is None else mask.numpy(), spatial_merge_size=merge)
        got = qwen2_5_vl_rope_index(ids, types, image_grid, video_grid, seconds and torch.tensor(seconds), mask,
                                    spatial_merge_size=merge)
        assert np.array_equal(got[0].numpy(), want[0]) and np.array_equal(got[1].numpy(), want[1])


@pytest.mark.hardware("cuda")
def test_positions_and_rotary_on_cuda():
    rows = [[("text", 3), ("image", (1, 4, 6)), ("text", 2), ("video", (3, 4, 4)), ("text", 4)],
            [("text", 5), ("image", (1, 8, 2)), ("text", 7)]]
    ids, types, image_grid, video_grid, mask = build_batch(rows, "left")
    seconds = torch.tensor([2 / 3])
    want = hf_rope_index(ids, types, image_grid, video_grid, seconds, mask)
    got = qwen2_5_vl_rope_index(ids.cuda(), types.cuda(), image_grid, video_grid, seconds, mask.cuda())
    assert got[0].is_cuda and got[1].is_cuda
    assert torch.equal(got[0].cpu(), want[0]) and torch.equal(got[1].cpu(), want[1])
    rope = Qwen2_5_VLRotaryPositionalEmbeddings(HEAD_DIM, SECTION).cuda()
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(2, ids.shape[1], 4, HEAD_DIM, device="cuda").to(dtype)
        bound = MROPE_PORT_FLOAT32_VS_HF_BOUND if dtype == torch.float32 else MROPE_PORT_BFLOAT16_VS_HF_BOUND
        assert rel_error(rope(x, input_pos=got[0]), hf_rotate(x, got[0])) <= bound
