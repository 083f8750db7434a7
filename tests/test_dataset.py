"""torch_port.qwen2_5_vl_chat_dataset against HF's Qwen2_5_VLProcessor on the same messages and files.

The test writes its own data: PNG images, a JPEG saved with EXIF orientation 6 (stored sideways),
an MPEG-4 clip (PyAV), a video as PNG frame files, and JSON files in the three layouts the dataset
reads. HF's side: the chat template (tests/hf_chat.py) renders the same conversation, images go to
the processor as paths (HF's ``load_image``), video files as HF's ``load_video`` decodes them (PyAV,
its default) with their metadata, frame files as paths. Expected tokens, pixel values, grids come
from that processor, positions from HF's ``get_rope_index``, labels from HF's tokens: the assistant
turns (``<|im_start|>assistant`` up to the next turn) and nothing else. A training sample is HF's
tokens without the final newline (torchtune's convention, see torch_port/_model_transform.py).
"""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import av
import numpy as np
import PIL.Image
import pytest
import torch
from torchtune.data import CROSS_ENTROPY_IGNORE_IDX
from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessorPil, Qwen2VLVideoProcessor
from transformers.image_utils import load_image as hf_load_image
from transformers.video_utils import load_video as hf_load_video

import torch_port
from hf_chat import CHAT_TEMPLATE, hf_rope_index
from tiny_tokenizer import SPECIAL_IDS, hf_tiny_tokenizer, write_tiny_tokenizer

MIN_PIXELS, MAX_PIXELS, VIDEO_MAX_PIXELS = 56 * 56, 112 * 112, 84 * 84
IM_START = SPECIAL_IDS["<|im_start|>"]
SAMPLING = {"do_sample_frames": True, "fps": 2, "min_frames": 2}


