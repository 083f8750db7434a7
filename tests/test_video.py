"""reference.preprocess_video and torch_port.Qwen2_5_VLVideoTransform against HF's Qwen2VLVideoProcessor.

Every expected value comes from HF (``Qwen2VLVideoProcessor`` on CPU, and
``Qwen2_5_VLProcessor._process_videos`` for ``second_per_grid_ts``); both ours must be equal bit
for bit. HF's own video-processor test cases (tests/models/qwen2_vl/test_video_processing_qwen2_vl.py)
are at the end, in our API.
"""

import math

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import Qwen2VLVideoProcessor
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.models.qwen2_vl.video_processing_qwen2_vl import smart_resize as hf_smart_resize

from reference import preprocess_video
from torch_port import Qwen2_5_VLVideoTransform


def clip(seed, frames, height, width):
    return np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


def hf_video(videos, video_fps=None, processor_kwargs=None, **call):
    """HF's processor output plus the second_per_grid_ts Qwen2_5_VLProcessor adds."""
    processor = Qwen2VLVideoProcessor(**{"cap_pixels_per_frame": False, **(processor_kwargs or {})})
    if video_fps is not None:
        clips = videos if isinstance(videos, list) and np.ndim(videos[0]) == 4 else [videos]
        fps_list = video_fps if isinstance(video_fps, list) else [video_fps] * len(clips)
        call["video_metadata"] = [{"total_num_frames": len(c), "fps": f} for c, f in zip(clips, fps_list)]
    stub = object.__new__(Qwen2_5_VLProcessor)  # no tokenizer needed: only the video half runs
    stub.video_processor = processor
    out, _ = stub._process_videos(videos, return_metadata=True, return_tensors="pt", **call)
    return out


def assert_same(hf, ours):
    np.testing.assert_array_equal(np.asarray(ours["video_grid_thw"]), hf["video_grid_thw"].numpy())
    got = ours["pixel_values_videos"]
    got = got.numpy() if isinstance(got, torch.Tensor) else got
    assert got.dtype == np.float32 and got.shape == tuple(hf["pixel_values_videos"].shape)
    assert np.array_equal(got, hf["pixel_values_videos"].numpy()), (
        f"max |diff| {np.abs(got - hf['pixel_values_videos'].numpy()).max()}")
    assert list(ours["second_per_grid_ts"]) == list(hf["second_per_grid_ts"])


def port_on(video, video_fps=None, **kwargs):
    sample = {"video": video} if video_fps is None else {"video": video, "video_fps": video_fps}
    return Qwen2_5_VLVideoTransform(**kwargs)(sample)


# ---------------------------------------------------------------- named cases, reference and port

CASES = {
    "1_frame_padded_to_2": (clip(0, 1, 60, 90), {}),
    "5_frames_grid_t_3": (clip(1, 5, 100, 140), {}),
    "frames_differ": (np.stack([np.full((64, 96, 3), 40 * i, np.uint8) for i in range(4)])
                      + clip(2, 4, 64, 96) // 8, {}),
    "fps_from_30fps_clip": (clip(3, 30, 48, 64), {"do_sample_frames": True, "fps": 2, "video_fps": 30}),
    "fps_2_7_from_30fps": (clip(4, 45, 40, 40), {"do_sample_frames": True, "fps": 2.7, "video_fps": 30}),
    "num_frames_6": (clip(5, 13, 50, 50), {"do_sample_frames": True, "num_frames": 6}),
    "num_frames_5_rounds_to_4": (clip(6, 9, 50, 50), {"do_sample_frames": True, "num_frames": 5, "video_fps": 24}),
    "no_sampling_with_fps_known": (clip(7, 3, 30, 200), {"video_fps": 25}),
    "size_bounds_small": (clip(8, 2, 300, 500), {"min_pixels": 28 * 28, "max_pixels": 56 * 56 * 4}),
    "size_bounds_upscale": (clip(9, 2, 20, 30), {"min_pixels": 200 * 200}),
    "one_axis": (clip(10, 2, 56 * 8, 57 * 5), {}),
    "cap_pixels_per_frame": (clip(11, 8, 256, 256), {"min_pixels": 400, "max_pixels": 768 * 28 * 28 * 100,
                                                     "cap_pixels_per_frame": True, "max_video_tokens": 128}),
    "640x480_16_frames": (clip(12, 16, 480, 640), {}),
}

def hf_for(video, kwargs):
    kwargs = dict(kwargs)
    video_fps = kwargs.pop("video_fps", None)
    processor_kwargs = {k: kwargs.pop(k) for k in ("cap_pixels_per_frame", "max_video_tokens") if k in kwargs}
    size = {"shortest_edge": kwargs.pop("min_pixels", 128 * 28 * 28), "longest_edge": kwargs.pop("max_pixels", 768 * 28 * 28)}
    processor_kwargs["size"] = size
    return hf_video(video, video_fps=video_fps, processor_kwargs=processor_kwargs, **kwargs)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n.startswith("640") else n for n in CASES])
