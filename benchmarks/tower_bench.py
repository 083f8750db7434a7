"""The full-size vision tower against HF: each variant in its own process (``benchmarks/run.py``
describes what is measured). As a script it is that process: ``python benchmarks/tower_bench.py
VARIANT TMP SIDES REPS [--quick]`` prints one ``RESULT {json}`` line per size."""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import measure
from goldenlib.tolerances import rel_error
from reference.vision_config import PRESETS, VisionConfig

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
HF = "HF float32 (sdpa)"


def tower_config(quick: bool) -> VisionConfig:
    return QUICK_CONFIG if quick else PRESETS["3b"]


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


# ----------------------------------------------------------------------------- worker (its own process)


def load_weights(tmp: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(tmp / "weights.safetensors"))


def worker(variant: str, tmp: Path, sides: list[int], reps: int, config: VisionConfig) -> None:
    """Run one tower variant on every size; print one ``RESULT {json}`` line per size."""
    weights = load_weights(tmp)
    if variant.startswith("reference"):
        from reference import fast
        from reference.vision import vision_forward

        forward = fast.vision_forward if variant.endswith("(fast)") else vision_forward
        dtype = np.float64 if "float64" in variant else np.float32

        def run(pv, grid):
            return forward(pv, grid, weights, config, dtype=dtype)

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
        rss_before = measure.proc_status_kb("VmRSS")
        reset = measure.reset_peak_rss()
        out = None

        def once():
            nonlocal out
            out = run(pv, grid)

        if variant.startswith("reference"):
            times = measure.timed_runs(once, reps)
        else:
            import torch

            with torch.inference_mode():
                times = measure.timed_runs(once, reps)
        peak = measure.peak_rss_kb()
        np.save(tmp / f"out_{variant.replace(' ', '_')}_{side}.npy", to_numpy(out))
        measure.emit_result({"variant": variant, "side": side, "times": times, "peak_rss_kb": peak,
                             "rss_before_kb": rss_before, "peak_reset": reset, "load_after": os.getloadavg()[0]})
        del out


# ----------------------------------------------------------------------------- section


def tower_section(config: VisionConfig, sides: list[int], reps: int, tmp: Path, quick: bool,
                  variants=tuple(VARIANTS)) -> list[dict]:
    import reference
    from reference import random_weights
    from safetensors.numpy import save_file

    t0 = time.perf_counter()
    weights = random_weights(config, seed=0)
    save_file(weights, str(tmp / "weights.safetensors"))
    del weights
    gc.collect()
    print(f"[tower] weights generated and saved in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    for side in sides:
        image = measure.make_image(side * config.patch_size, side * config.patch_size, seed=side)
        pre = reference.preprocess(image, min_pixels=1, max_pixels=measure.MAX_PIXELS)
        assert pre["image_grid_thw"].tolist() == [[1, side, side]], pre["image_grid_thw"]
        np.savez(tmp / f"input_{side}.npz", **pre)

    def command(variant):
        return measure.worker_command("tower_bench.py", variant, tmp, ",".join(map(str, sides)), reps,
                                      *(["--quick"] if quick else []))

    results = []
    if quick:  # timings mean nothing here: all variants at once, to keep the smoke run short
        t0 = time.perf_counter()
        procs = {variant: measure.start_worker(command(variant)) for variant in variants}
        for variant, proc in procs.items():
            results += measure.finish_worker(proc, f"tower worker {variant!r}")
            print(f"[tower] {variant}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    else:  # one variant at a time: each has the machine (and its memory) to itself
        for variant in variants:
            t0 = time.perf_counter()
            results += measure.run_worker(command(variant), f"tower worker {variant!r}")
            print(f"[tower] {variant}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

    for r in results:
        side = r["side"]
        r["flops"] = tower_flops(config, np.array([[1, side, side]]))
        r["median_s"] = statistics.median(r["times"])
        baseline = tmp / f"out_reference_float64_{side}.npy"  # absent when --variants leaves it out
        if not baseline.exists():
            r["rel_diff"] = float("nan")
            continue
        got = np.load(tmp / f"out_{r['variant'].replace(' ', '_')}_{side}.npy")
        r["rel_diff"] = rel_error(got, np.load(baseline))
    return results


def by_side(rows) -> dict:
    """{side: {variant: row}}"""
    out = {}
    for r in rows:
        out.setdefault(r["side"], {})[r["variant"]] = r
    return out


def tower_table(rows, config: VisionConfig, peaks: dict, quick: bool) -> list[str]:
    name = "tiny test config" if quick else "3B preset (depth 32, hidden 1280, 16 heads, MLP 3420)"
    out = [f"### Vision tower, {name}, random_weights(seed=0)", "",
           "| image (patches) | variant | s (median) | s (min) | x HF f32 | model GFLOP/s | % of GEMM peak | "
           "peak RSS GiB | load | max rel diff vs ref f64 |",
           "|---|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    sides = by_side(rows)
    for side, variants in sides.items():
        hf = variants.get(HF)
        for variant, peak_name in VARIANTS.items():
            r = variants.get(variant)
            if r is None:
                continue
            px = side * config.patch_size
            gflops = r["flops"] / r["median_s"] / 1e9
            pct = 100 * gflops / peaks[peak_name]
            ratio = r["median_s"] / hf["median_s"] if hf else float("nan")
            out.append(f"| {px}x{px} ({side * side}) | {variant} | {r['median_s']:.2f} | {min(r['times']):.2f} | "
                       f"{ratio:.2f} | {gflops:.0f} | {pct:.0f}% ({peak_name.replace('float', 'f')}) | "
                       f"{r['peak_rss_kb'] / 2**20:.2f} | {r['load_after']:.1f} | {r['rel_diff']:.1e} |")
    flops = ", ".join(f"{side * side} patches: {variants[next(iter(variants))]['flops'] / 1e12:.3f} TFLOP"
                      for side, variants in sides.items())
    out += ["", f"Model FLOPs per forward (analytic): {flops}. x HF f32 and GFLOP/s use the median. Peak RSS: "
            "VmHWM of the variant's own process while that size runs (reset after loading; weights + library + "
            "activations). load: 1-minute load average when the size finished (the benchmark itself keeps "
            "about 2 busy; more means other processes shared the cores)."]
    return out


if __name__ == "__main__":  # worker: VARIANT TMP SIDES REPS [--quick]
    quick_run = "--quick" in sys.argv
    given = [a for a in sys.argv[1:] if a != "--quick"]
    if len(given) != 4:
        sys.exit(f"usage: tower_bench.py VARIANT TMP SIDES REPS [--quick] (the worker benchmarks/run.py starts; "
                 f"got {given}); the tower benchmark itself: uv run benchmarks/run.py --only tower")
    variant_arg, tmp_arg, sides_arg, reps_arg = given
    worker(variant_arg, Path(tmp_arg), [int(s) for s in sides_arg.split(",")], int(reps_arg), tower_config(quick_run))