def write_clip(path, frames: int, fps: int, height: int = 48, width: int = 64, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(frames):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def random_image(seed: int, height: int, width: int) -> PIL.Image.Image:
    return PIL.Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chat_data")
    vocab, merges = write_tiny_tokenizer(folder / "tok")
    random_image(1, 40, 100).save(folder / "a.png")
    random_image(2, 120, 70).save(folder / "b.png")
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # orientation: stored sideways, shown rotated 90 degrees clockwise
    random_image(3, 56, 84).save(folder / "exif.jpg", exif=exif, quality=95)
    for k in range(4):  # a video as frame files (one JPEG: HF decodes frames with torchvision / torchcodec)
        random_image(10 + k, 50, 70).save(folder / f"f{k}.{'jpg' if k == 3 else 'png'}")
    write_clip(folder / "clip.mp4", frames=7, fps=3)
    write_clip(folder / "long.mp4", frames=12, fps=6, seed=1)
    (folder / "bad.png").write_bytes(b"not an image at all")
    (folder / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    return SimpleNamespace(folder=folder, vocab=str(vocab), merges=str(merges))


def make_transform(data, video_options=None, **kwargs):
    return torch_port.Qwen2_5_VLTransform(
        data.vocab, data.merges, image_options={"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS},
        video_options={"min_pixels": MIN_PIXELS, "max_pixels": VIDEO_MAX_PIXELS, **(video_options or {})}, **kwargs)


def make_processor(data, video_options=None):
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS),
        tokenizer=hf_tiny_tokenizer(data.folder / "tok"),
        video_processor=Qwen2VLVideoProcessor(min_pixels=MIN_PIXELS, max_pixels=VIDEO_MAX_PIXELS,
                                              cap_pixels_per_frame=False, **(video_options or {})),
        chat_template=CHAT_TEMPLATE,
    )


@pytest.fixture(scope="module")
def transform(data):
    return make_transform(data)


@pytest.fixture(scope="module")
def processor(data):
    return make_processor(data)


def dataset(data, transform, name, rows, **kwargs):
    path = data.folder / name
    path.write_text(json.dumps(rows))
    return torch_port.qwen2_5_vl_chat_dataset(transform, data_files=str(path), image_dir=str(data.folder), **kwargs)


def hf_expected(data, processor, messages, images=(), videos=()):
    """HF's processor on ``messages`` (HF chat dicts, media parts without files), ``images`` (file
    names) and ``videos`` (a file name, or a list of frame file names): its outputs for a training
    sample (the final newline dropped) and the labels of its assistant turns."""
    text = processor.apply_chat_template(messages, tokenize=False)
    kwargs = {}
    if images:
        kwargs["images"] = [str(data.folder / name) for name in images]
    if videos:
        decoded = [hf_load_video(str(data.folder / v)) if isinstance(v, str) else None for v in videos]
        kwargs["videos"] = [[d[0] if d else [str(data.folder / f) for f in v] for d, v in zip(decoded, videos)]]
        if all(decoded):
            kwargs["video_metadata"] = [d[1] for d in decoded]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = processor(text=[text], return_tensors="pt", **kwargs)
    newline = processor.tokenizer.encode("\n", add_special_tokens=False)
    ids = hf["input_ids"][0]
    assert ids[-len(newline):].tolist() == newline
    n = len(ids) - len(newline)
    assistant = processor.tokenizer.encode("assistant", add_special_tokens=False)
    labels, train = [], False
    for k, token in enumerate(ids[:n].tolist()):
        if token == IM_START:  # a turn starts: trained on when it is the assistant's
            train = ids[k + 1 : k + 1 + len(assistant)].tolist() == assistant
        labels.append(token if train else CROSS_ENTROPY_IGNORE_IDX)
    positions = hf_rope_index(hf["input_ids"][:, :n], hf["mm_token_type_ids"][:, :n], hf.get("image_grid_thw"),
                              hf.get("video_grid_thw"), hf.get("second_per_grid_ts"), hf["attention_mask"][:, :n])
    return {"tokens": ids[:n].tolist(), "labels": labels, "input_pos": positions[:, 0], "hf": hf}


def check(sample, want):
    assert sample["tokens"] == want["tokens"]
    assert sample["labels"] == want["labels"]
    assert torch.equal(sample["input_pos"], want["input_pos"])
    hf, got = want["hf"], sample["encoder_input"]
    for kind, values, grid in (("image", "pixel_values", "image_grid_thw"),
                               ("video", "pixel_values_videos", "video_grid_thw")):
        if grid not in hf:
            assert kind not in got
            continue
        assert torch.equal(got[kind]["grid_thw"], hf[grid])
        assert torch.equal(got[kind]["pixel_values"], hf[values])  # bit-exact


def user(*parts):
    return {"role": "user", "content": [{"type": p} if p in ("image", "video") else {"type": "text", "text": p}
                                        for p in parts]}


def assistant(text):
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


# ----------------------------------------------------------------------------- layouts vs HF


def test_llama_factory_layout_equals_hf(data, transform, processor):
    """ShareGPT / LLaMA-Factory: role/content messages, <image> / <video> tags, images and videos lists;
    a text-only row in the same file (``datasets`` gives it images / videos None)."""
    rows = [
        {"messages": [{"role": "user", "content": "<image><image> What is in this image?"},
                      {"role": "assistant", "content": " A cat and a dog"},
                      {"role": "user", "content": " Describe the video<video>"},
                      {"role": "assistant", "content": " A red square"}],
         "images": ["a.png", "exif.jpg"], "videos": ["clip.mp4"]},
        {"messages": [{"role": "user", "content": " What is"}, {"role": "assistant", "content": " A cat"}]},
    ]
    ds = dataset(data, transform, "llama_factory.json", rows)
    assert len(ds) == 2
    check(ds[0], hf_expected(data, processor, [user("image", "image", " What is in this image?"),
                                               assistant(" A cat and a dog"), user(" Describe the video", "video"),
                                               assistant(" A red square")],
                             images=["a.png", "exif.jpg"], videos=["clip.mp4"]))
    check(ds[1], hf_expected(data, processor, [user(" What is"), assistant(" A cat")]))
    assert ds[1]["encoder_input"] == {}


def test_sharegpt_conversations_frames_and_single_image_rows_equal_hf(data, transform, processor):
    """``conversations`` (from / value) rows: tags with a video of frame files and an image; the
    single-image layout of torchtune (``image``, put before the first user text); a text-only row."""
    frames = ["f0.png", "f1.png", "f2.png", "f3.jpg"]
    rows = [
        {"conversations": [{"from": "human", "value": "<video> and<image> Describe the picture"},
                           {"from": "gpt", "value": " A dog"}],
         "videos": [frames], "images": ["b.png"]},
        {"conversations": [{"from": "human", "value": " What is in this image?"}, {"from": "gpt", "value": " A cat"}],
         "image": "exif.jpg"},
        {"conversations": [{"from": "system", "value": "You are a cat."}, {"from": "human", "value": " Say"},
                           {"from": "gpt", "value": " A cat"}]},
    ]
    ds = dataset(data, transform, "sharegpt.json", rows)
    check(ds[0], hf_expected(data, processor, [user("video", " and", "image", " Describe the picture"),
                                               assistant(" A dog")], images=["b.png"], videos=[frames]))
    check(ds[1], hf_expected(data, processor, [user("image", " What is in this image?"), assistant(" A cat")],
                             images=["exif.jpg"]))
    check(ds[2], hf_expected(data, processor, [{"role": "system", "content": "You are a cat."}, user(" Say"),
                                               assistant(" A cat")]))


def test_hf_messages_layout_equals_hf(data, transform, processor):
    """HF chat messages with content parts naming their files (``image`` / ``path`` / ``video``)."""
    rows = [
        {"messages": [{"role": "user", "content": [{"type": "image", "path": "a.png"},
                                                   {"type": "text", "text": " What is"},
                                                   {"type": "video", "video": "clip.mp4"}]},
                      {"role": "assistant", "content": [{"type": "text", "text": " A red square"}]}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": " Describe the picture"},
                                                   {"type": "image", "image": "exif.jpg"}]},
                      {"role": "assistant", "content": [{"type": "text", "text": " A cat"}]}]},
    ]
    ds = dataset(data, transform, "hf.json", rows)
    check(ds[0], hf_expected(data, processor, [user("image", " What is", "video"), assistant(" A red square")],
                             images=["a.png"], videos=["clip.mp4"]))
    check(ds[1], hf_expected(data, processor, [user(" Describe the picture", "image"), assistant(" A cat")],
                             images=["exif.jpg"]))


