"""Preprocessing against HF: images (both backends) and a video clip; ms per call, ratio to HF's
processor of the row's backend, and whether ``pixel_values`` are bit-equal to it (``benchmarks/run.py``
describes the timing). Rows also carry ``name``, ``backend`` and ``setting`` (what the targets select
on); ``impl`` is the name as the report shows it."""

from __future__ import annotations

import statistics
import time
import warnings

import measure

PREPROCESS_SIZES = [(640, 480), (2000, 1500), (4032, 3024)]
QUICK_PREPROCESS_SIZES = [(64, 48), (200, 150)]
VIDEO = (16, 640, 480)  # frames, width, height
QUICK_VIDEO = (4, 64, 48)
HF_BASELINE = {"pil": "HF Qwen2VLImageProcessorPil", "torchvision": "HF Qwen2VLImageProcessor",
               "video": "HF Qwen2VLVideoProcessor"}  # backend -> the HF implementation a row is judged against
SHORT = {"pil": "HF PIL", "torchvision": "HF torchvision", "video": "HF video"}  # the report's "vs" column


def display(name: str, backend: str, setting: str = "") -> str:
    """The row's name in the report: ``port Qwen2_5_VLImageTransform (torchvision) [DataLoader x2]``."""
    return name + (" (torchvision)" if backend == "torchvision" else "") + (f" [{setting}]" if setting else "")


def row(image, patches, name, backend, setting, seconds, hf_seconds, exact, runs) -> dict:
    return {"image": image, "patches": patches, "impl": display(name, backend, setting), "name": name,
            "backend": backend, "setting": setting, "ms": seconds * 1e3, "ratio": seconds / hf_seconds,
            "exact": exact, "runs": runs, "vs": display(HF_BASELINE[backend], backend)}


def compare(got, want) -> str:
    import numpy as np

    if got.shape != want.shape:
        return f"shape {got.shape} != {want.shape}"
    if np.array_equal(got, want):
        return "bit-exact"
    return f"max abs diff {np.abs(got.astype(np.float64) - want).max():.3g}"


def image_implementations() -> dict:
    """(name, backend) -> fn(uint8 array, PIL image) -> pixel_values array."""
    import reference
    from goldenlib.hf_image import hf_processor
    from torch_port import Qwen2_5_VLImageTransform

    max_pixels = measure.MAX_PIXELS
    hf_pil = hf_processor(3136, max_pixels)
    port = Qwen2_5_VLImageTransform(max_pixels=max_pixels)
    impls = {
        ("reference.preprocess", "pil"): lambda a, im: reference.preprocess(a, max_pixels=max_pixels)["pixel_values"],
        ("reference.fast.preprocess", "pil"): lambda a, im: reference.fast.preprocess(
            a, max_pixels=max_pixels)["pixel_values"],
        ("port Qwen2_5_VLImageTransform", "pil"): lambda a, im: port({"image": im})["pixel_values"].numpy(),
        ("HF Qwen2VLImageProcessorPil", "pil"): lambda a, im: hf_pil(images=[im], return_tensors="np")["pixel_values"],
    }
    try:
        from transformers import Qwen2VLImageProcessor
        from transformers.utils import is_torchvision_available
    except ImportError:
        return impls
    if not is_torchvision_available():
        return impls
    hf_tv = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=max_pixels)
    if type(hf_tv).__name__ != "Qwen2VLImageProcessor" or hf_tv.size["longest_edge"] != max_pixels:
        return impls
    port_tv = Qwen2_5_VLImageTransform(max_pixels=max_pixels, backend="torchvision")
    impls[("HF Qwen2VLImageProcessor", "torchvision")] = (
        lambda a, im: hf_tv(images=[im], return_tensors="pt")["pixel_values"].numpy())
    impls[("port Qwen2_5_VLImageTransform", "torchvision")] = (
        lambda a, im: port_tv({"image": im})["pixel_values"].numpy())
    impls[("reference.preprocess", "torchvision")] = lambda a, im: reference.preprocess(
        a, backend="torchvision", max_pixels=max_pixels)["pixel_values"]
    impls[("reference.fast.preprocess", "torchvision")] = lambda a, im: reference.fast.preprocess(
        a, backend="torchvision", max_pixels=max_pixels)["pixel_values"]
    return impls