def test_reference_and_port_equal_hf(name):
    video, kwargs = CASES[name]
    hf = hf_for(video, kwargs)
    assert_same(hf, preprocess_video(video, **kwargs))
    port_kwargs = {k: v for k, v in kwargs.items() if k != "video_fps"}
    assert_same(hf, port_on(torch.from_numpy(video), kwargs.get("video_fps"), **port_kwargs))


def test_named_case_facts_from_hf():
    """The case names say what HF gives: padding 1 -> 2 frames, 5 frames -> t = 3, fps 2 of 30 fps -> 4 frames."""
    assert hf_for(*CASES["1_frame_padded_to_2"])["video_grid_thw"][0, 0] == 1
    assert hf_for(*CASES["5_frames_grid_t_3"])["video_grid_thw"][0, 0] == 3
    assert hf_for(*CASES["fps_from_30fps_clip"])["video_grid_thw"][0, 0] == 2


def test_several_videos_in_one_call():
    videos = [clip(20, 3, 40, 60), clip(21, 4, 90, 30), clip(22, 2, 40, 60)]
    hf = hf_video(videos, video_fps=[10, 30, 12.5])
    assert_same(hf, preprocess_video(videos, video_fps=[10, 30, 12.5]))
    hf = hf_video(videos, do_sample_frames=True, num_frames=2)
    assert_same(hf, preprocess_video(videos, do_sample_frames=True, num_frames=2))


def test_list_of_frames_and_pil_frames():
    video = clip(23, 3, 44, 70)
    hf = hf_video(list(video))
    assert_same(hf, preprocess_video(list(video)))
    pil = [PIL.Image.fromarray(frame) for frame in video]
    assert_same(hf, preprocess_video(pil))
    assert_same(hf, port_on(pil))
    assert_same(hf, port_on(video))


def test_trace_holds_every_stage():
    trace = {}
    out = preprocess_video(clip(24, 3, 40, 40), trace=trace)
    assert trace["sampled"].shape == (3, 40, 40, 3) and trace["resized"].dtype == np.uint8
    assert trace["normalized"].shape[:2] == (3, 3) and trace["padded"].shape[0] == 4
    assert trace["pixel_values_videos"] is out["pixel_values_videos"]


def test_interpolate_is_torchvisions_uint8_kernel():
    """The port's resize (F.interpolate on uint8) gives torchvision's resize bytes, channels-last input too."""
    import torchvision.transforms.v2.functional as tvF

    rng = np.random.default_rng(25)
    for _ in range(20):
        h, w, oh, ow = (int(x) for x in rng.integers(1, 120, 4))
        frames = torch.from_numpy(rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8))
        expected = tvF.resize(frames.permute(0, 3, 1, 2).contiguous(), [oh, ow],
                              interpolation=tvF.InterpolationMode.BICUBIC, antialias=True)
        got = torch.nn.functional.interpolate(frames.permute(0, 3, 1, 2), size=(oh, ow), mode="bicubic", antialias=True)
        assert torch.equal(got, expected), (h, w, oh, ow)


def test_frame_sampling_indices_equal_hf():
    """Sampling by num_frames and fps picks HF's frames (return_metadata gives HF's indices)."""
    processor = Qwen2VLVideoProcessor(cap_pixels_per_frame=False)
    for total, kwargs in [(30, {"fps": 2}), (37, {"fps": 3.3}), (64, {"num_frames": 10}), (11, {"num_frames": 8}),
                          (900, {"fps": 1})]:
        video = np.zeros((total, 28, 28, 3), np.uint8)
        video[:, 0, 0, 0] = np.arange(total) % 256
        hf = processor(video, do_sample_frames=True, video_metadata={"total_num_frames": total, "fps": 30},
                       return_metadata=True, **kwargs)
        trace = {}
        preprocess_video(video, do_sample_frames=True, video_fps=30, trace=trace, **kwargs)
        assert trace["sampled"][:, 0, 0, 0].tolist() == [i % 256 for i in hf["video_metadata"][0].frames_indices]


# ---------------------------------------------------------------- bad input


