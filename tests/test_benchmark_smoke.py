"""benchmarks/run.py --quick runs end to end and prints every table (no timing is checked)."""

import subprocess
import sys
from pathlib import Path

import pytest

from goldenlib.tolerances import BENCHMARK_OUTPUT_BOUNDS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # subprocess
def test_quick_benchmark_runs_and_reports_everything(tmp_path):
    out = tmp_path / "bench.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = out.read_text()
    assert report.strip() == proc.stdout.strip()
    for needle in ("- date:", "- machine:", "- versions:", "numpy", "torch", "transformers", "pillow",
                   "GEMM peak", "### Preprocessing", "### Vision tower", "% of GEMM peak", "peak RSS"):
        assert needle in report, needle
    for impl in ("reference.preprocess", "port Qwen2_5_VLImageTransform", "HF Qwen2VLImageProcessorPil"):
        rows = [line for line in report.splitlines() if f"| {impl} |" in line]
        assert len(rows) == 2, (impl, rows)  # one per quick image size
        assert all("bit-exact" in row for row in rows), rows
    for variant in ("HF float32 (sdpa)", "port float32", "port bfloat16", "reference float32", "reference float64"):
        rows = [line for line in report.splitlines() if f"| {variant} |" in line]
        assert len(rows) == 2, (variant, rows)  # one per quick tower size
        diffs = [float(row.rstrip(" |").rsplit("|", 1)[1]) for row in rows]  # last column
        # the outputs really are the same model's
        bound = BENCHMARK_OUTPUT_BOUNDS["bfloat16" if "bfloat16" in variant else "float32"]
        assert all(d <= bound for d in diffs), (variant, diffs)