def preprocess_section(sizes, rounds: int, per_round: int, settle: float) -> list[dict]:
    """ms per call of each implementation on each size: ``rounds`` rounds over the implementations,
    each one warm-up call then ``per_round`` timed calls back to back; median of all timed calls."""
    import PIL.Image
    import torch

    warnings.simplefilter("ignore")
    impls = image_implementations()
    rows = []
    for width, height in sizes:
        array = measure.make_image(width, height)
        image = PIL.Image.fromarray(array)
        outputs = {key: fn(array, image) for key, fn in impls.items()}  # also the warm-up call
        times = {key: [] for key in impls}
        with torch.inference_mode():
            for _ in range(rounds):  # rounds over the implementations: a load change hits all of them alike
                for key, fn in impls.items():
                    time.sleep(settle)  # let the previous implementation's worker threads go idle
                    fn(array, image)  # warm-up: caches, allocator, CPU clock, thread pools
                    for _ in range(per_round):  # then back to back, as in a preprocessing loop
                        t0 = time.perf_counter()
                        fn(array, image)
                        times[key].append(time.perf_counter() - t0)
        for (name, backend) in impls:
            base = (HF_BASELINE[backend], backend)
            want = outputs[base]
            rows.append(row(f"{width}x{height}", int(want.shape[0]), name, backend, "",
                            statistics.median(times[(name, backend)]), statistics.median(times[base]),
                            compare(outputs[(name, backend)], want), len(times[(name, backend)])))
    return rows


def video_section(frames: int, width: int, height: int, rounds: int, settle: float) -> list[dict]:
    """ms per call on one uint8 clip [frames, height, width, 3] (HF's video defaults): the port's
    Qwen2_5_VLVideoTransform and reference.preprocess_video vs HF's Qwen2VLVideoProcessor."""
    import numpy as np
    import torch
    from transformers import Qwen2VLVideoProcessor

    import reference
    from torch_port import Qwen2_5_VLVideoTransform

    warnings.simplefilter("ignore")
    clip = np.stack([measure.make_image(width, height, seed=i) for i in range(frames)])  # [T, H, W, 3] uint8
    tensor = torch.from_numpy(clip)
    hf = Qwen2VLVideoProcessor(cap_pixels_per_frame=False)
    port = Qwen2_5_VLVideoTransform()
    impls = {
        "HF Qwen2VLVideoProcessor": lambda: hf(videos=[tensor], return_tensors="pt")["pixel_values_videos"].numpy(),
        "port Qwen2_5_VLVideoTransform": lambda: port({"video": tensor})["pixel_values_videos"].numpy(),
        "reference.preprocess_video": lambda: reference.preprocess_video(clip)["pixel_values_videos"],
    }
    outputs = {name: fn() for name, fn in impls.items()}
    times = {name: [] for name in impls}
    with torch.inference_mode():
        for _ in range(rounds):
            for name, fn in impls.items():
                time.sleep(settle)
                fn()
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    base = HF_BASELINE["video"]
    want = outputs[base]
    rows = []
    for name in impls:
        got = outputs[name]
        exact = "bit-exact" if got.shape == want.shape and np.array_equal(got, want) else "NOT exact"
        rows.append(row(f"{frames}x{width}x{height} clip", int(want.shape[0]), name, "video", "",
                        statistics.median(times[name]), statistics.median(times[base]), exact, len(times[name])))
    return rows


def preprocess_table(rows) -> list[str]:
    out = [f"### Preprocessing (max_pixels {measure.MAX_PIXELS}; video: HF's video defaults; ms, ratio to the "
           "HF row named)", "",
           "| image | patches | implementation | ms | x HF | vs (ratio and exactness) | pixel values vs it |",
           "|---|---:|---|---:|---:|---|---|"]
    for r in rows:
        out.append(f"| {r['image']} | {r['patches']} | {r['impl']} | {r['ms']:.1f} | {r['ratio']:.2f} | "
                   f"{SHORT[r['backend']]} | {r['exact']} |")
    return out + [""]
