"""reference.rope_index / mrope_cos_sin / apply_mrope / expand_vision_tokens against HF 5.x.

Expected values all come from HF: `Qwen2_5_VLModel.get_rope_index` on a tiny model built on the meta
device (the method reads only the config), `Qwen2_5_VLRotaryEmbedding` + `apply_rotary_pos_emb`,
and the processor's own placeholder replacement (`get_text_with_replacements`, `replace_*_token`,
`create_mm_token_type_ids`) on a processor object without a tokenizer.
"""

from __future__ import annotations

import functools
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLModel
from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as hf
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor

import reference
from goldenlib.tolerances import MROPE_REFERENCE_FLOAT32_VS_HF_BOUND, rel_error

IMAGE, VIDEO = 151655, 151656  # the released checkpoints' <|image_pad|>, <|video_pad|>


def tiny_config(head_dim=32, mrope_section=(4, 6, 6), tokens_per_second=2):
    heads = 2
    return Qwen2_5_VLConfig(
        text_config=dict(hidden_size=heads * head_dim, num_hidden_layers=1, num_attention_heads=heads,
                         num_key_value_heads=1, intermediate_size=32, vocab_size=152064,
                         rope_parameters=dict(rope_type="default", rope_theta=1e6, mrope_section=list(mrope_section))),
        vision_config=dict(depth=1, hidden_size=32, num_heads=2, intermediate_size=32, out_hidden_size=heads * head_dim,
                           tokens_per_second=tokens_per_second))


@functools.cache
def rope_model():
    with torch.device("meta"):  # get_rope_index reads the config only: no weights needed
        return Qwen2_5_VLModel(tiny_config())


def torch_or_none(x, dtype=torch.long):
    return None if x is None else torch.as_tensor(np.asarray(x), dtype=dtype)


def hf_seconds(seconds):
    """The same second_per_grid_ts for HF: NumPy arrays become tensors of the same dtype, lists stay lists."""
    return torch.from_numpy(seconds) if isinstance(seconds, np.ndarray) else seconds


def assert_same_as_hf(model, ids, types, image_grid=None, video_grid=None, seconds=None, mask=None):
    want_pos, want_delta = model.get_rope_index(
        torch.as_tensor(ids), torch.as_tensor(types, dtype=torch.int32), torch_or_none(image_grid),
        torch_or_none(video_grid), hf_seconds(seconds), torch_or_none(mask))
    pos, delta = reference.rope_index(ids, types, image_grid, video_grid, seconds, mask)
    assert pos.dtype == np.int64 and delta.dtype == np.int64
    assert pos.shape == tuple(want_pos.shape) and delta.shape == tuple(want_delta.shape)
    np.testing.assert_array_equal(pos, want_pos.numpy())
    np.testing.assert_array_equal(delta, want_delta.numpy())
    return pos, delta


# ---------------------------------------------------------------- HF's processor as the expansion oracle


def hf_processor():
    proc = Qwen2_5_VLProcessor.__new__(Qwen2_5_VLProcessor)  # no tokenizer: only the text-side methods
    proc.image_token, proc.video_token = "<|image_pad|>", "<|video_pad|>"
    proc.image_token_id, proc.video_token_id = IMAGE, VIDEO
    proc.image_processor = proc.video_processor = SimpleNamespace(merge_size=2)
    return proc


def hf_expand(rows, image_grid, video_grid):
    """Token ids -> text, HF's replacement, text -> ids; types from HF's create_mm_token_type_ids."""
    proc = hf_processor()
    names = {IMAGE: proc.image_token, VIDEO: proc.video_token}
    text = ["".join(names.get(i, f"<t{i}>") for i in row) for row in rows]
    images = {"image_grid_thw": torch_or_none(image_grid)}
    videos = {"video_grid_thw": torch_or_none(video_grid)}
    image_repl = [proc.replace_image_token(images, i) for i in range(0 if image_grid is None else len(image_grid))]
    video_repl = [proc.replace_video_token(videos, i) for i in range(0 if video_grid is None else len(video_grid))]
    text, _ = proc.get_text_with_replacements(text, image_repl, video_repl)
    token = re.compile(r"<t(\d+)>|<\|image_pad\|>|<\|video_pad\|>")
    ids = [[int(m.group(1)) if m.group(1) else (IMAGE if "image" in m.group(0) else VIDEO)
            for m in token.finditer(row)] for row in text]
    return ids, proc.create_mm_token_type_ids(ids)