def test_video_file_sampled_by_fps_equals_hf(data):
    """The video processor samples (fps 2 of a 6 fps, 12-frame clip): the dataset decodes only the
    frames HF's sampling keeps; pixel values, grid and ``second_per_grid_ts`` (positions) as HF's."""
    transform, processor = make_transform(data, SAMPLING), make_processor(data, SAMPLING)
    rows = [{"messages": [{"role": "user", "content": "<video> What is"}, {"role": "assistant", "content": " A cat"}],
             "videos": ["long.mp4"]}]
    sample = dataset(data, transform, "sampled.json", rows)[0]
    want = hf_expected(data, processor, [user("video", " What is"), assistant(" A cat")], videos=["long.mp4"])
    check(sample, want)
    assert int(want["hf"]["video_grid_thw"][0, 0]) == 2  # 4 frames of 12 kept: t = 2
    assert want["hf"]["second_per_grid_ts"].tolist() == [1.0]  # 2 / (4 / 12 * 6 fps)


def test_exif_orientation_applied_as_hf(data, transform):
    """The photo stored 84 wide x 56 high with orientation 6 is read upright (56 wide x 84 high), as
    HF's load_image reads it; torchtune's load_image would not turn it."""
    from torchtune.data import load_image as torchtune_load_image

    assert torchtune_load_image(str(data.folder / "exif.jpg")).size == (84, 56)
    assert hf_load_image(str(data.folder / "exif.jpg")).size == (56, 84)
    rows = [{"conversations": [{"from": "human", "value": " What is"}, {"from": "gpt", "value": " A cat"}],
             "image": "exif.jpg"}]
    grid = dataset(data, transform, "exif.json", rows)[0]["encoder_input"]["image"]["grid_thw"]
    want = transform.image_transform({"image": hf_load_image(str(data.folder / "exif.jpg"))})["image_grid_thw"]
    assert torch.equal(grid, want) and int(grid[0, 1]) > int(grid[0, 2])  # taller than wide


