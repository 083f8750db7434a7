"""Benchmarks on CPU: preprocessing and the full vision tower, NumPy reference vs torch port vs HF.

One command prints one markdown report, everything measured in the same run::

    uv run benchmarks/run.py            # full run (about half an hour on a 2-core machine)
    uv run benchmarks/run.py --quick    # smoke run: tiny images and a tiny tower (about 30 s)
    uv run benchmarks/run.py --only tower --sides 32 --reps 2   # a part of it
    uv run benchmarks/run.py --only positions                    # the mRoPE positions row alone
    uv run benchmarks/run.py --only model                        # whole model vs HF (benchmarks/model_bench.py)
    uv run benchmarks/run.py --only tower --sides 32 --variants "HF float32 (sdpa),reference float32"

* Header: date, machine (CPU model, cores, load average before and after), library versions,
  BLAS libraries and thread counts.
* GEMM peaks: NumPy (OpenBLAS) float32/float64 and torch float32/bfloat16 matmul, GFLOP/s of the
  fastest run over the tower's Linear shapes with 4096 rows (qkv, MLP gate/up, MLP down).
* Preprocessing of 640x480, 2000x1500 and 4032x3024 images (a photo from data/photos resized
  with Pillow plus mild noise; max_pixels 12845056): ``reference.preprocess`` (the plain form) and
  ``reference.fast.preprocess`` (uint8 array in), ``torch_port.Qwen2_5_VLImageTransform``, HF's
  ``Qwen2VLImageProcessorPil`` and, when torchvision imports, HF's ``Qwen2VLImageProcessor`` (PIL
  image in). The implementations take turns for ``--reps`` rounds; in each round one warm-up call, then 5 timed calls back to back
  (a preprocessing loop's steady state). Median ms, ratio to HF's PIL processor, and whether
  ``pixel_values`` are bit-equal to it.
* The image transform where torchtune runs it (``benchmarks/dataloader.py``): 48 640x480 photos in a
  torch ``DataLoader`` with 2 workers (1 torch thread each), the port's transform and HF's processor
  of the same backend run by the workers; ms per image of the median epoch after a warm-up epoch,
  ratio to that HF processor. Rows marked ``[DataLoader x2]`` (each pixel_values handed back to the
  main process, 7 MB per image) and ``[DataLoader x2, no transfer]`` (the workers hand back the row
  count only: the transforms alone, two at a time).
* The full-size vision tower (3B preset, ``random_weights(seed=0)``) on a 448x448 image (1024
  patches) and a 1008x1008 image (5184 patches): reference float64 and float32, each in its plain
  form (``reference.vision_forward``) and its fast form (``reference.fast.vision_forward``), port
  float32 and bfloat16, HF float32 (sdpa). Each variant runs in its own subprocess, one warm-up then
  ``--reps`` timed runs per size (median reported). Model GFLOP/s use an analytic FLOP count
  (patch embed, qkv, attention scores and values per segment, proj, MLP, merger: 2 FLOPs per
  multiply-add; norms, rotary, softmax and activations not counted); the percentage is of the
  GEMM peak of the same run for the row's library and compute dtype (NumPy float32/float64 for
  the reference rows, torch float32 for HF and the float32 port, torch bfloat16 for the bfloat16
  port). Peak RSS is the process's VmHWM while that size runs: the high-water mark is reset
  (``/proc/self/clear_refs``) once the model is loaded and load-time copies are freed, so it
  counts the resident weights, the library itself and the forward's activations. Outputs are
  compared with the float64 reference (max |a - b| / max |b|).

* mRoPE positions: ``torch_port.qwen2_5_vl_rope_index`` vs HF's ``Qwen2_5_VLModel.get_rope_index``
  on a batch of 8 sequences of 8192 tokens with 4 images each (random grids, text between them,
  an all-ones attention mask; ``--quick``: 2 x 512 tokens, 2 images): median ms of ``max(reps, 5)``
  calls after a warm-up, ratio to HF, and whether position ids and deltas are equal to HF's.

Between implementations the run pauses briefly (BLAS and OpenMP worker threads keep spinning for
a while after their work and would steal the cores from the next one). Other processes on the
machine change every number: the load average before and after is printed for that reason.

Internal: ``--worker VARIANT`` runs one tower variant (used by the parent run).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from goldenlib.tolerances import rel_error  # noqa: E402
from reference.vision_config import PRESETS, VisionConfig  # noqa: E402

MAX_PIXELS = 12845056
PREPROCESS_SIZES = [(640, 480), (2000, 1500), (4032, 3024)]
QUICK_PREPROCESS_SIZES = [(64, 48), (200, 150)]
VIDEO = (16, 640, 480)  # frames, width, height: the video row
QUICK_VIDEO = (4, 64, 48)
TOWER_SIDES = [32, 72]  # patches per side: 448x448 and 1008x1008 images
QUICK_TOWER_SIDES = [8, 12]
QUICK_CONFIG = VisionConfig(depth=2, hidden_size=64, num_heads=4, intermediate_size=96, out_hidden_size=48,
                            fullatt_block_indexes=(1,))
# variant -> the GEMM peak it is compared with: its own library and compute dtype
VARIANTS = {
    "HF float32 (sdpa)": "torch float32",
    "port float32": "torch float32",
    "port bfloat16": "torch bfloat16",
    "reference float32": "numpy float32",  # reference.vision_forward: the plain form
    "reference float32 (fast)": "numpy float32",  # reference.fast.vision_forward
    "reference float64": "numpy float64",
    "reference float64 (fast)": "numpy float64",
}
GEMM_SHAPES = [(4096, 1280, 3840), (4096, 1280, 3420), (4096, 3420, 1280)]  # qkv, MLP gate/up, MLP down
QUICK_GEMM_SHAPES = [(256, 128, 256)]


# ----------------------------------------------------------------------------- small helpers


SETTLE_S = 0.2  # pause between different implementations: BLAS/OpenMP worker threads spin for a while after
# their work (OpenBLAS ~0.1 s); without a pause they would steal the cores from the next implementation


def median_time(fn, reps: int, warmup: int = 1) -> list[float]:
    """Wall times (s) of ``reps`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def proc_status_kb(field: str) -> int | None:
    """VmHWM / VmRSS of this process in KiB (Linux), else None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_kb() -> int:
    hwm = proc_status_kb("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("numpy", "torch", "torchvision", "transformers", "pillow", "safetensors"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def blas_info() -> dict:
    import torch

    info = {}
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["numpy BLAS"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # noqa: BLE001 - informational only
        info["numpy BLAS"] = "unknown"
    lines = [line.strip("- ").strip() for line in torch.__config__.show().splitlines()]
    info["torch BLAS"] = next((line for line in lines if "Math Kernel Library" in line or "OpenBLAS" in line),
                              "unknown").split("-Product")[0]
    info["torch threads"] = torch.get_num_threads()
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ}
    info["thread env"] = ", ".join(f"{k}={v}" for k, v in env.items()) or "none set (libraries' defaults)"
    return info


def make_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """uint8 [height, width, 3]: a photo from data/photos resized by Pillow (BICUBIC) plus mild noise."""
    import PIL.Image

    photo = PIL.Image.open(ROOT / "data" / "photos" / "rocket.png").convert("RGB")
    base = np.asarray(photo.resize((width, height), PIL.Image.Resampling.BICUBIC)).astype(np.int16)
    noise = np.random.default_rng(seed).integers(-6, 7, base.shape, dtype=np.int16)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


# ----------------------------------------------------------------------------- GEMM peaks


def gemm_peaks(shapes, reps: int, settle: float) -> dict:
    """Peak GFLOP/s of NumPy float32/float64 and torch float32/bfloat16 matmul: the fastest of
    ``reps`` runs of each [M, K] x [K, N] product in ``shapes`` (the tower's Linear shapes; the
    weight is stored [N, K] and used transposed, as in the model). The fastest run is the one
    least disturbed by other processes."""
    import torch

    rng = np.random.default_rng(0)
    peaks = {name: 0.0 for name in ("numpy float32", "numpy float64", "torch float32", "torch bfloat16")}
    with torch.inference_mode():
        for m, k, n in shapes:
            a32 = rng.standard_normal((m, k), dtype=np.float32)
            b32 = rng.standard_normal((n, k), dtype=np.float32)
            a64, b64 = a32.astype(np.float64), b32.astype(np.float64)
            ta, tb = torch.from_numpy(a32), torch.from_numpy(b32)
            ta16, tb16 = ta.bfloat16(), tb.bfloat16()
            cases = {
                "numpy float32": lambda: a32 @ b32.T,
                "numpy float64": lambda: a64 @ b64.T,
                "torch float32": lambda: ta @ tb.T,
                "torch bfloat16": lambda: ta16 @ tb16.T,
            }
            for name, fn in cases.items():
                time.sleep(settle)
                peaks[name] = max(peaks[name], 2 * m * k * n / min(median_time(fn, reps)) / 1e9)
    return peaks


# ----------------------------------------------------------------------------- preprocessing


def preprocess_section(sizes, rounds: int, per_round: int, settle: float) -> list[dict]:
    """ms per call of each implementation on each size: ``rounds`` rounds over the implementations,
    each one warm-up call then ``per_round`` timed calls back to back; median of all timed calls."""
    import PIL.Image
    import torch

    import reference
    from goldenlib.hf_image import hf_processor
    from torch_port import Qwen2_5_VLImageTransform

    warnings.simplefilter("ignore")
    hf_pil = hf_processor(3136, MAX_PIXELS)
    port = Qwen2_5_VLImageTransform(max_pixels=MAX_PIXELS)
    impls = {
        "reference.preprocess": lambda a, im: reference.preprocess(a, max_pixels=MAX_PIXELS)["pixel_values"],
        "reference.fast.preprocess": lambda a, im: reference.fast.preprocess(a, max_pixels=MAX_PIXELS)["pixel_values"],
        "port Qwen2_5_VLImageTransform": lambda a, im: port({"image": im})["pixel_values"].numpy(),
        "HF Qwen2VLImageProcessorPil": lambda a, im: hf_pil(images=[im], return_tensors="np")["pixel_values"],
    }
    against = {}  # implementation -> the HF row it is judged against (exactness and ratio); default HF PIL
    try:
        from transformers import Qwen2VLImageProcessor
        from transformers.utils import is_torchvision_available

        if is_torchvision_available():
            hf_tv = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=MAX_PIXELS)
            if type(hf_tv).__name__ == "Qwen2VLImageProcessor" and hf_tv.size["longest_edge"] == MAX_PIXELS:
                impls["HF Qwen2VLImageProcessor (torchvision)"] = (
                    lambda a, im: hf_tv(images=[im], return_tensors="pt")["pixel_values"].numpy())
                port_tv = Qwen2_5_VLImageTransform(max_pixels=MAX_PIXELS, backend="torchvision")
                impls["port Qwen2_5_VLImageTransform (torchvision)"] = (
                    lambda a, im: port_tv({"image": im})["pixel_values"].numpy())
                impls["reference.preprocess (torchvision)"] = lambda a, im: reference.preprocess(
                    a, backend="torchvision", max_pixels=MAX_PIXELS)["pixel_values"]
                impls["reference.fast.preprocess (torchvision)"] = lambda a, im: reference.fast.preprocess(
                    a, backend="torchvision", max_pixels=MAX_PIXELS)["pixel_values"]
                for name in ("HF Qwen2VLImageProcessor (torchvision)", "port Qwen2_5_VLImageTransform (torchvision)",
                             "reference.preprocess (torchvision)", "reference.fast.preprocess (torchvision)"):
                    against[name] = "HF Qwen2VLImageProcessor (torchvision)"
    except ImportError:
        pass

    rows = []
    for width, height in sizes:
        array = make_image(width, height)
        image = PIL.Image.fromarray(array)
        outputs = {name: fn(array, image) for name, fn in impls.items()}  # also the warm-up call
        want = outputs["HF Qwen2VLImageProcessorPil"]
        times = {name: [] for name in impls}
        with torch.inference_mode():
            for _ in range(rounds):  # rounds over the implementations: a load change hits all of them alike
                for name, fn in impls.items():
                    time.sleep(settle)  # let the previous implementation's worker threads go idle
                    fn(array, image)  # warm-up: caches, allocator, CPU clock, thread pools
                    for _ in range(per_round):  # then back to back, as in a preprocessing loop
                        t0 = time.perf_counter()
                        fn(array, image)
                        times[name].append(time.perf_counter() - t0)
        for name in impls:
            base = against.get(name, "HF Qwen2VLImageProcessorPil")
            want, hf_time = outputs[base], statistics.median(times[base])
            got = outputs[name]
            if got.shape != want.shape:
                exact = f"shape {got.shape} != {want.shape}"
            elif np.array_equal(got, want):
                exact = "bit-exact"
            else:
                exact = f"max abs diff {np.abs(got.astype(np.float64) - want).max():.3g}"
            t = statistics.median(times[name])
            rows.append({"image": f"{width}x{height}", "patches": int(want.shape[0]), "impl": name,
                         "ms": t * 1e3, "ratio": t / hf_time, "exact": exact, "runs": len(times[name]),
                         "vs": base})
    return rows


def video_section(frames: int, width: int, height: int, rounds: int, settle: float) -> list[dict]:
    """ms per call on one uint8 clip [frames, height, width, 3] (HF's video defaults): the port's
    Qwen2_5_VLVideoTransform and reference.preprocess_video vs HF's Qwen2VLVideoProcessor."""
    import torch
    from transformers import Qwen2VLVideoProcessor

    import reference
    from torch_port import Qwen2_5_VLVideoTransform

    warnings.simplefilter("ignore")
    clip = np.stack([make_image(width, height, seed=i) for i in range(frames)])  # [T, H, W, 3] uint8
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
    want, hf_time = outputs["HF Qwen2VLVideoProcessor"], statistics.median(times["HF Qwen2VLVideoProcessor"])
    rows = []
    for name in impls:
        got, t = outputs[name], statistics.median(times[name])
        exact = "bit-exact" if got.shape == want.shape and np.array_equal(got, want) else "NOT exact"
        rows.append({"image": f"{frames}x{width}x{height} clip", "patches": int(want.shape[0]), "impl": name,
                     "ms": t * 1e3, "ratio": t / hf_time, "exact": exact, "runs": len(times[name]),
                     "vs": "HF Qwen2VLVideoProcessor"})
    return rows


# ----------------------------------------------------------------------------- tower FLOPs


def tower_flops(config: VisionConfig, grid) -> int:
    """Multiply-adds x 2 of one forward: patch embed, per block qkv + attention per segment + proj
    + MLP (gate, up, down), and the merger's two Linears."""
    from reference.vision import full_cu_seqlens, window_index

    grid = np.asarray(grid, dtype=np.int64).reshape(-1, 3)
    s = int((grid[:, 0] * grid[:, 1] * grid[:, 2]).sum())
    h, inter, unit = config.hidden_size, config.intermediate_size, config.merge_unit
    _, cu_window = window_index(grid, window_size=config.window_size, patch_size=config.patch_size,
                                spatial_merge_size=config.spatial_merge_size)
    cu_full = full_cu_seqlens(grid)

    def attention(cu):  # scores q k^T and values p v: 2 * L*L*head_dim multiply-adds per head each
        lengths = np.diff(cu)
        return int((4 * lengths * lengths * h).sum())

    flops = 2 * s * config.patch_dim * h
    for i in range(config.depth):
        flops += 2 * s * h * 3 * h + 2 * s * h * h + 3 * 2 * s * h * inter
        flops += attention(cu_full if i in config.fullatt_block_indexes else cu_window)
    merged = s // unit
    flops += 2 * merged * (unit * h) ** 2 + 2 * merged * unit * h * config.out_hidden_size
    return flops


# ----------------------------------------------------------------------------- tower worker


def _load_weights(tmp: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(tmp / "weights.safetensors"))


def worker(variant: str, tmp: Path, sides: list[int], reps: int, config: VisionConfig) -> None:
    """Run one tower variant on every size; print one ``RESULT {json}`` line per size."""
    weights = _load_weights(tmp)
    if variant.startswith("reference"):
        from reference import fast
        from reference.vision import vision_forward

        if variant.endswith("(fast)"):
            vision_forward = fast.vision_forward  # noqa: F811
        dtype = np.float64 if "float64" in variant else np.float32

        def run(pv, grid):
            return vision_forward(pv, grid, weights, config, dtype=dtype)

        to_numpy = np.asarray
    else:
        import torch

        torch.set_grad_enabled(False)
        if variant.startswith("HF"):
            from goldenlib.hf_vision import build_hf_vision

            model = build_hf_vision(config, weights, attn_implementation="sdpa")

            def run(pv, grid):
                return model(torch.from_numpy(pv), grid_thw=torch.from_numpy(grid)).pooler_output
        else:
            from torch_port import load_hf_vision

            dtype = torch.bfloat16 if variant.endswith("bfloat16") else torch.float32
            state = {name: torch.from_numpy(w) for name, w in weights.items()}
            model = load_hf_vision(config.to_dict(), state, dtype=dtype)  # copies the weights
            del state

            def run(pv, grid):
                return model(torch.from_numpy(pv), torch.from_numpy(grid))

        del weights  # the model holds its own copy now
        weights = None

        def to_numpy(y):
            return y.detach().float().numpy()

    gc.collect()
    for side in sides:
        data = np.load(tmp / f"input_{side}.npz")
        pv, grid = data["pixel_values"], data["image_grid_thw"]
        gc.collect()
        rss_before = proc_status_kb("VmRSS")
        reset = reset_peak_rss()
        out = None
        times = []

        def once():
            nonlocal out
            out = run(pv, grid)

        if variant.startswith("reference"):
            times = median_time(once, reps)
        else:
            import torch

            with torch.inference_mode():
                times = median_time(once, reps)
        peak = peak_rss_kb()
        np.save(tmp / f"out_{variant.replace(' ', '_')}_{side}.npy", to_numpy(out))
        result = {"variant": variant, "side": side, "times": times, "peak_rss_kb": peak,
                  "rss_before_kb": rss_before, "peak_reset": reset, "load_after": os.getloadavg()[0]}
        print("RESULT " + json.dumps(result), flush=True)
        del out


# ----------------------------------------------------------------------------- tower section


def tower_section(config: VisionConfig, sides: list[int], reps: int, tmp: Path, quick: bool,
                  variants=tuple(VARIANTS)) -> list[dict]:
    import reference
    from reference import random_weights

    t0 = time.perf_counter()
    weights = random_weights(config, seed=0)
    from safetensors.numpy import save_file

    save_file(weights, str(tmp / "weights.safetensors"))
    del weights
    gc.collect()
    print(f"[tower] weights generated and saved in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    for side in sides:
        image = make_image(side * config.patch_size, side * config.patch_size, seed=side)
        pre = reference.preprocess(image, min_pixels=1, max_pixels=MAX_PIXELS)
        assert pre["image_grid_thw"].tolist() == [[1, side, side]], pre["image_grid_thw"]
        np.savez(tmp / f"input_{side}.npz", **pre)

    def start(variant):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", variant, "--tmp", str(tmp),
               "--sides", ",".join(map(str, sides)), "--reps", str(reps)]
        if quick:
            cmd.append("--quick")
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)

    def finish(variant, proc, t0):
        stdout, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"tower worker {variant!r} failed (exit {proc.returncode}):\n{stdout}")
        print(f"[tower] {variant}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        return [json.loads(line[len("RESULT "):]) for line in stdout.splitlines() if line.startswith("RESULT ")]

    results = []
    if quick:  # timings mean nothing here: all variants at once, to keep the smoke run short
        t0 = time.perf_counter()
        procs = {variant: start(variant) for variant in variants}
        for variant, proc in procs.items():
            results += finish(variant, proc, t0)
    else:  # one variant at a time: each has the machine (and its memory) to itself
        for variant in variants:
            t0 = time.perf_counter()
            results += finish(variant, start(variant), t0)

    for r in results:
        side = r["side"]
        grid = np.array([[1, side, side]])
        r["flops"] = tower_flops(config, grid)
        r["median_s"] = statistics.median(r["times"])
        baseline = tmp / f"out_reference_float64_{side}.npy"  # absent when --variants leaves it out
        if not baseline.exists():
            r["rel_diff"] = float("nan")
            continue
        ref = np.load(baseline)
        got = np.load(tmp / f"out_{r['variant'].replace(' ', '_')}_{side}.npy")
        r["rel_diff"] = rel_error(got, ref)
    return results


# ----------------------------------------------------------------------------- mRoPE positions

POSITIONS_LAYOUT = (8, 8192, 4)  # batch, tokens per sequence, images per sequence
QUICK_POSITIONS_LAYOUT = (2, 512, 2)


def positions_batch(batch: int, seq: int, n_images: int, seed: int = 0):
    """ids, token types, image grids and an all-ones mask: per row, ``n_images`` images of random
    grids (8..32 patches a side, even) between text runs of random length, padded with text to ``seq``."""
    import torch

    rng = np.random.default_rng(seed)
    types = torch.zeros(batch, seq, dtype=torch.int64)
    grids = []
    for b in range(batch):
        tokens = [seq]
        while sum(tokens) + n_images + 1 > seq:  # draw again until the images fit with text between them
            sizes = [(1, 2 * int(rng.integers(4, 17)), 2 * int(rng.integers(4, 17))) for _ in range(n_images)]
            tokens = [t * h * w // 4 for t, h, w in sizes]
        # image k follows cuts[k] text tokens: distinct cuts in [1, text) put text before, between and after
        cuts = np.sort(rng.choice(np.arange(1, seq - sum(tokens)), n_images, replace=False))
        before = 0  # image tokens before image k
        for cut, n, size in zip(cuts, tokens, sizes):
            start = int(cut) + before
            types[b, start:start + n] = 1
            before += n
            grids.append(size)
        assert int((types[b] == 1).sum()) == sum(tokens)
    ids = torch.randint(0, 150000, (batch, seq))
    return ids, types, torch.tensor(grids), torch.ones(batch, seq, dtype=torch.int64)


def hf_get_rope_index(*args, spatial_merge_size=2, tokens_per_second=2):
    """HF's ``Qwen2_5_VLModel.get_rope_index`` on a stub holding the two config values it reads."""
    import functools
    from types import SimpleNamespace

    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel

    vision = SimpleNamespace(spatial_merge_size=spatial_merge_size, tokens_per_second=tokens_per_second)
    stub = SimpleNamespace(config=SimpleNamespace(vision_config=vision),
                           get_vision_position_ids=functools.partial(Qwen2_5_VLModel.get_vision_position_ids, None))
    return Qwen2_5_VLModel.get_rope_index(stub, *args)


def positions_section(layout, reps: int, settle: float) -> list[dict]:
    """``torch_port.qwen2_5_vl_rope_index`` vs HF's ``get_rope_index``: median ms, same positions?"""
    import torch

    from torch_port import qwen2_5_vl_rope_index

    batch, seq, n_images = layout
    ids, types, grids, mask = positions_batch(batch, seq, n_images)
    args = (ids, types, grids, None, None, mask)
    impls = {"HF get_rope_index": lambda: hf_get_rope_index(*args),
             "port qwen2_5_vl_rope_index": lambda: qwen2_5_vl_rope_index(*args)}
    want = impls["HF get_rope_index"]()
    rows = []
    for name, fn in impls.items():
        time.sleep(settle)
        times = median_time(fn, reps)
        got = fn()
        same = torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        rows.append({"layout": f"{batch} x {seq} tokens, {n_images} images each", "impl": name,
                     "ms": 1000 * statistics.median(times), "same": "equal" if same else "DIFFERENT"})
    hf_ms = rows[0]["ms"]
    for r in rows:
        r["ratio"] = r["ms"] / hf_ms
    return rows


# ----------------------------------------------------------------------------- report


def report(args, header, peaks, pre_rows, tower_rows, config, load_after, pos_rows=()) -> str:
    out = []
    w = out.append
    w(f"## Benchmarks ({'quick smoke run: tiny sizes, numbers meaningless' if args.quick else 'full run'})")
    w("")
    w(f"- date: {header['date']}")
    w(f"- machine: {header['cpu']}, {header['cores']} logical cores, {header['mem_gib']:.0f} GiB; "
      f"load average (1 min) {header['load_before']:.2f} before, {load_after:.2f} after")
    w("- versions: " + ", ".join(f"{k} {v}" for k, v in header["versions"].items()))
    w("- BLAS: " + "; ".join(f"{k}: {v}" for k, v in header["blas"].items()))
    w(f"- timing: preprocessing: median of {args.reps} rounds x {1 if args.quick else 5} calls back to back, each "
      f"round after 1 warm-up call, implementations taking turns; tower: median of {args.reps} runs after 1 "
      "warm-up, each variant in its own process")
    w("")
    shapes = " ".join(f"[{m}, {k}] x [{k}, {n}]," for m, k, n in (QUICK_GEMM_SHAPES if args.quick else GEMM_SHAPES))
    w(f"GEMM peak (GFLOP/s of the fastest of {max(args.reps, 5)} runs of each of {shapes[:-1]}): "
      + ", ".join(f"{name} **{v:.0f}**" for name, v in peaks.items()))
    w("")
    if pre_rows:
        w(f"### Preprocessing (max_pixels {MAX_PIXELS}; video: HF's video defaults; ms, ratio to the HF row named)")
        w("")
        w("| image | patches | implementation | ms | x HF | vs (ratio and exactness) | pixel values vs it |")
        w("|---|---:|---|---:|---:|---|---|")
        for r in pre_rows:
            vs = r.get("vs", "")  # a short name: the smoke test finds rows by implementation name
            vs = "HF video" if "Video" in vs else "HF torchvision" if "torchvision" in vs else "HF PIL"
            w(f"| {r['image']} | {r['patches']} | {r['impl']} | {r['ms']:.1f} | {r['ratio']:.2f} | {vs} | {r['exact']} |")
        w("")
    if pos_rows:
        w("### mRoPE positions (median ms of get_rope_index-style calls; ratio to HF)")
        w("")
        w("| layout | implementation | ms | x HF | position_ids, deltas vs HF |")
        w("|---|---|---:|---:|---|")
        for r in pos_rows:
            w(f"| {r['layout']} | {r['impl']} | {r['ms']:.2f} | {r['ratio']:.3f} | {r['same']} |")
        if not args.quick:
            port = [r for r in pos_rows if r["impl"] == "port qwen2_5_vl_rope_index"]
            ok = all(r["ratio"] <= 0.5 and r["same"] == "equal" for r in port)
            w("")
            w(f"- [{'x' if ok else ' '}] qwen2_5_vl_rope_index <= 0.5x HF get_rope_index and equal "
              f"({', '.join(format(r['ratio'], '.3f') + 'x' for r in port)})")
        w("")
    if tower_rows:
        name = "tiny test config" if args.quick else "3B preset (depth 32, hidden 1280, 16 heads, MLP 3420)"
        w(f"### Vision tower, {name}, random_weights(seed=0)")
        w("")
        w("| image (patches) | variant | s (median) | s (min) | x HF f32 | model GFLOP/s | % of GEMM peak | "
          "peak RSS GiB | load | max rel diff vs ref f64 |")
        w("|---|---|---:|---:|---:|---:|---|---:|---:|---:|")
        by_side = {}
        for r in tower_rows:
            by_side.setdefault(r["side"], {})[r["variant"]] = r
        for side, rows in by_side.items():
            hf = rows.get("HF float32 (sdpa)")
            for variant in VARIANTS:
                r = rows.get(variant)
                if r is None:
                    continue
                px = side * config.patch_size
                peak_name = VARIANTS[variant]
                gflops = r["flops"] / r["median_s"] / 1e9
                pct = 100 * gflops / peaks[peak_name]
                ratio = r["median_s"] / hf["median_s"] if hf else float("nan")
                rss = r["peak_rss_kb"] / 2**20
                w(f"| {px}x{px} ({side * side}) | {variant} | {r['median_s']:.2f} | {min(r['times']):.2f} | "
                  f"{ratio:.2f} | {gflops:.0f} | {pct:.0f}% ({peak_name.replace('float', 'f')}) | {rss:.2f} | "
                  f"{r['load_after']:.1f} | {r['rel_diff']:.1e} |")
        flops = ", ".join(f"{side * side} patches: {rows[next(iter(rows))]['flops'] / 1e12:.3f} TFLOP"
                          for side, rows in by_side.items())
        w("")
        w(f"Model FLOPs per forward (analytic): {flops}. x HF f32 and GFLOP/s use the median. Peak RSS: "
          "VmHWM of the variant's own process while that size runs (reset after loading; weights + library + "
          "activations). load: 1-minute load average when the size finished (the benchmark itself keeps "
          "about 2 busy; more means other processes shared the cores).")
        if not args.quick:  # a quick run's numbers say nothing about the targets
            w("")
            w(targets(pre_rows, by_side))
    return "\n".join(out)


def targets(pre_rows, by_side) -> str:
    """The issue's targets, checked on this run's numbers."""
    lines = ["Targets (this run):", ""]

    def check(ok, text):
        lines.append(f"- [{'x' if ok else ' '}] {text}")

    for impl, bound in (("reference.fast.preprocess", 1.0), ("port Qwen2_5_VLImageTransform", 0.5),
                        ("port Qwen2_5_VLImageTransform (torchvision)", 1.0),
                        ("port Qwen2_5_VLImageTransform [DataLoader x2]", 1.0),
                        ("port Qwen2_5_VLImageTransform (torchvision) [DataLoader x2]", 1.0),
                        ("port Qwen2_5_VLImageTransform [DataLoader x2, no transfer]", 1.0),
                        ("port Qwen2_5_VLImageTransform (torchvision) [DataLoader x2, no transfer]", 1.0),
                        ("reference.preprocess (torchvision)", 2.0), ("port Qwen2_5_VLVideoTransform", 1.0)):
        rs = [r for r in pre_rows if r["impl"] == impl]
        if rs:
            worst = max(r["ratio"] for r in rs)
            exact = all(r["exact"] == "bit-exact" for r in rs)
            check(worst <= bound and exact, f"{impl} <= {bound}x {rs[0].get('vs', 'HF PIL processor')} and "
                                            f"bit-exact (worst {worst:.2f}x{'' if exact else ', NOT exact'})")
    for variant, bound in (("reference float32", 1.0), ("reference float64", 2.5), ("reference float32 (fast)", 0.8),
                           ("reference float64 (fast)", 2.5), ("port float32", 1.0)):
        ratios = [rows[variant]["median_s"] / rows["HF float32 (sdpa)"]["median_s"]
                  for rows in by_side.values() if variant in rows and "HF float32 (sdpa)" in rows]
        if ratios:
            check(max(ratios) <= bound, f"{variant} <= {bound}x HF float32 (worst {max(ratios):.2f}x)")
    if by_side:
        rows = by_side[max(by_side)]
        if "reference float32" in rows and "HF float32 (sdpa)" in rows:
            hf = rows["HF float32 (sdpa)"]["peak_rss_kb"]
            for variant in ("reference float32", "reference float64", "reference float32 (fast)",
                            "reference float64 (fast)"):
                if variant in rows:
                    ratio = rows[variant]["peak_rss_kb"] / hf
                    check(ratio <= 1.5, f"peak RSS of {variant} at {max(by_side) ** 2} patches <= 1.5x HF's "
                                        f"({ratio:.2f}x)")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 run each: a smoke test of the script")
    parser.add_argument("--reps", type=int, default=None, help="timed runs per case (default 3; --quick: 1)")
    parser.add_argument("--only", choices=("preprocess", "tower", "positions", "model"), default=None,
                        help="run one section (model: the whole model vs HF, only on request: ~12 GB, tens of minutes)")
    parser.add_argument("--out", type=Path, default=None, help="also write the report to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tmp", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--variants", default=None,
                        help="tower variants to run, comma-separated (default: all of " + ", ".join(VARIANTS) + ")")
    parser.add_argument("--sides", default=None,
                        help="tower sizes as patch-grid sides, comma-separated (default 32,72: 448x448 and 1008x1008)")
    args = parser.parse_args(argv)
    args.reps = args.reps or (1 if args.quick else 3)
    config = QUICK_CONFIG if args.quick else PRESETS["3b"]

    if args.worker:
        worker(args.worker, args.tmp, [int(s) for s in args.sides.split(",")], args.reps, config)
        return

    import torch

    header = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "mem_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        "load_before": os.getloadavg()[0],
        "versions": versions(),
        "blas": blas_info(),
    }
    settle = 0.0 if args.quick else SETTLE_S
    peaks = gemm_peaks(QUICK_GEMM_SHAPES if args.quick else GEMM_SHAPES, max(args.reps, 5), settle)
    print(f"[gemm] {', '.join(f'{k} {v:.0f}' for k, v in peaks.items())} GFLOP/s", file=sys.stderr, flush=True)
    pre_rows, tower_rows = [], []
    if args.only in (None, "preprocess"):
        pre_rows = preprocess_section(QUICK_PREPROCESS_SIZES if args.quick else PREPROCESS_SIZES,
                                      args.reps, 1 if args.quick else 5, settle)
        pre_rows += video_section(*(QUICK_VIDEO if args.quick else VIDEO), args.reps, settle)
        from dataloader import dataloader_section  # the transform inside 2 DataLoader workers, vs HF there

        for transfer in (True, False):  # with pixel_values handed back, and the transforms alone
            pre_rows += dataloader_section(*QUICK_PREPROCESS_SIZES[0] if args.quick else PREPROCESS_SIZES[0],
                                           images=8 if args.quick else 48, rounds=args.reps, workers=2,
                                           transfer=transfer)
        print("[preprocess] done", file=sys.stderr, flush=True)
    pos_rows = []
    if args.only in (None, "positions"):
        pos_rows = positions_section(QUICK_POSITIONS_LAYOUT if args.quick else POSITIONS_LAYOUT,
                                     max(args.reps, 3) if args.quick else max(args.reps, 5), settle)
        print("[positions] done", file=sys.stderr, flush=True)
    if args.only in (None, "tower"):
        del torch
        gc.collect()
        with tempfile.TemporaryDirectory(prefix="qwen_vision_bench_") as tmp:
            sides = [int(s) for s in args.sides.split(",")] if args.sides else (
                QUICK_TOWER_SIDES if args.quick else TOWER_SIDES)
            variants = tuple(v.strip() for v in args.variants.split(",")) if args.variants else tuple(VARIANTS)
            unknown = [v for v in variants if v not in VARIANTS]
            if unknown:
                parser.error(f"unknown tower variants {unknown}; known: {list(VARIANTS)}")
            tower_rows = tower_section(config, sides, args.reps, Path(tmp), args.quick, variants)
    model_text = ""
    if args.only == "model":  # not in the default run: see benchmarks/model_bench.py
        from model_bench import model_report, model_section

        with tempfile.TemporaryDirectory(prefix="qwen_model_bench_") as tmp:
            info, model_rows = model_section(Path(tmp), args.reps, args.quick, settle)
        model_text = "\n" + model_report(info, model_rows, args.quick, args.reps)
    text = report(args, header, peaks, pre_rows, tower_rows, config, os.getloadavg()[0], pos_rows) + model_text
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
