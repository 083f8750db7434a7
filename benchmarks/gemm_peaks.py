"""GEMM peaks: the fastest NumPy float32/float64 and torch float32/bfloat16 matmul over the tower's Linear
shapes, the 100 % that the tower's GFLOP/s are compared with (``benchmarks/run.py`` runs it first)."""

from __future__ import annotations

import time

import measure

GEMM_SHAPES = [(4096, 1280, 3840), (4096, 1280, 3420), (4096, 3420, 1280)]  # qkv, MLP gate/up, MLP down
QUICK_GEMM_SHAPES = [(256, 128, 256)]


def gemm_peaks(shapes, reps: int, settle: float) -> dict:
    """Peak GFLOP/s of NumPy float32/float64 and torch float32/bfloat16 matmul: the fastest of
    ``reps`` runs of each [M, K] x [K, N] product in ``shapes`` (the tower's Linear shapes; the
    weight is stored [N, K] and used transposed, as in the model). The fastest run is the one
    least disturbed by other processes."""
    import numpy as np
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
                peaks[name] = max(peaks[name], 2 * m * k * n / min(measure.timed_runs(fn, reps)) / 1e9)
    return peaks


def gemm_line(peaks: dict, shapes, runs: int) -> str:
    listed = " ".join(f"[{m}, {k}] x [{k}, {n}]," for m, k, n in shapes)
    return (f"GEMM peak (GFLOP/s of the fastest of {runs} runs of each of {listed[:-1]}): "
            + ", ".join(f"{name} **{v:.0f}**" for name, v in peaks.items()))
