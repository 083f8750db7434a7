"""The fast forms (reference.fast) equal the plain ones they stand for, bit for bit
(benchmarks/run.py times both).

* bicubic: strips of output rows and banded products == Pillow and == the plain tap loop;
* preprocess: the lookup-table patchify == patchify(normalize(rescale(...))), fast.preprocess ==
  preprocess on both backends (the torchvision table == the fused rescale+normalize);
* vision: in-place softmax / SiLU, the chunked rotary, segments batched through views ==
  the plain functions, from one segment to the whole tower with its trace;
* fast.preprocess takes every input the plain form takes (PIL, HWC, CHW, tensors, lists, nested
  lists, 4-D batches, gray, RGBA; both backends; HF's options) with the same bits and errors;
* torch_port transform: the table lookup == patchify(normalize(rescale(...))), and HF on a photo;
* torch_port FeedForward: the transposed-hidden float32 CPU path == the plain form.
"""

import numpy as np
import PIL.Image
import pytest
import torch

import reference
import reference.bicubic as bicubic
import reference.vision as vision
from goldenlib.tolerances import FLOAT32_REORDER_BOUND, FLOAT64_REORDER_BOUND
from helpers import pil_resize
from reference import fast
from reference.activations import silu
from reference.preprocess import (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, normalize, normalize_table, patchify, rescale,
                                  rescale_normalize_torch)
from reference.vision import (apply_rotary, full_cu_seqlens, segment_attention, softmax, vision_attention,
                              vision_forward, vision_mlp, window_index)
from torch_port import Qwen2_5_VLImageTransform



# ---------------------------------------------------------------- bicubic

RESIZES = [((97, 61), (40, 83)), ((61, 97), (83, 40)), ((300, 50), (100, 56)),  # vertical first
           ((50, 300), (56, 100)), ((33, 47), (33, 90)), ((33, 47), (90, 47)), ((1, 9), (7, 1)), ((5, 5), (5, 5))]


@pytest.mark.parametrize("strip_values", [1, 500, 1 << 12, 1 << 40])
def test_resize_strips_change_nothing(monkeypatch, strip_values):
    """One row per strip, a few, or the whole image in one strip: always Pillow's bytes."""
    monkeypatch.setattr(fast, "_STRIP_VALUES", strip_values)
    rng = np.random.default_rng(strip_values % 97)
    for (h, w), (oh, ow) in RESIZES[:-1]:
        for channels in (0, 3, 4):
            image = rng.integers(0, 256, (h, w) if channels == 0 else (h, w, channels), dtype=np.uint8)
            np.testing.assert_array_equal(fast.resize_bicubic(image, oh, ow), pil_resize(image, oh, ow),
                                          err_msg=f"{(h, w)} -> {(oh, ow)}, {channels} channels")


@pytest.mark.parametrize("channels", [0, 1, 2, 3, 4])
def test_fast_resize_equals_plain_resize(channels):
    """Every pass order, one pass or none, every channel count (LA and RGBA premultiplied)."""
    rng = np.random.default_rng(channels)
    for (h, w), (oh, ow) in RESIZES:
        image = rng.integers(0, 256, (h, w) if channels == 0 else (h, w, channels), dtype=np.uint8)
        got = fast.resize_bicubic(image, oh, ow)
        np.testing.assert_array_equal(got, bicubic.resize_bicubic(image, oh, ow), err_msg=f"{(h, w)} -> {(oh, ow)}")
        assert got.dtype == np.uint8 and got.shape == bicubic.resize_bicubic(image, oh, ow).shape


@pytest.mark.parametrize("channels", [0, 1, 3, 4])
def test_fast_torch_resize_equals_plain_torch_resize(channels, monkeypatch):
    """fast.resize_bicubic_torch == reference.resize_bicubic_torch, with big and 1-row strips."""
    rng = np.random.default_rng(10 + channels)
    for strip_values, chunk in ((fast._STRIP_VALUES, fast._SINGLE_THREAD_MNK), (1, 1), (1 << 40, 1 << 40)):
        monkeypatch.setattr(fast, "_STRIP_VALUES", strip_values)
        monkeypatch.setattr(fast, "_SINGLE_THREAD_MNK", chunk)  # vertical products: one column each, or whole
        for (h, w), (oh, ow) in RESIZES:
            image = rng.integers(0, 256, (h, w) if channels == 0 else (h, w, channels), dtype=np.uint8)
            got, want = fast.resize_bicubic_torch(image, oh, ow), reference.resize_bicubic_torch(image, oh, ow)
            assert got.dtype == np.uint8 and got.shape == want.shape
            np.testing.assert_array_equal(got, want, err_msg=f"{(h, w)} -> {(oh, ow)}, strips of {strip_values}")


