"""One command for a lent GPU: the CUDA tests and the port against HF on the device, one JSON + markdown.

    uv run benchmarks/gpu.py                 # on a CUDA machine: everything below (a few minutes on an H100)
    uv run benchmarks/gpu.py --out DIR       # where gpu.json and gpu.md go (default: the working directory)

1. ``pytest -m hardware``: the hardware-marked tests (the CUDA ones run only here), counted.
2. The mid-size model of ``benchmarks/model_bench.py`` (2 decoder layers of the 3B's width + the full
   3B vision tower, HF's random init, seed 0) in bfloat16 on the device: ``forward`` (logits of the
   288-token prompt with one 448x448 image, under ``inference_mode``) and ``train step`` (forward +
   backward, the port the recipe's way, HF with ``labels=``), the port and HF ``Qwen2_5_VLForConditionalGeneration``
   (sdpa) on the same weights.
3. The 3B vision tower (``random_weights(seed=0)``), bfloat16 and float32, port vs HF (sdpa), at 1280
   patches (a 448x560 image) and 5184 patches (1008x1008).

Every row: median and min wall time of ``--reps`` runs after one warm-up (CUDA synchronised), peak
device memory (``torch.cuda.max_memory_allocated`` from a reset after loading: the step's own
tensors plus the weights), which SDPA kernels ran (the ``aten::_scaled_dot_product_*`` ops in a
profile of the warm-up call), and the output against HF's (logits and tower output: max |a - b| /
max |b|; loss: relative difference).

Without CUDA it says so in one line, then runs the same code on the CPU with tiny sizes (the tiny
configs, 1 rep, the hardware tests of one file) and exits 0: the command is known to work before a
device appears (``tests/test_gpu_dry_run.py``).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import measure
import model_bench as mb
import tower_bench

TOWER_SIDES = {"full": [(32, 40), (72, 72)], "dry": [(8, 8), (8, 12)]}  # patch grids: 1280 and 5184 patches
DRY_TESTS = ["tests/test_port_goldens.py"]  # the dry run's hardware tests: one file (its CUDA test skips)
SDPA_OPS = "scaled_dot_product"


def sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device):
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    else:
        measure.reset_peak_rss()


def peak_gib(device) -> float:
    """Peak device memory since ``reset_peak`` (CPU: the process's peak RSS, for the dry run)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return measure.peak_rss_kb() / 2**20


def sdpa_kernels(fn) -> str:
    """The ``aten::_scaled_dot_product_*`` ops one call of ``fn`` runs (which SDPA backend ran)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    names = sorted({e.key for e in prof.key_averages() if SDPA_OPS in e.key and e.key.startswith("aten::_")})
    return ", ".join(n.removeprefix("aten::") for n in names) or "no SDPA call"


def timed(fn, reps: int, device) -> dict:
    """Median and min seconds of ``reps`` synchronised calls after one warm-up; peak memory; SDPA ops
    (those of the warm-up, which is profiled: it is not timed, and the same call runs the same kernels)."""
    times = []

    def once():
        fn()
        sync(device)

    reset_peak(device)
    sdpa = sdpa_kernels(once)  # the warm-up
    for _ in range(reps):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "peak_gib": peak_gib(device), "sdpa": sdpa}


def rel(a, b) -> float:
    from goldenlib.tolerances import rel_error

    return rel_error(a.detach().float().cpu().numpy(), b.detach().float().cpu().numpy())


# ----------------------------------------------------------------------------- 1. the hardware tests


def hardware_tests(files: list[str], out: Path) -> dict:
    """``pytest -m hardware`` in a subprocess: counts from its JUnit XML, seconds, the summary line."""
    import xml.etree.ElementTree as ET

    junit = out / "hardware_junit.xml"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "hardware", "-q", "-p", "no:cacheprovider",
                           f"--junitxml={junit}", *files], cwd=measure.ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    counts, failed = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0), []
    if junit.is_file():  # absent when pytest stopped before collecting (the summary says why)
        suite = ET.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        counts = {k: int(suite.get(k, 0)) for k in counts}
        failed = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
                  if case.find("failure") is not None or case.find("error") is not None]
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr.strip()[-300:]
    return {"files": files or ["tests"], "exit": proc.returncode, "seconds": seconds, **counts,
            "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
            "failed": failed, "summary": summary}


# ----------------------------------------------------------------------------- 2. the mid-size model


def model_rows(tmp: Path, quick: bool, reps: int, device) -> tuple[dict, list[dict]]:
    import torch

    info = mb.prepare(tmp, quick)
    rows, outputs = [], {}
    for task in mb.TASKS:
        for impl in mb.IMPLS:
            model, step = mb.load(impl, torch.bfloat16, tmp, device=device)
            train = task == "train step"
            model.train(train)
            if train and hasattr(step, "set_chunks"):
                step.set_chunks(mb.CHUNKS)
            result = {}

            def call():
                if train:
                    for p in model.parameters():
                        p.grad = None
                    result["out"] = step(True)
                else:
                    with torch.inference_mode():
                        result["out"] = step(False)

            row = {"section": "model", "task": task, "impl": impl, "dtype": "bfloat16", **timed(call, reps, device)}
            outputs[(task, impl)] = result["out"].detach().float().cpu()
            rows.append(row)
            del model, step, result
            gc.collect()
    for row in rows:
        got, want = outputs[(row["task"], row["impl"])], outputs[(row["task"], mb.IMPLS[0])]
        if row["task"] == "forward":
            row["vs_hf"] = rel(got, want)
            row["vs_hf_text"] = f"logits {row['vs_hf']:.1e}"
        else:
            row["vs_hf"] = abs(float(got) - float(want)) / abs(float(want))
            row["vs_hf_text"] = f"loss {float(got):.5f} ({row['vs_hf']:.1e})"
    return info, rows


# ----------------------------------------------------------------------------- 3. the 3B tower


def tower_rows(quick: bool, reps: int, device) -> list[dict]:
    import numpy as np
    import torch

    import reference
    from goldenlib.hf_vision import build_hf_vision
    from torch_port import load_hf_vision

    config = tower_bench.tower_config(quick)
    weights = reference.random_weights(config, seed=0)
    inputs = {}
    for gh, gw in TOWER_SIDES["dry" if quick else "full"]:
        image = measure.make_image(gw * config.patch_size, gh * config.patch_size, seed=gh * gw)
        pre = reference.preprocess(image, min_pixels=1, max_pixels=measure.MAX_PIXELS)
        assert pre["image_grid_thw"].tolist() == [[1, gh, gw]], pre["image_grid_thw"]
        inputs[(gh, gw)] = (torch.from_numpy(pre["pixel_values"]).to(device),
                            torch.from_numpy(pre["image_grid_thw"]).to(device))
    rows = []
    for dtype in (torch.bfloat16, torch.float32):
        outputs = {}
        for impl in ("HF (sdpa)", "port"):
            if impl == "port":
                state = {name: torch.from_numpy(np.ascontiguousarray(w)) for name, w in weights.items()}
                model = load_hf_vision(config.to_dict(), state, dtype=dtype, device=device)
                del state

                def forward(pv, grid):
                    return model(pv.to(dtype), grid)
            else:
                model = build_hf_vision(config, weights)
                inv_freq = model.rotary_pos_emb.inv_freq.clone()  # float32, as HF computes the rotary
                model = model.to(device=device, dtype=dtype)
                model.rotary_pos_emb.inv_freq = inv_freq.to(device)  # .to(dtype) cast it too (docs/porting.md)

                def forward(pv, grid):
                    return model(pv.to(dtype), grid_thw=grid).pooler_output
            for (gh, gw), (pv, grid) in inputs.items():
                result = {}

                def call():
                    with torch.inference_mode():
                        result["out"] = forward(pv, grid)

                row = {"section": "tower", "task": f"{gh * gw} patches ({gw * 14}x{gh * 14})", "impl": impl,
                       "dtype": str(dtype).removeprefix("torch."), **timed(call, reps, device)}
                outputs[(gh, gw, impl)] = result["out"].float().cpu()
                row["vs_hf"] = rel(outputs[(gh, gw, impl)], outputs[(gh, gw, "HF (sdpa)")])
                row["vs_hf_text"] = f"output {row['vs_hf']:.1e}"
                rows.append(row)
            del model
            gc.collect()
    return rows


# ----------------------------------------------------------------------------- report


def markdown(result: dict) -> str:
    head, tests = result["header"], result["hardware_tests"]
    out = [f"## GPU run ({result['mode']})", "", *measure.header_lines(head, result["load_after"]),
           f"- device: {result['device']}", f"- timing: median and min of {result['reps']} runs after 1 warm-up, "
           "CUDA synchronised; peak memory: max_memory_allocated from a reset after loading (dry run: peak RSS)", "",
           f"Hardware tests (`pytest -m hardware {' '.join(tests['files'])}`): {tests['passed']} passed, "
           f"{tests['failures'] + tests['errors']} failed, {tests['skipped']} skipped of {tests['tests']} in "
           f"{tests['seconds']:.0f} s (exit {tests['exit']}){': ' + ', '.join(tests['failed']) if tests['failed'] else ''}",
           f"({tests['summary']})", ""]
    info = result["model_info"]
    if info:
        out += [f"Model: {info['params'] / 1e9:.2f} B parameters, {info['tokens']} tokens ({info['image_tokens']} "
                f"image tokens of one {info['image']} image); tower: {result['tower']}", ""]
    out += ["| section | task | dtype | implementation | ms (median) | ms (min) | x HF | peak GiB | SDPA ops | vs HF |",
            "|---|---|---|---|---:|---:|---:|---:|---|---|"]
    for r in result["rows"]:
        hf = next(h for h in result["rows"] if (h["section"], h["task"], h["dtype"], h["impl"]) ==
                  (r["section"], r["task"], r["dtype"], "HF (sdpa)"))
        out.append(f"| {r['section']} | {r['task']} | {r['dtype']} | {r['impl']} | {r['median_s'] * 1e3:.1f} | "
                   f"{r['min_s'] * 1e3:.1f} | {r['median_s'] / hf['median_s']:.2f} | {r['peak_gib']:.2f} | "
                   f"{r['sdpa']} | {r['vs_hf_text']} |")
    for error in result["errors"]:
        out += ["", "FAILED " + error.rstrip()]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for gpu.json and gpu.md")
    parser.add_argument("--reps", type=int, default=None, help="timed runs per row (default 5; dry run 1)")
    args = parser.parse_args(argv)
    import os
    import warnings

    import torch

    warnings.simplefilter("ignore")
    cuda = torch.cuda.is_available()
    if not cuda:
        print("no CUDA device: dry run of the same steps on the CPU with tiny sizes", flush=True)
    device = torch.device("cuda" if cuda else "cpu")
    reps = args.reps or (5 if cuda else 1)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = {"mode": "CUDA" if cuda else "dry run on the CPU, tiny sizes: numbers meaningless",
              "device": torch.cuda.get_device_name(device) if cuda else "cpu", "reps": reps,
              "header": measure.header(), "tower": "the 3B preset, random_weights(seed=0)" if cuda else
              "the benchmarks' tiny test config"}
    result["hardware_tests"] = hardware_tests([] if cuda else DRY_TESTS, args.out)
    print(f"[gpu] hardware tests: {result['hardware_tests']['summary']}", file=sys.stderr, flush=True)
    result["rows"], result["errors"], result["model_info"] = [], [], None

    def model_section():
        with tempfile.TemporaryDirectory(prefix="qwen_gpu_bench_") as tmp:
            result["model_info"], rows = model_rows(Path(tmp), not cuda, reps, device)
        result["rows"] += rows

    def tower_section():
        result["rows"] += tower_rows(not cuda, reps, device)

    for name, section in (("model", model_section), ("tower", tower_section)):
        try:  # a device is lent once: a failing section is reported, the next one still runs
            section()
        except Exception:  # noqa: BLE001 - reported in full below
            result["errors"].append(f"{name}: {traceback.format_exc()}")
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        print(f"[gpu] {name} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    result["load_after"], result["seconds"] = os.getloadavg()[0], time.perf_counter() - t0
    (args.out / "gpu.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "gpu.md").write_text(markdown(result))
    print(markdown(result))
    return 0 if result["hardware_tests"]["exit"] == 0 and not result["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