def both(video, match, error=ValueError, video_fps=None, **kwargs):
    with pytest.raises(error, match=match):
        preprocess_video(video, video_fps=video_fps, **kwargs)
    with pytest.raises(error, match=match):
        port_on(video, video_fps, **kwargs)


def test_bad_input():
    both(np.zeros((0, 56, 56, 3), np.uint8), "0 frames")  # HF returns grid_t 0 without complaint
    frames = [np.zeros((56, 56, 3), np.uint8), np.zeros((28, 56, 3), np.uint8)]
    with pytest.raises(ValueError):
        Qwen2VLVideoProcessor(cap_pixels_per_frame=False)(frames)  # HF: numpy's ValueError from stacking
    both(frames, "differ in size")
    both(np.full((2, 56, 56, 3), 300.0, np.float32), r"uint8.*300")  # HF goes on with values up to 300/255
    both(clip(30, 4, 28, 28), "fps must be positive", do_sample_frames=True, fps=0, video_fps=30)
    both(clip(30, 4, 28, 28), "fps must be positive", do_sample_frames=True, fps=-1.5, video_fps=30)
    with pytest.raises(ValueError, match="mutually exclusive") as hf_error:
        hf_video(clip(30, 4, 28, 28), do_sample_frames=True, fps=1, num_frames=2)
    both(clip(30, 4, 28, 28), "mutually exclusive", do_sample_frames=True, fps=1, num_frames=2)
    assert hf_error.type is ValueError
    with pytest.raises(ValueError, match="metadata"):
        Qwen2VLVideoProcessor(cap_pixels_per_frame=False)(clip(30, 4, 28, 28), do_sample_frames=True, fps=1)
    both(clip(30, 4, 28, 28), "video's own fps", do_sample_frames=True, fps=1)
    with pytest.raises(ValueError, match="exceeds"):
        hf_video(clip(30, 4, 28, 28), do_sample_frames=True, num_frames=10)
    both(clip(30, 4, 28, 28), "exceeds", do_sample_frames=True, num_frames=10)
    with pytest.raises(IndexError):  # HF's arange overshoot: 14 of 17 frames gives 15 indices, the last 17
        hf_video(clip(31, 17, 28, 28), do_sample_frames=True, num_frames=14)
    both(clip(31, 17, 28, 28), "past the clip", IndexError, do_sample_frames=True, num_frames=14)
    both(clip(30, 4, 28, 28), "0 frames", do_sample_frames=True, num_frames=1)  # HF: ZeroDivisionError
    with pytest.raises(ValueError, match="backend"):
        preprocess_video(clip(30, 2, 28, 28), backend="pil")


def test_fps_without_sampling_warns_and_follows_hf():
    video = clip(32, 5, 28, 28)
    hf = hf_video(video, fps=2)  # HF ignores fps when do_sample_frames is False
    with pytest.warns(UserWarning, match="do_sample_frames"):
        assert_same(hf, preprocess_video(video, fps=2))


# ---------------------------------------------------------------- HF's own test cases, in our API
# Tester: 5 videos of 8 frames, sides 30..80, size {shortest_edge: 400, longest_edge: 10000}
# (min_pixels 20*20 and max_pixels 100*100 take precedence), OpenAI CLIP mean/std, tp 2.

HF_SIZE = {"min_pixels": 20 * 20, "max_pixels": 100 * 100}


def make_tester_videos(seed=40, frames=8, equal=False):
    rng = np.random.default_rng(seed)
    sides = [(80, 80) if equal else tuple(int(s) for s in rng.integers(30, 80, 2)) for _ in range(5)]
    return [rng.integers(0, 256, (frames, h, w, 3), dtype=np.uint8) for h, w in sides]


def expected_rows(videos, frames=8, min_pixels=400, max_pixels=10000):
    """HF's expected_output_video_shape: grid_t * grid_h * grid_w summed, from HF's smart_resize."""
    rows = 0
    for video in videos:
        h, w = hf_smart_resize(video.shape[1], video.shape[2], 28, min_pixels, max_pixels)
        rows += frames // 2 * (h // 14) * (w // 14)
    return rows


def hf_tester(videos, **call):
    return hf_video(videos, processor_kwargs={"size": {"shortest_edge": 400, "longest_edge": 10000}}, **call)