def test_fast_pass_equals_obvious_pass():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (37, 300, 3), dtype=np.uint8)
    for out in (1, 5, 64, 65, 299, 300, 301, 777):
        np.testing.assert_array_equal(fast.resample_axis(image, out, 1), bicubic.resample_axis(image, out, 1))
        np.testing.assert_array_equal(fast.resample_axis(image.transpose(1, 0, 2), out, 0),
                                      bicubic.resample_axis(image.transpose(1, 0, 2), out, 0))


# ---------------------------------------------------------------- preprocess


def test_normalize_table_is_rescale_then_normalize_per_level():
    table = normalize_table(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
    assert table.dtype == np.float32 and table.shape == (3, 256)
    for c in range(3):
        levels = np.arange(256, dtype=np.uint8)[None, None, :]  # one channel, every level
        want = normalize(rescale(levels), OPENAI_CLIP_MEAN[c:c + 1], OPENAI_CLIP_STD[c:c + 1])[0, 0]
        np.testing.assert_array_equal(table[c], want)


@pytest.mark.parametrize("shape", [(28, 28), (56, 84), (140, 28), (28 * 9, 28 * 5)])
def test_patchify_levels_equals_patchify_of_normalized(shape):
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
    mean, std = (0.5, 0.25, 0.125), (0.2, 0.3, 0.7)  # not CLIP's: the table follows its arguments
    want, gh, gw = patchify(normalize(rescale(image.transpose(2, 0, 1)), mean, std))
    got, gh2, gw2 = fast.patchify_levels(image, normalize_table(mean, std))
    assert (gh, gw) == (gh2, gw2) and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_preprocess_with_and_without_trace_agree():
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (90, 130, 3), dtype=np.uint8), rng.integers(0, 256, (50, 200), dtype=np.uint8),
              rng.integers(0, 256, (64, 64, 4), dtype=np.uint8)]
    fast_out = fast.preprocess(images)  # fast resize, lookup-table patchify
    trace = {}
    slow = reference.preprocess(images, trace=trace)  # rescale -> normalize -> patchify, every stage kept
    np.testing.assert_array_equal(fast_out["pixel_values"], slow["pixel_values"])
    np.testing.assert_array_equal(fast_out["image_grid_thw"], slow["image_grid_thw"])


@pytest.mark.parametrize("kwargs", [{}, {"max_pixels": 28 * 28 * 12}, {"min_pixels": 28 * 28 * 40},
                                    {"patch_size": 7, "merge_size": 3, "temporal_patch_size": 1,
                                     "image_mean": (0.1, 0.5, 0.9), "image_std": (0.2, 0.3, 0.7)}])
