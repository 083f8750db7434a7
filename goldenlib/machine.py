"""The one place that reads what a run ran on: installed library versions and the CPU's name.

Used by the goldens' metadata (``hf_image.versions``), the verification record (``verified.py``)
and the benchmarks' header (``benchmarks/measure.py``). Standard library only, so anything may
import it.
"""

from __future__ import annotations

import importlib.metadata
import platform


def library_versions(names) -> dict:
    """{name: installed version, or "not installed"}, in the order of ``names``."""
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what ``platform`` knows, else "unknown"."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