@pytest.mark.parametrize("form", ["pil", "numpy", "pytorch", "nested"])
def test_hf_call_pil_numpy_pytorch_nested(form):
    """test_call_pil / test_call_numpy / test_call_pytorch / test_nested_input: one video, then the batch."""
    videos = make_tester_videos()
    as_form = {"pil": lambda v: [PIL.Image.fromarray(f) for f in v], "numpy": lambda v: v,
               "pytorch": lambda v: torch.from_numpy(v), "nested": list}[form]
    inputs = [as_form(v) for v in videos]
    for given, clips in ((inputs[0], videos[:1]), (inputs, videos)):
        out = preprocess_video(given, **HF_SIZE)
        assert out["pixel_values_videos"].shape == (expected_rows(clips), 1176)
        hf_given = [v.permute(0, 3, 1, 2) for v in given] if form == "pytorch" and isinstance(given, list) else (
            given.permute(0, 3, 1, 2) if form == "pytorch" else given)
        assert_same(hf_tester(hf_given), out)


def test_hf_call_sample_frames():
    videos = make_tester_videos(41)
    out = preprocess_video(videos, do_sample_frames=True, num_frames=4, **HF_SIZE)
    assert out["pixel_values_videos"].shape == (expected_rows(videos, frames=4), 1176)
    assert_same(hf_tester(videos, do_sample_frames=True, num_frames=4), out)
    out = preprocess_video(videos, do_sample_frames=True, fps=3, video_fps=4, **HF_SIZE)
    assert out["pixel_values_videos"].shape == (expected_rows(videos, frames=6), 1176)
    assert_same(hf_tester(videos, video_fps=4, do_sample_frames=True, fps=3), out)
    with pytest.raises(ValueError):
        preprocess_video(videos, do_sample_frames=True, num_frames=10, **HF_SIZE)
    with pytest.warns(UserWarning):  # do_sample_frames False: num_frames=3 changes nothing, as in HF
        out = preprocess_video(videos, num_frames=3, **HF_SIZE)
    assert out["pixel_values_videos"].shape == (expected_rows(videos), 1176)


def test_hf_num_frames_equal_temporal_patch_size_plus_two():
    frames = list(clip(42, 5, 28, 28))
    out = preprocess_video(frames, min_pixels=28 * 28, max_pixels=5 * 28 * 28, temporal_patch_size=3)
    assert out["pixel_values_videos"].shape == (8, 3 * 3 * 14 * 14)
    assert out["video_grid_thw"].tolist() == [[2, 2, 2]]
    hf = hf_video(frames, processor_kwargs={"size": {"shortest_edge": 28 * 28, "longest_edge": 5 * 28 * 28},
                                            "temporal_patch_size": 3})
    np.testing.assert_array_equal(out["pixel_values_videos"], hf["pixel_values_videos"].numpy())


def test_hf_bc_min_max_pixels():
    videos = make_tester_videos(43, equal=True)
    out = preprocess_video(videos, min_pixels=28 * 28, max_pixels=56 * 56)
    assert out["pixel_values_videos"].shape == (320, 1176)
    assert_same(hf_video(videos, processor_kwargs={"min_pixels": 28 * 28, "max_pixels": 56 * 56}), out)


def capped_rows(frames, side, min_pixels, max_pixels, tokens):
    """HF's _expected_capped_seq_len."""
    budget = int(tokens * 28 * 28 * 0.9)
    cap = max(min(max_pixels, budget * 2 // frames), int(min_pixels * 1.05))
    h, w = hf_smart_resize(side, side, 28, min_pixels, cap)
    return frames // 2 * (h // 14) * (w // 14)


@pytest.mark.parametrize("min_pixels,tokens", [(400, 128), (40000, 128), (400, 128000)])
def test_hf_cap_pixels_per_frame(min_pixels, tokens):
    """test_cap_pixels_per_frame_{bounds_dense_videos, floors_at_min_pixels, noop_when_not_binding, call_time_override}."""
    frames = list(clip(44, 8, 256, 256))
    size = {"min_pixels": min_pixels, "max_pixels": 768 * 28 * 28 * 100}
    capped = preprocess_video(frames, cap_pixels_per_frame=True, max_video_tokens=tokens, **size)
    uncapped = preprocess_video(frames, **size)
    assert capped["pixel_values_videos"].shape[0] == capped_rows(8, 256, min_pixels, size["max_pixels"], tokens)
    if tokens == 128 and min_pixels == 400:
        assert capped["pixel_values_videos"].shape[0] < uncapped["pixel_values_videos"].shape[0]
    if tokens == 128000:
        assert capped["pixel_values_videos"].shape == uncapped["pixel_values_videos"].shape
    hf = hf_video(frames, processor_kwargs={"size": {"shortest_edge": min_pixels, "longest_edge": size["max_pixels"]},
                                            "max_video_tokens": tokens}, cap_pixels_per_frame=True)
    assert_same(hf, capped)
    assert math.isclose(capped["second_per_grid_ts"][0], 2 / 24)