# ---------------------------------------------------------------- layouts


def placeholder_row(items, rng):
    """items: 'image' / 'video' / int (that many text tokens) -> token ids with one placeholder per item."""
    row = []
    for item in items:
        if item == "image":
            row.append(IMAGE)
        elif item == "video":
            row.append(VIDEO)
        else:
            row.extend(rng.integers(0, 1000, item).tolist())
    return row


def expanded(rows, image_grid=None, video_grid=None):
    """Expand each row, check it against HF's processor, then pad to a batch.

    Returns (ids [b, s], types [b, s], list of the unpadded lengths)."""
    want_ids, want_types = hf_expand(rows, image_grid, video_grid)
    out, n_image, n_video = [], 0, 0
    for row, want_row, want_type in zip(rows, want_ids, want_types):
        k_i, k_v = row.count(IMAGE), row.count(VIDEO)
        ids, types = reference.expand_vision_tokens(
            row, None if not k_i else np.asarray(image_grid)[n_image:n_image + k_i],
            None if not k_v else np.asarray(video_grid)[n_video:n_video + k_v])
        n_image, n_video = n_image + k_i, n_video + k_v
        np.testing.assert_array_equal(ids, want_row)
        np.testing.assert_array_equal(types, want_type)
        out.append((ids, types))
    return out


def pad(pairs, side, extra=0):
    """[(ids, types)] -> ids, types, mask [b, s] padded on `side` ('left' / 'right') with pad id 0."""
    length = max(len(ids) for ids, _ in pairs) + extra
    ids = np.zeros((len(pairs), length), np.int64)
    types, mask = np.zeros_like(ids), np.zeros_like(ids)
    for b, (row, row_types) in enumerate(pairs):
        where = slice(length - len(row), length) if side == "left" else slice(0, len(row))
        ids[b, where], types[b, where], mask[b, where] = row, row_types, 1
    return ids, types, mask


def one(pairs):
    (ids, types), = pairs
    return ids[None], types[None]


# ---------------------------------------------------------------- named layouts


def test_text_only():
    rng = np.random.default_rng(0)
    ids, types = one(expanded([placeholder_row([7], rng)]))
    assert_same_as_hf(rope_model(), ids, types)


def test_text_and_one_image():
    rng = np.random.default_rng(1)
    grid = [[1, 6, 4]]
    ids, types = one(expanded([placeholder_row([3, "image", 4], rng)], grid))
    assert_same_as_hf(rope_model(), ids, types, grid)


def test_two_images_of_different_grids():
    rng = np.random.default_rng(2)
    grid = [[1, 4, 8], [1, 10, 2]]
    ids, types = one(expanded([placeholder_row([2, "image", 3, "image", 2], rng)], grid))
    assert_same_as_hf(rope_model(), ids, types, grid)


@pytest.mark.parametrize("seconds", [np.array([0.5], np.float32), np.array([1 / 3], np.float64), [0.7]],
                         ids=["float32", "float64", "list"])
def test_image_and_video_with_fractional_seconds(seconds):
    rng = np.random.default_rng(3)
    image, video = [[1, 4, 4]], [[4, 6, 4]]
    ids, types = one(expanded([placeholder_row([2, "image", 2, "video", 3], rng)], image, video))
    assert_same_as_hf(rope_model(), ids, types, image, video, seconds)


def test_video_only_t3_text_after_uses_spatial_extent():
    rng = np.random.default_rng(4)
    video = [[3, 4, 4]]
    ids, types = one(expanded([placeholder_row([2, "video", 2], rng)], video_grid=video))
    pos, delta = assert_same_as_hf(rope_model(), ids, types, video_grid=video)
    # the two text tokens after the video (whatever HF put there: checked above) follow the 5.x rule
    assert pos[:, 0, -2:].tolist() == [[4, 5]] * 3


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_of_two(side):
    rng = np.random.default_rng(5)
    image, video = [[1, 4, 6], [1, 2, 2]], [[2, 4, 4]]
    pairs = expanded([placeholder_row([2, "image", 5], rng), placeholder_row([1, "video", 1, "image", 2], rng)],
                     image, video)
    ids, types, mask = pad(pairs, side, extra=2)
    pos, _ = assert_same_as_hf(rope_model(), ids, types, image, video, np.array([1.5], np.float32), mask)
    assert (pos[:, mask == 0] == 0).all()  # HF leaves padded slots at 0 (asserted equal to HF above)


