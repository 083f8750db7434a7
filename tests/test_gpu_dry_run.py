"""benchmarks/gpu.py without CUDA: one line says so, the same steps run on the CPU with tiny sizes, exit 0.

The command a lent GPU runs is thereby known to work before a device appears: the hardware tests
step, the mid-size model's bf16 forward and train step and the 3B tower's rows (tiny configs here),
each against HF, written to gpu.json and gpu.md.

The dry run runs in this process (``gpu.main`` with the command's arguments, CUDA hidden from this
process and from the hardware tests' pytest it starts), which saves an interpreter and its imports;
that the file starts as the script a GPU machine runs (its imports resolve from ``benchmarks/``) is
checked apart, cheaply, with ``--help``.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from goldenlib.tolerances import BENCHMARK_OUTPUT_BOUNDS

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "benchmarks" / "gpu.py"


def test_gpu_command_starts_as_a_script():
    proc = subprocess.run([sys.executable, str(GPU), "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("usage: gpu.py") and "--out" in proc.stdout


@pytest.mark.slow  # the dry run (with a pytest subprocess inside it): about 20 s on 2 busy cores
def test_gpu_command_dry_runs_without_cuda(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(GPU.parent))  # as `python benchmarks/gpu.py` has it
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the hardware tests' pytest: as on a machine without a device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this process: the same
    import gpu

    assert gpu.main(["--out", str(tmp_path)]) == 0
    stdout = capsys.readouterr().out
    assert stdout.splitlines()[0] == "no CUDA device: dry run of the same steps on the CPU with tiny sizes"
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert (tmp_path / "gpu.md").read_text() in stdout
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
