"""The verification record, ``golden/VERIFIED.json``: what the goldens were last verified with.

Each golden's ``versions`` metadata says what it was *written* with and stays as long as the file
is kept. A complete regeneration (every case recomputed and compared) also verifies the goldens it
keeps; this record says with which library versions, on which machine (BLAS kernel, CPU, Python)
and when. It is rewritten only when what it records as the reason to record changed: a library
version differs from the recorded one (an upgrade), or the run rewrote a golden. A rerun at the
same versions - on this machine or another kernel's - leaves it, and so the whole folder, as it is.
"""

from __future__ import annotations

import datetime
import json
import os
import platform

from . import store
from .machine import cpu_name, library_versions as installed_versions

VERIFIED = "VERIFIED.json"
FORMAT_VERSION = "1"
LIBRARIES = ("numpy", "pillow", "safetensors", "torch", "torchvision", "transformers")


def library_versions():
    """{library: installed version} of the libraries that compute or read the goldens."""
    return installed_versions(LIBRARIES)


def machine():
    from .blas import openblas_kernel

    return {"openblas_kernel": openblas_kernel(), "cpu": cpu_name(), "arch": platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version()}


def load(folder):
    """The record of ``folder``, or None when it has none (or an unreadable one)."""
    path = store.Path(folder) / VERIFIED
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def record(result):
    """A new record for this machine and the installed libraries; ``result``: what the run found."""
    return {"format_version": FORMAT_VERSION, "verified_with": library_versions(), "machine": machine(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"), "result": result}


def needs_update(old, rewritten):
    """Why a complete run rewrites the record (a line), or None: keep the old one byte for byte."""
    if old is None or old.get("format_version") != FORMAT_VERSION or not isinstance(old.get("verified_with"), dict):
        return "no verification record yet"
    installed = library_versions()
    moved = [f"{name} {old['verified_with'].get(name)} -> {version}" for name, version in installed.items()
             if old["verified_with"].get(name) != version]
    if moved:
        return "versions changed: " + ", ".join(moved)
    if rewritten:
        return f"rewrote {len(rewritten)} golden(s)"
    return None


def write(folder, content):
    (store.Path(folder) / VERIFIED).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
