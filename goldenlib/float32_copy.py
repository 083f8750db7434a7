"""A float32 / int32 copy of one golden case, for readers without float64 or int64 (MLX's loader
refuses F64): ``uv run generate_golden.py --float32-copy CASE --out FILE.safetensors``.

The copy is for reading stages and inputs into such a framework; the report judges a dump against the
golden itself (float64), so nothing is lost by comparing. Integers beyond int32 are refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import store

NARROWED = {np.dtype(np.float64): np.float32, np.dtype(np.int64): np.int32}


def narrowed(tensors):
    """Every float64 tensor as float32, every int64 as int32 (others unchanged); ValueError naming a
    tensor whose integers do not fit int32."""
    out = {}
    for name, value in tensors.items():
        target = NARROWED.get(value.dtype)
        if target is np.int32 and value.size and (value.min() < np.iinfo(np.int32).min or
                                                  value.max() > np.iinfo(np.int32).max):
            raise ValueError(f"{name}: integers up to {value.max()} do not fit int32")
        out[name] = value if target is None else value.astype(target)
    return out


def write_float32_copy(name, out, folder=None):
    """Write the narrowed copy of golden case ``name`` to ``out`` (sha256-checked first); the path."""
    from safetensors.numpy import save_file

    source = Path(store.GOLDEN_DIR if folder is None else folder) / f"{name}.safetensors"
    tensors, _ = store.read_case(name, folder)
    header = store.read_header(source)
    header["converted_from"] = f"{source.name} (sha256 {store.sha256_of(source)}): float64 -> float32, int64 -> int32"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(narrowed(tensors), str(out), metadata=header)
    return out