def test_mixed_layouts_in_one_file_and_collate(data, transform):
    """A file may hold rows of the ShareGPT-with-lists and single-image layouts side by side; the
    samples collate into one batch with both modalities."""
    rows = [
        {"conversations": [{"from": "human", "value": "<image><video> What is"}, {"from": "gpt", "value": " A cat"}],
         "images": ["a.png"], "videos": ["clip.mp4"]},
        {"conversations": [{"from": "human", "value": " What is"}, {"from": "gpt", "value": " A dog"}],
         "image": "b.png"},
    ]
    ds = dataset(data, transform, "mixed.json", rows)
    batch = torch_port.padded_collate_qwen2_5_vl([ds[0], ds[1]])
    assert batch["encoder_input"]["image"]["grid_thw"].shape == (2, 3)
    assert batch["encoder_input"]["video"]["grid_thw"].shape == (1, 3)


# ----------------------------------------------------------------------------- bad rows are named


def _row(images=(), videos=(), text="<image> What is"):
    return {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": " A cat"}],
            "images": list(images), "videos": list(videos)}


@pytest.mark.parametrize("row, match", [
    (_row(["a.png", "nope.png"], text="<image><image> What is"),
     r"bad_0\.json row 1: image file .*nope\.png not found"),
    (_row(["bad.png"]), r"row 1: image file .*bad\.png cannot be decoded"),
    (_row(videos=["nope.mp4"], text="<video> What is"), r"row 1: video file .*nope\.mp4 not found"),
    (_row(videos=["bad.mp4"], text="<video> What is"), r"row 1: video file .*bad\.mp4 cannot be decoded"),
    (_row(videos=[["f0.png", "nope.png"]], text="<video> What is"), r"row 1: image file .*nope\.png not found"),
    (_row(["a.png", "b.png"]), r"row 1: 1 <image> tags in the text but 2 images listed \['a\.png', 'b\.png'\]"),
    (_row(videos=["clip.mp4"], text="<video><video> What is"), r"row 1: 2 <video> tags in the text but 1 videos"),
    ({"messages": [{"role": "user", "content": [{"type": "image"}]},
                   {"role": "assistant", "content": [{"type": "text", "text": "x"}]}]},
     r"row 1: messages\[0\] content\[0\]: an image part needs one of \['image', 'url', 'path'\]"),
    ({"conversations": [{"from": "human", "value": "Hi"}]}, r"row 1: the row has no assistant turn"),
    ({"text": "hello"}, r"row 1: the row has no 'messages' or 'conversations'"),
])
def test_bad_rows_named_with_row_and_file(data, transform, row, match, request):
    good = {"messages": [{"role": "user", "content": " What is"}, {"role": "assistant", "content": " A cat"}]}
    name = f"bad_{request.node.callspec.indices['row']}.json"
    ds = dataset(data, transform, name, [good, row])
    assert ds[0]["tokens"]  # the good row reads
    with pytest.raises(torch_port.DataRowError, match=match):
        ds[1]


def test_row_that_cannot_fit_without_cutting_a_vision_run_is_named(data):
    """max_seq_len that ends inside the second image's run: the transform would drop it (and what
    follows); the dataset refuses the row instead, naming the image."""
    transform = make_transform(data)
    rows = [_row(["a.png", "b.png"], text="<image><image> What is")]
    whole = dataset(data, transform, "fit.json", rows)[0]
    first_run_end = whole["tokens"].index(SPECIAL_IDS["<|vision_end|>"])
    short = make_transform(data, max_seq_len=first_run_end + 6)
    with pytest.raises(torch_port.DataRowError, match=rf"fit\.json row 0: does not fit max_seq_len={first_run_end + 6} "
                                                      r"without cutting the vision run of image .*b\.png \(1 of its 2"):
        dataset(data, short, "fit.json", rows)[0]
    assert dataset(data, make_transform(data, max_seq_len=len(whole["tokens"])), "fit.json", rows)[0]["tokens"] == \
        whole["tokens"]


def test_frame_files_with_sampling_refused_as_hf(data):
    """HF refuses to sample frames from a list of images; the dataset names the row and the frames."""
    rows = [_row(videos=[["f0.png", "f1.png"]], text="<video> What is")]
    with pytest.raises(torch_port.DataRowError,
                       match=r"frames_sampled\.json row 0: video of frame files .*f0\.png .*do_sample_frames"):
        dataset(data, make_transform(data, SAMPLING), "frames_sampled.json", rows)[0]
