"""What every benchmark measures with: timing, peak RSS, the machine header, the subprocess result
protocol and the test images. Each section (``gemm_peaks.py``, ``preprocess_bench.py``,
``tower_bench.py``, ``positions_bench.py``, ``dataloader.py``, ``model_bench.py``, ``ac_memory.py``,
``gpu.py``) imports this module; it imports none of them.

Importing it puts the project root on ``sys.path`` (the sections run as scripts from ``benchmarks/``).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MAX_PIXELS = 12845056  # the released preprocessor_config.json's max_pixels
SETTLE_S = 0.2  # pause between different implementations: BLAS/OpenMP worker threads spin for a while after
# their work (OpenBLAS ~0.1 s); without a pause they would steal the cores from the next implementation
LIBRARIES = ("numpy", "torch", "torchvision", "transformers", "pillow", "safetensors")


# ----------------------------------------------------------------------------- timing


def timed_runs(fn, reps: int, warmup: int = 1) -> list[float]:
    """Wall times (s) of ``reps`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median_time(fn, reps: int, warmup: int = 1) -> float:
    """The median wall time (s) of ``reps`` calls after ``warmup`` untimed ones."""
    return statistics.median(timed_runs(fn, reps, warmup))


# ----------------------------------------------------------------------------- memory


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


# ----------------------------------------------------------------------------- the machine


def blas_info() -> dict:
    import numpy as np
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


def header() -> dict:
    """Date, CPU, cores, memory, load average, library versions and BLAS of this run."""
    from goldenlib.machine import cpu_name, library_versions

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "mem_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        "load_before": os.getloadavg()[0],
        "versions": {"python": platform.python_version(), **library_versions(LIBRARIES)},
        "blas": blas_info(),
    }


def header_lines(head: dict, load_after: float) -> list[str]:
    """The machine part of a report: date, machine and load, versions, BLAS (markdown list items)."""
    return [f"- date: {head['date']}",
            f"- machine: {head['cpu']}, {head['cores']} logical cores, {head['mem_gib']:.0f} GiB; "
            f"load average (1 min) {head['load_before']:.2f} before, {load_after:.2f} after",
            "- versions: " + ", ".join(f"{k} {v}" for k, v in head["versions"].items()),
            "- BLAS: " + "; ".join(f"{k}: {v}" for k, v in head["blas"].items())]


# ----------------------------------------------------------------------------- images


def make_image(width: int, height: int, seed: int = 0):
    """uint8 [height, width, 3]: a photo from data/photos resized by Pillow (BICUBIC) plus mild noise."""
    import numpy as np
    import PIL.Image

    photo = PIL.Image.open(ROOT / "data" / "photos" / "rocket.png").convert("RGB")
    base = np.asarray(photo.resize((width, height), PIL.Image.Resampling.BICUBIC)).astype(np.int16)
    noise = np.random.default_rng(seed).integers(-6, 7, base.shape, dtype=np.int16)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- the subprocess result protocol
# A worker process prints one ``RESULT {json}`` line per measurement on stdout (anything else it prints is
# kept for the error message); the parent reads them back. Each measurement in its own process keeps
# its peak RSS its own.

RESULT = "RESULT "


def emit_result(result: dict) -> None:
    print(RESULT + json.dumps(result), flush=True)


def parse_results(stdout: str) -> list[dict]:
    return [json.loads(line[len(RESULT):]) for line in stdout.splitlines() if line.startswith(RESULT)]


def worker_command(script: str, *args) -> list[str]:
    """``python benchmarks/<script> args...`` with this interpreter."""
    return [sys.executable, str(Path(__file__).resolve().parent / script), *map(str, args)]


def start_worker(cmd: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, **kwargs)


def finish_worker(proc: subprocess.Popen, what: str) -> list[dict]:
    """Wait for a worker; its RESULT lines, or a RuntimeError with the end of its output."""
    stdout, _ = proc.communicate()
    return checked_results(stdout, proc.returncode, what)


def checked_results(stdout: str, returncode: int, what: str) -> list[dict]:
    if returncode != 0:
        raise RuntimeError(f"{what} failed (exit {returncode}):\n{stdout[-3000:]}")
    results = parse_results(stdout)
    if not results:
        raise RuntimeError(f"{what} printed no {RESULT.strip()} line:\n{stdout[-3000:]}")
    return results


def run_worker(cmd: list[str], what: str) -> list[dict]:
    """Run a worker to its end; its RESULT lines."""
    return finish_worker(start_worker(cmd), what)
