"""Read the vision tower of a Hugging Face Qwen2.5-VL checkpoint folder with NumPy only.

safetensors layout: 8 bytes little-endian u64 N, then N bytes of JSON
{name: {"dtype": "BF16", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}},
then the raw little-endian tensor bytes; offsets count from the end of the header.
Only the vision tensors are read, so a 16 GB checkpoint costs ~1.3 GB of reads.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from .vision_config import VisionConfig
from .weights import describe_problems, weight_problems

# Prefixes of the vision tower: released files use "visual.", transformers 5.x models "model.visual.".
VISION_PREFIXES = ("model.visual.", "visual.")
_DTYPES = {"BF16": "<u2", "F16": "<f2", "F32": "<f4", "F64": "<f8"}
_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
             "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class CheckpointError(ValueError):
    """A checkpoint folder or file that cannot be read as a Qwen2.5-VL vision tower."""


def read_safetensors_header(path: Path) -> tuple[dict, int]:
    """The header dict of a safetensors file (without "__metadata__") and the data start offset."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: not a safetensors file (only {size} bytes, no header length)")
        (n,) = struct.unpack("<Q", head)
        if n == 0 or 8 + n > size:
            raise CheckpointError(f"{path}: corrupt safetensors header length {n} (file has {size} bytes)")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors header, not JSON ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header, expected a JSON object")
    header.pop("__metadata__", None)
    data_start, data_size = 8 + n, size - 8 - n
    for name, info in header.items():
        try:
            dtype, shape, (begin, end) = info["dtype"], [int(s) for s in info["shape"]], info["data_offsets"]
            begin, end = int(begin), int(end)
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: corrupt safetensors header entry for {name!r}: {info!r}") from None
        if not 0 <= begin <= end <= data_size:
            raise CheckpointError(f"{path}: tensor {name!r} has data_offsets [{begin}, {end}] outside the "
                                  f"{data_size} data bytes of the file")
        if dtype in _ITEMSIZE and end - begin != _ITEMSIZE[dtype] * int(np.prod(shape, dtype=np.int64)):
            raise CheckpointError(f"{path}: tensor {name!r} ({dtype}, shape {shape}) has {end - begin} bytes")
    return header, data_start


def _read_tensor(f, path: Path, name: str, info: dict, data_start: int) -> np.ndarray:
    dtype = info["dtype"]
    if dtype not in _DTYPES:
        raise CheckpointError(f"{path}: tensor {name!r} has dtype {dtype}; supported: {sorted(_DTYPES)}")
    begin, end = info["data_offsets"]
    f.seek(data_start + begin)
    raw = f.read(end - begin)
    if len(raw) != end - begin:
        raise CheckpointError(f"{path}: tensor {name!r} is truncated")
    a = np.frombuffer(raw, dtype=_DTYPES[dtype]).reshape(info["shape"])
    if dtype == "BF16":
        # bfloat16 is the top half of a float32: put the 16 bits back in place
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float64 if dtype == "F64" else np.float32)  # native byte order, own memory


def _safetensors_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    single = folder / "model.safetensors"
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(f"{index}: not a valid safetensors index ({e!r})") from None
        paths = [folder / s for s in shards]
        absent = [str(p) for p in paths if not p.exists()]
        if absent:
            raise CheckpointError(f"{index} lists shards that are not there: {absent}")
        return paths
    if single.exists():
        return [single]
    others = sorted(folder.glob("*.safetensors"))
    if others:
        return others
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES)
    if pickles:
        raise CheckpointError(f"{folder}: only pickle checkpoints ({pickles}); refusing to unpickle them "
                              "(arbitrary code). Convert them to safetensors first.")
    raise CheckpointError(f"{folder}: no model.safetensors, model.safetensors.index.json or *.safetensors")


def load_config(checkpoint_dir) -> VisionConfig:
    path = Path(checkpoint_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: config.json not found")
    try:
        cfg = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("vision_config"), dict):
        raise CheckpointError(f"{path}: no \"vision_config\" object; is this a Qwen2.5-VL checkpoint?")
    try:
        return VisionConfig.from_hf(cfg["vision_config"])
    except ValueError as e:
        raise CheckpointError(f"{path}: bad vision_config: {e}") from None


def load_weights(checkpoint_dir) -> tuple[VisionConfig, dict[str, np.ndarray]]:
    """(config, vision weights under HF names without prefix) from a checkpoint folder.

    BF16/F16/F32 tensors come back as float32, F64 as float64. Raises one CheckpointError
    (a ValueError) listing every missing, unexpected and wrongly shaped vision tensor.
    """
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: not a directory")
    config = load_config(folder)
    weights: dict[str, np.ndarray] = {}
    source: dict[str, str] = {}
    for path in _safetensors_files(folder):
        header, data_start = read_safetensors_header(path)
        with open(path, "rb") as f:
            for full_name, info in header.items():
                prefix = next((p for p in VISION_PREFIXES if full_name.startswith(p)), None)
                if prefix is None:
                    continue  # the language model, lm_head, ...
                name = full_name[len(prefix):]
                if name in weights:
                    raise CheckpointError(f"vision tensor {name!r} appears twice: {source[name]} and "
                                          f"{full_name} in {path}")
                weights[name] = _read_tensor(f, path, full_name, info, data_start)
                source[name] = f"{full_name} in {path}"
    missing, extra, misshaped = weight_problems(weights, config)
    if missing or extra or misshaped:
        raise CheckpointError(f"{folder}: vision weights do not match its config.json:\n"
                              + describe_problems(missing, extra, misshaped))
    for name, w in weights.items():
        if not np.isfinite(w).all():
            raise CheckpointError(f"{source[name]}: holds {int(np.isnan(w).sum())} NaN and "
                                  f"{int(np.isinf(w).sum())} Inf values")
    return config, weights
