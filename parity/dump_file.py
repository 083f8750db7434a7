"""Reading a stage dump: a safetensors file written by any implementation, in any float dtype.

The file is parsed here with NumPy alone (the safetensors layout: an 8-byte little-endian header
length, a JSON header, then the raw little-endian data), because NumPy has no bfloat16 and the
library's NumPy reader refuses it. Each tensor comes back as ``DumpTensor(values, dtype)``: the
values in float64 (exactly: every dtype read here converts to float64 without rounding) and the
dtype name the file gave (``"bfloat16"``, ``"float32"``, ``"int64"``, ...), which chooses the
tolerance it is judged with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# safetensors dtype code -> (dtype name, NumPy storage dtype); BF16 is stored as its 16 bits.
CODES = {
    "F64": ("float64", "<f8"), "F32": ("float32", "<f4"), "F16": ("float16", "<f2"), "BF16": ("bfloat16", "<u2"),
    "I64": ("int64", "<i8"), "I32": ("int32", "<i4"), "I16": ("int16", "<i2"), "I8": ("int8", "i1"),
    "U8": ("uint8", "u1"), "U16": ("uint16", "<u2"), "U32": ("uint32", "<u4"), "BOOL": ("bool", "?"),
}
FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16")
MAX_HEADER = 100 << 20  # the format's own limit on the JSON header


class DumpError(ValueError):
    """A dump file that cannot be read (not safetensors, an unsupported dtype, truncated data)."""


@dataclass
class DumpTensor:
    values: np.ndarray  # float64 (exact), original shape
    dtype: str  # the dump's dtype name

    @property
    def shape(self):
        return tuple(self.values.shape)

    @property
    def is_float(self):
        return self.dtype in FLOAT_DTYPES


def bfloat16_bits_to_float64(bits):
    """bfloat16 is the top half of a float32: shift the 16 bits up and read them as float32."""
    return (np.asarray(bits, dtype=np.uint32) << 16).view(np.float32).astype(np.float64)


def read_dump(path):
    """{name: DumpTensor} of a safetensors file; DumpError naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise DumpError(f"dump {path} does not exist")
    raw = path.read_bytes()
    if len(raw) < 8:
        raise DumpError(f"dump {path} is {len(raw)} bytes: not a safetensors file")
    size = int.from_bytes(raw[:8], "little")
    if size > MAX_HEADER or 8 + size > len(raw):
        raise DumpError(f"dump {path}: header length {size} does not fit the file ({len(raw)} bytes): "
                        "not a safetensors file")
    try:
        header = json.loads(raw[8:8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DumpError(f"dump {path}: the header is not JSON ({error}): not a safetensors file") from None
    if not isinstance(header, dict):
        raise DumpError(f"dump {path}: the header is not a JSON object")
    data = memoryview(raw)[8 + size:]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        code = entry.get("dtype") if isinstance(entry, dict) else None
        if code not in CODES:
            raise DumpError(f"dump {path}: tensor {name!r} has dtype {code!r}; readable: {', '.join(CODES)}")
        dtype, storage = CODES[code]
        shape, (start, end) = tuple(entry["shape"]), entry["data_offsets"]
        count = int(np.prod(shape, dtype=np.int64))
        if not 0 <= start <= end <= len(data) or end - start != count * np.dtype(storage).itemsize:
            raise DumpError(f"dump {path}: tensor {name!r} ({code} {list(shape)}) has data offsets "
                            f"[{start}, {end}] that do not fit its shape or the file")
        array = np.frombuffer(data[start:end], dtype=storage).reshape(shape)
        values = bfloat16_bits_to_float64(array) if dtype == "bfloat16" else array.astype(np.float64)
        tensors[name] = DumpTensor(values, dtype)
    return tensors


def dump_metadata(path):
    """The dump's ``__metadata__`` (strings), or {}."""
    raw = Path(path).read_bytes()
    size = int.from_bytes(raw[:8], "little")
    try:
        return dict(json.loads(raw[8:8 + size]).get("__metadata__") or {})
    except (ValueError, AttributeError):
        return {}


def as_dump_tensor(value):
    """A DumpTensor from a NumPy array, a torch tensor (any dtype, bfloat16 included) or a DumpTensor."""
    if isinstance(value, DumpTensor):
        return value
    if hasattr(value, "detach"):  # torch, without importing it here
        dtype = str(value.dtype).removeprefix("torch.")
        return DumpTensor(value.detach().to("cpu").double().numpy(), dtype)
    array = np.asarray(value)
    if array.dtype.kind not in "fiub":
        raise DumpError(f"a dump tensor of NumPy dtype {array.dtype} cannot be compared")
    return DumpTensor(array.astype(np.float64), str(array.dtype))