# ---------------------------------------------------------------- random layouts


def random_case(rng):
    batch = int(rng.integers(1, 4))
    rows, image, video = [], [], []
    for _ in range(batch):
        items = [int(rng.integers(1, 4))]  # a sequence starts with text; vision items are separated by text
        for _ in range(int(rng.integers(0, 4))):
            kind = rng.choice(["image", "video"])
            h, w = (2 * int(v) for v in rng.integers(1, 6, 2))
            (image if kind == "image" else video).append([1 if kind == "image" else int(rng.integers(1, 5)), h, w])
            items += [str(kind), int(rng.integers(1, 4))]
        if len(items) > 1 and rng.random() < 0.3:
            items = items[:-1]  # sometimes end on a vision run
        rows.append(placeholder_row(items, rng))
    choices = [0.5, 1.0, 2 / 3, 0.1, 0.7, 1 / 3, 2 / 25, 2 / 29.97, 1.25]
    values = [choices[int(rng.integers(len(choices)))] if rng.random() < 0.5 else float(rng.uniform(0.05, 3))
              for _ in video]
    form = rng.integers(4)
    seconds = (None if form == 0 or not video else np.array(values, np.float32) if form == 1
               else np.array(values, np.float64) if form == 2 else values)
    return rows, image or None, video or None, seconds


def test_random_layouts_equal_hf():
    rng = np.random.default_rng(12)
    for case in range(200):
        rows, image, video, seconds = random_case(rng)
        pairs = expanded(rows, image, video)
        side = ["left", "right", None][case % 3]
        if side is None and len({len(ids) for ids, _ in pairs}) == 1:
            ids, types = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
            assert_same_as_hf(rope_model(), ids, types, image, video, seconds)
        else:
            ids, types, mask = pad(pairs, side or "right", extra=int(rng.integers(0, 3)))
            assert_same_as_hf(rope_model(), ids, types, image, video, seconds, mask)


def test_time_positions_follow_the_seconds_dtype():
    """A value whose float32 and float64 products truncate differently: each form matches HF's."""
    k, interval = np.arange(1, 16), None
    for s in np.arange(1, 3000) / 1000:
        f64 = np.trunc(k * (2 * s))
        f32 = np.trunc(k.astype(np.float32) * (np.float32(2) * np.float32(s)))
        if (f64 != f32).any():
            interval = s
            break
    assert interval is not None
    video = [[16, 2, 2]]
    ids, types = one(expanded([placeholder_row([1, "video", 1], np.random.default_rng(6))], video_grid=video))
    f32_pos, _ = assert_same_as_hf(rope_model(), ids, types, video_grid=video, seconds=np.array([interval], np.float32))
    f64_pos, _ = assert_same_as_hf(rope_model(), ids, types, video_grid=video, seconds=np.array([interval], np.float64))
    assert (f32_pos != f64_pos).any()


# ---------------------------------------------------------------- bad input


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(7)
    grid = [[1, 4, 4]]
    ids, types = one(expanded([placeholder_row([2, "image", 2], rng)], grid))
    with pytest.raises(ValueError, match="1 image runs .* 2 image grids"):
        reference.rope_index(ids, types, grid * 2)
    with pytest.raises(ValueError, match="1 image runs .* 0 image grids"):
        reference.rope_index(ids, types)
    with pytest.raises(ValueError, match="multiples of the merge size"):
        reference.rope_index(ids, types, [[1, 4, 3]])
    with pytest.raises(ValueError, match="has 4 tokens but its grid"):
        reference.rope_index(ids, types, [[1, 4, 8]])
    with pytest.raises(ValueError, match="mm_token_type_ids has shape"):
        reference.rope_index(ids, types[:, :-1], grid)
    with pytest.raises(ValueError, match=r"values \[3\]"):
        reference.rope_index(ids, np.where(types == 1, 3, types), grid)
    video = [[2, 4, 4]]
    vids, vtypes = one(expanded([placeholder_row([2, "video", 2], rng)], video_grid=video))
    with pytest.raises(ValueError, match="one value per video: 1 videos"):
        reference.rope_index(vids, vtypes, video_grid_thw=video, second_per_grid_ts=[0.5, 0.5])
    with pytest.raises(ValueError, match="2 image placeholders .* 1 image grids"):
        reference.expand_vision_tokens([1, IMAGE, 2, IMAGE], grid)
    with pytest.raises(ValueError, match="0 video placeholders .* 1 video grids"):
        reference.expand_vision_tokens([1, 2], video_grid_thw=video)
    with pytest.raises(ValueError, match="multiples of the merge size"):
        reference.expand_vision_tokens([1, IMAGE], [[1, 6, 5]])
    # HF's processor raises ValueError on a placeholder count mismatch too
    proc = hf_processor()
    with pytest.raises(ValueError):
        proc.validate_inputs(images=[np.zeros((4, 4, 3), np.uint8)] * 2, text=["<|image_pad|>"])