def test_fast_preprocess_equals_preprocess(kwargs):
    rng = np.random.default_rng(len(kwargs))
    for shape in ((123, 77, 3), (40, 300), (64, 50, 4), (333, 41, 1)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        want, got = reference.preprocess(image, **kwargs), fast.preprocess(image, **kwargs)
        assert got["pixel_values"].dtype == np.float32 and got["image_grid_thw"].dtype == np.int64
        np.testing.assert_array_equal(got["pixel_values"], want["pixel_values"])
        np.testing.assert_array_equal(got["image_grid_thw"], want["image_grid_thw"])


def test_torch_normalize_table_is_the_fused_step_per_level():
    image = np.random.default_rng(8).integers(0, 256, (3, 20, 30), dtype=np.uint8)
    table = fast.torch_normalize_table(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
    want = rescale_normalize_torch(image, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
    np.testing.assert_array_equal(np.stack([table[c][image[c]] for c in range(3)]), want)


@pytest.mark.parametrize("kwargs", [{}, {"max_pixels": 28 * 28 * 12}, {"min_pixels": 28 * 28 * 40},
                                    {"patch_size": 7, "merge_size": 3, "temporal_patch_size": 1,
                                     "image_mean": (0.1, 0.5, 0.9), "image_std": (0.2, 0.3, 0.7)}])
def test_fast_torchvision_preprocess_equals_preprocess(kwargs):
    """backend="torchvision": gray, RGB, RGBA (HF's float32 blend), CHW, a list; resized or not."""
    rng = np.random.default_rng(20 + len(kwargs))
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((123, 77, 3), (40, 300), (64, 50, 4))]
    images += [rng.integers(0, 256, (3, 56, 84), dtype=np.uint8), images[:2]]
    for image in images:
        want = reference.preprocess(image, backend="torchvision", **kwargs)
        got = fast.preprocess(image, backend="torchvision", **kwargs)
        assert got["pixel_values"].dtype == np.float32 and got["image_grid_thw"].dtype == np.int64
        np.testing.assert_array_equal(got["pixel_values"], want["pixel_values"])
        np.testing.assert_array_equal(got["image_grid_thw"], want["image_grid_thw"])


def _every_input_kind():
    """Each kind of input the plain preprocess takes (``reference.image_inputs``), by name."""
    rng = np.random.default_rng(30)
    hwc = rng.integers(0, 256, (61, 93, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (45, 70, 4), dtype=np.uint8)
    gray = rng.integers(0, 256, (40, 300), dtype=np.uint8)
    chw = np.ascontiguousarray(hwc.transpose(2, 0, 1))
    return {
        "pil_rgb": PIL.Image.fromarray(hwc), "pil_rgba": PIL.Image.fromarray(rgba), "pil_gray": PIL.Image.fromarray(gray),
        "pil_palette": PIL.Image.fromarray(hwc).convert("P"),
        "hwc": hwc, "chw": chw, "chw_view": hwc.transpose(2, 0, 1), "gray_2d": gray, "gray_hwc1": gray[:, :, None],
        "gray_chw1": gray[None], "rgba_hwc": rgba, "rgba_chw": np.ascontiguousarray(rgba.transpose(2, 0, 1)),
        "tensor_chw": torch.from_numpy(chw), "tensor_hwc": torch.from_numpy(hwc), "tensor_gray": torch.from_numpy(gray),
        "list": [hwc, PIL.Image.fromarray(gray), torch.from_numpy(chw)], "nested": [[hwc, rgba], [], [gray]],
        "batch_4d": np.stack([hwc, hwc[::-1]]), "tensor_batch_4d": torch.from_numpy(np.stack([chw, chw])),
        "list_of_batches": [np.stack([hwc, hwc]), np.stack([hwc[::-1]])],
    }


INPUT_OPTIONS = [{}, {"max_pixels": 28 * 28 * 12, "min_pixels": 28 * 28 * 4}, {"do_rescale": False},
                 {"do_rescale": False, "do_normalize": False}, {"do_resize": False, "min_pixels": 1},
                 {"rescale_factor": 0.5, "image_mean": 0.5, "image_std": [0.2, 0.3, 0.4]},
                 {"patch_size": 7, "merge_size": 3, "temporal_patch_size": 1}]


@pytest.mark.parametrize("backend", ["pil", "torchvision"])
@pytest.mark.parametrize("options", INPUT_OPTIONS, ids=lambda o: ",".join(o) or "defaults")
def test_fast_preprocess_takes_every_input_kind(backend, options):
    """fast.preprocess == preprocess on every input kind and HF option, both backends, same dtype."""
    for name, images in _every_input_kind().items():
        if options.get("do_resize") is False:  # sides must be multiples of 28: crop each array to them
            images = _crop_to_multiples(images, 28)
        want = reference.preprocess(images, backend=backend, **options)
        got = fast.preprocess(images, backend=backend, **options)
        assert got["pixel_values"].dtype == want["pixel_values"].dtype, name
        np.testing.assert_array_equal(got["pixel_values"], want["pixel_values"], err_msg=name)
        np.testing.assert_array_equal(got["image_grid_thw"], want["image_grid_thw"], err_msg=name)


def _crop_to_multiples(images, unit):
    if isinstance(images, list):
        return [_crop_to_multiples(image, unit) for image in images]
    if isinstance(images, PIL.Image.Image):
        return images.crop((0, 0, images.width // unit * unit, images.height // unit * unit))
    array = images
    if array.ndim == 4:
        return array[:, :, : array.shape[2] // unit * unit, : array.shape[3] // unit * unit] if array.shape[1] == 3 \
            else array[:, : array.shape[1] // unit * unit, : array.shape[2] // unit * unit]
    if array.ndim == 2 or array.shape[2] in (1, 3, 4):
        return array[: array.shape[0] // unit * unit, : array.shape[1] // unit * unit]
    return array[:, : array.shape[1] // unit * unit, : array.shape[2] // unit * unit]


@pytest.mark.parametrize("backend", ["pil", "torchvision"])
def test_fast_preprocess_input_data_format_and_kept_channels(backend):
    """An ambiguous [3, 60, 3] strip read both ways, and RGBA / gray kept (do_convert_rgb=False)."""
    rng = np.random.default_rng(31)
    strip = rng.integers(0, 256, (3, 60, 3), dtype=np.uint8)
    for data_format in (None, "channels_first", "channels_last"):
        want = reference.preprocess(strip, backend=backend, input_data_format=data_format)
        got = fast.preprocess(strip, backend=backend, input_data_format=data_format)
        np.testing.assert_array_equal(got["pixel_values"], want["pixel_values"], err_msg=str(data_format))
        np.testing.assert_array_equal(got["image_grid_thw"], want["image_grid_thw"])
    keep = {"do_convert_rgb": False, "image_mean": [0.5] * 4, "image_std": [0.25] * 4}
    rgba = PIL.Image.fromarray(rng.integers(0, 256, (50, 70, 4), dtype=np.uint8))
    for images, options in ((rgba, keep), (np.asarray(rgba), keep), (np.asarray(rgba)[:, :, 0], {"do_convert_rgb": False,
                                                                                               "image_mean": 0.5,
                                                                                               "image_std": 0.25})):
        want = reference.preprocess(images, backend=backend, **options)
        got = fast.preprocess(images, backend=backend, **options)
        assert got["pixel_values"].shape == want["pixel_values"].shape
        np.testing.assert_array_equal(got["pixel_values"], want["pixel_values"])


@pytest.mark.parametrize("bad", [
    np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 5), np.uint8), np.zeros((0, 8, 3), np.uint8), "image.png", [],
    np.zeros((1, 2, 8, 8, 3), np.uint8), np.zeros((3, 700, 3), np.uint8), torch.zeros(3, 8, 8), [[1, 2, 3]],
], ids=lambda b: type(b).__name__ + str(getattr(b, "shape", "")))
@pytest.mark.parametrize("backend", ["pil", "torchvision"])
def test_fast_preprocess_refuses_what_the_plain_form_refuses(bad, backend):
    with pytest.raises((TypeError, ValueError)) as plain:
        reference.preprocess(bad, backend=backend)
    with pytest.raises(plain.type) as got:
        fast.preprocess(bad, backend=backend)
    assert str(got.value) == str(plain.value)
    for options in ({"input_data_format": "CHW"}, {"image_mean": (0.5,) * 4}, {"backend": "cv2"}):
        with pytest.raises(ValueError) as plain:
            reference.preprocess(np.zeros((56, 56, 3), np.uint8), **{"backend": backend, **options})
        with pytest.raises(ValueError) as got:
            fast.preprocess(np.zeros((56, 56, 3), np.uint8), **{"backend": backend, **options})
        assert str(got.value) == str(plain.value)


# ---------------------------------------------------------------- vision


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_and_silu_in_place_equal_the_plain_functions(dtype):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 600, 70)) * 30).astype(dtype)
    x[0, 0, :3] = [-1e4, 1e4, 0.0]  # extreme logits
    np.testing.assert_array_equal(fast.softmax(x.copy()), softmax(x))
    y = (rng.standard_normal((700, 33)) * 20).astype(dtype)  # more rows than one chunk
    y[0, :4] = [-1e4, 1e4, -200.0, 0.0]  # exp overflow for very negative inputs gives -0
    np.testing.assert_array_equal(fast.silu(y.copy()), silu(y))


def _plain_vision_attention(x, cos, sin, cu_seqlens, qkv, proj, num_heads):
    """vision_attention as first written: separate rotary calls on q and k, no chunks."""
    S, hidden = x.shape
    qkv_out = (x @ qkv["weight"].T + qkv["bias"]).reshape(S, 3, num_heads, hidden // num_heads)
    q, k, v = qkv_out[:, 0], qkv_out[:, 1], qkv_out[:, 2]
    q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    o = segment_attention(q, k, v, cu_seqlens)
    return o.reshape(S, hidden) @ proj["weight"].T + proj["bias"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_attention_and_mlp_equal_their_plain_forms(dtype):
    rng = np.random.default_rng(1)
    hidden, heads, inter, side = 48, 4, 80, 26  # 676 rows: several rotary / SiLU chunks, edge windows
    grid = np.array([[1, side, side]])
    x = rng.standard_normal((side * side, hidden)).astype(dtype)
    cos, sin = reference.rotary_cos_sin(grid, hidden // heads, dtype=dtype)

    def lin(n_out, n_in):
        return {"weight": (rng.standard_normal((n_out, n_in)) / n_in ** 0.5).astype(dtype),
                "bias": rng.standard_normal(n_out).astype(dtype)}

    qkv, proj = lin(3 * hidden, hidden), lin(hidden, hidden)
    for cu in (window_index(grid, window_size=56)[1], full_cu_seqlens(grid)):
        got = fast.vision_attention(x, cos, sin, cu, qkv, proj, heads)
        np.testing.assert_array_equal(got, _plain_vision_attention(x, cos, sin, cu, qkv, proj, heads))
        np.testing.assert_array_equal(got, vision_attention(x, cos, sin, cu, qkv, proj, heads))
    gate, up, down = lin(inter, hidden), lin(inter, hidden), lin(hidden, inter)
    plain = (silu(x @ gate["weight"].T + gate["bias"]) * (x @ up["weight"].T + up["bias"])) @ down["weight"].T
    np.testing.assert_array_equal(fast.vision_mlp(x, gate, up, down), plain + down["bias"])
    for act in reference.SUPPORTED_ACTS:
        np.testing.assert_array_equal(fast.vision_mlp(x, gate, up, down, act), vision_mlp(x, gate, up, down, act))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_segment_attention_chunks_and_layouts_agree(dtype):
    """Batched windows (views), one by one, head chunks and query-row chunks: same numbers; the
    fast form's bits equal the plain form's whatever the chunking."""
    rng = np.random.default_rng(2)
    S, heads, d = 200, 4, 8
    q, k, v = (rng.standard_normal((S, heads, d)).astype(dtype) for _ in range(3))
    back_to_back = np.array([0, 40, 80, 120, 160, 200])  # equal lengths: batched through views
    interleaved = np.array([0, 40, 50, 90, 100, 140, 150, 200])  # lengths 40, 10, 40, 10, ...: one by one
    uneven = np.array([0, 7, 7, 47, 87, 127, 128, 200])  # an empty segment, a run of three, a single row
    atol = FLOAT64_REORDER_BOUND if dtype == np.float64 else FLOAT32_REORDER_BOUND
    for cu in (back_to_back, interleaved, uneven):
        whole = fast.segment_attention(q, k, v, cu)
        np.testing.assert_array_equal(whole, segment_attention(q, k, v, cu))
        for max_scores in (40 * 40 * 4, 40 * 40, 40 * 7, 1):  # all heads, one head, 7 rows, 1 row
            chunked = fast.segment_attention(q, k, v, cu, max_scores=max_scores)
            np.testing.assert_allclose(chunked, whole, rtol=0, atol=atol)
            np.testing.assert_array_equal(chunked, segment_attention(q, k, v, cu, max_scores=max_scores))


def test_segment_attention_memory_stays_per_row_in_full_attention():
    """A 5184-row frame (1008x1008, 16 heads, head_dim 80) is taken a few query rows at a time:
    each head's scores stay below its [S, head_dim] queries, far below [heads, S, S] (430 M)."""
    rows = vision.query_rows(16, 5184)
    assert 16 * rows * 5184 <= vision.MAX_SCORES < 16 * 5184 * 5184
    assert rows * 5184 <= 5184 * 80
    assert vision.query_rows(16, 64) == 64  # a window: all its rows at once
    assert vision.query_rows(4, 0) == 1  # empty segments cost nothing


TOWER_CONFIGS = [
    reference.VisionConfig(depth=2, hidden_size=32, num_heads=2, intermediate_size=40, out_hidden_size=24,
                           fullatt_block_indexes=(1,)),
    reference.VisionConfig(depth=3, hidden_size=48, num_heads=4, intermediate_size=56, out_hidden_size=16,
                           window_size=56, fullatt_block_indexes=(0,), hidden_act="gelu_pytorch_tanh"),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", TOWER_CONFIGS, ids=["win112", "win56_gelu"])
def test_fast_tower_equals_plain_tower_with_its_trace(config, dtype):
    weights = reference.random_weights(config, seed=4)
    rng = np.random.default_rng(4)
    for grid in ([[1, 8, 12]], [[1, 10, 6], [2, 4, 8]], [[1, 18, 10]]):
        rows = sum(t * h * w for t, h, w in grid)
        pixels = rng.standard_normal((rows, config.patch_dim)).astype(np.float32)
        want_trace, got_trace = {}, {}
        want = vision_forward(pixels, grid, weights, config, dtype=dtype, trace=want_trace)
        got = fast.vision_forward(pixels, grid, weights, config, dtype=dtype, trace=got_trace)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(fast.vision_forward(pixels, grid, weights, config, dtype=dtype), want)
        assert list(got_trace) == list(want_trace)
        for stage, value in want_trace.items():
            assert got_trace[stage].dtype == value.dtype, stage
            np.testing.assert_array_equal(got_trace[stage], value, err_msg=stage)


@pytest.mark.parametrize("forward", [vision_forward, fast.vision_forward], ids=["plain", "fast"])
def test_float32_tower_stays_float32(forward):
    config = reference.VisionConfig(depth=2, hidden_size=32, num_heads=2, intermediate_size=40, out_hidden_size=24,
                                    fullatt_block_indexes=(1,))
    weights = reference.random_weights(config, seed=3)
    grid = np.array([[1, 8, 12]])
    pixels = np.random.default_rng(3).standard_normal((96, config.patch_dim)).astype(np.float32)
    trace = {}
    out = forward(pixels, grid, weights, config, dtype=np.float32, trace=trace)
    assert out.dtype == np.float32
    assert {str(v.dtype) for v in trace.values() if v.dtype.kind == "f"} == {"float32"}


# ---------------------------------------------------------------- torch_port transform


def test_transform_matches_hf_on_a_large_photo():
    """One Pillow resize of the whole image, then the table lookup: HF's bytes on a 1000x700 photo."""
    from goldenlib.hf_image import hf_preprocess

    photo = np.asarray(PIL.Image.open("data/photos/rocket.png").convert("RGB"))
    image = np.asarray(PIL.Image.fromarray(photo).resize((1000, 700), PIL.Image.Resampling.BICUBIC))
    for max_pixels in (12845056, 1003520):
        ours = Qwen2_5_VLImageTransform(max_pixels=max_pixels)({"image": PIL.Image.fromarray(image)})
        hf = hf_preprocess([image], 3136, max_pixels)
        np.testing.assert_array_equal(ours["pixel_values"].numpy(), hf["pixel_values"])
        np.testing.assert_array_equal(ours["image_grid_thw"].numpy(), hf["image_grid_thw"])


@pytest.mark.parametrize("patch_size, merge_size, temporal_patch_size", [(14, 2, 2), (15, 2, 2), (14, 1, 3), (7, 3, 1)])
def test_transform_patchify_equals_reference_for_any_patching(patch_size, merge_size, temporal_patch_size):
    """The lookup straight into the output's layout, any patch and merge size and time steps:
    always patchify(normalize(rescale(image)))."""
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.7)
    transform = Qwen2_5_VLImageTransform(patch_size=patch_size, merge_size=merge_size,
                                         temporal_patch_size=temporal_patch_size, image_mean=mean, image_std=std)
    unit = patch_size * merge_size
    image = np.random.default_rng(patch_size).integers(0, 256, (5 * unit, 7 * unit, 3), dtype=np.uint8)
    want, _, _ = patchify(normalize(rescale(image.transpose(2, 0, 1)), mean, std), patch_size, merge_size,
                          temporal_patch_size)
    got = transform.patchify(torch.from_numpy(image.copy())).numpy()
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
