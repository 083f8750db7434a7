"""benchmarks/gpu.py without CUDA: one line says so, the same steps run on the CPU with tiny sizes, exit 0.

The command a lent GPU runs is thereby known to work before a device appears: the hardware tests
step, the mid-size model's bf16 forward and train step and the 3B tower's rows (tiny configs here),
each against HF, written to gpu.json and gpu.md.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from goldenlib.tolerances import BENCHMARK_OUTPUT_BOUNDS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # subprocess (and a pytest subprocess inside it): about 25 s on 2 busy cores
def test_gpu_command_dry_runs_without_cuda(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # as on a machine without a device
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.splitlines()[0] == "no CUDA device: dry run of the same steps on the CPU with tiny sizes"
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert (tmp_path / "gpu.md").read_text() in proc.stdout
    tests = result["hardware_tests"]
    assert tests["exit"] == 0 and tests["tests"] >= 1 and tests["failures"] == tests["errors"] == 0, tests
    keys = {(r["section"], r["task"], r["dtype"], r["impl"]) for r in result["rows"]}
    assert keys == {("model", task, "bfloat16", impl) for task in ("forward", "train step")
                    for impl in ("HF (sdpa)", "port")} | {
        ("tower", task, dtype, impl) for task in ("64 patches (112x112)", "96 patches (168x112)")
        for dtype in ("bfloat16", "float32") for impl in ("HF (sdpa)", "port")}
    for r in result["rows"]:
        assert r["median_s"] > 0 and r["peak_gib"] > 0, r
        assert "scaled_dot_product" in r["sdpa"], r  # HF and the port both attend through SDPA
        assert r["vs_hf"] <= BENCHMARK_OUTPUT_BOUNDS[r["dtype"]], r  # the port computes HF's model