def test_layout_errors_are_the_runtime_error_hf_raises():
    """A vision run whose length does not fit its grid, or token types of another shape: HF's
    get_rope_index fails with a RuntimeError deep inside; the reference raises its clear
    RopeIndexLayoutError, which is that RuntimeError class too (and a ValueError)."""
    rng = np.random.default_rng(8)
    grid = [[1, 4, 4]]
    ids, types = one(expanded([placeholder_row([2, "image", 2], rng)], grid))
    for bad_grid, bad_types in (([[1, 4, 8]], types), (grid, types[:, :-1])):
        with pytest.raises(RuntimeError):
            rope_model().get_rope_index(torch.as_tensor(ids), torch.as_tensor(bad_types, dtype=torch.int32),
                                    torch.as_tensor(bad_grid), None, None, None)
        with pytest.raises(RuntimeError) as caught:
            reference.rope_index(ids, bad_types, bad_grid)
        assert isinstance(caught.value, ValueError) and isinstance(caught.value, reference.RopeIndexLayoutError)


# ---------------------------------------------------------------- the rotary


@pytest.mark.parametrize("head_dim,section", [(32, (4, 6, 6)), (128, (16, 24, 24))])
def test_mrope_float32_vs_hf(head_dim, section):
    rng = np.random.default_rng(8)
    image, video = [[1, 8, 12]], [[3, 4, 4]]
    pairs = expanded([placeholder_row([3, "image", 2, "video", 5], rng)], image, video)
    ids, types, mask = pad(pairs, "left", extra=2)
    pos, _ = reference.rope_index(ids, types, image, video, np.array([0.5], np.float32), mask)
    far = np.broadcast_to(np.arange(8000, 8192), (3, 1, 192))  # long-context positions
    config = tiny_config(head_dim, section).text_config
    rotary = hf.Qwen2_5_VLRotaryEmbedding(config)
    for positions in (pos, far):
        x = torch.randn(1, positions.shape[2], 2, head_dim, generator=torch.Generator().manual_seed(0))
        want_cos, want_sin = rotary(x, torch.from_numpy(np.ascontiguousarray(positions)))
        want_x, _ = hf.apply_rotary_pos_emb(x.transpose(1, 2), x.transpose(1, 2), want_cos, want_sin)
        cos, sin = reference.mrope_cos_sin(positions, head_dim, section, dtype=np.float32)
        got_x = reference.apply_mrope(x.numpy(), cos, sin)
        assert cos.dtype == np.float32 and cos.shape == tuple(want_cos.shape)
        errors = [rel_error(cos, want_cos), rel_error(sin, want_sin), rel_error(got_x, want_x.transpose(1, 2))]
        assert max(errors) <= MROPE_REFERENCE_FLOAT32_VS_HF_BOUND, errors


def test_mrope_text_positions_need_one_row():
    """[batch, seq] positions are the same on all three rows, as HF expands them."""
    positions = np.arange(10)[None]
    cos2, sin2 = reference.mrope_cos_sin(positions, 32, (4, 6, 6))
    cos3, sin3 = reference.mrope_cos_sin(np.broadcast_to(positions, (3, 1, 10)), 32, (4, 6, 6))
    np.testing.assert_array_equal(cos2, cos3)
    np.testing.assert_array_equal(sin2, sin3)
    with pytest.raises(ValueError, match="sum to head_dim // 2 = 16"):
        reference.mrope_cos_sin(positions, 32, (4, 6, 4))
