"""An HF checkpoint's tensors, read from its safetensors shards only when used.

`ShardWeights(folder)` is a read-only mapping from HF names to `LazyTensor`s: each knows its shape
without reading, becomes a NumPy array (float32 for BF16/F16/F32 files, float64 for F64) when NumPy
asks (`np.asarray(t, dtype)`), and reads only the rows asked for when indexed (`t[ids]`, `t[a:b]`).
The reference reads one layer at a time this way, so a 7B checkpoint is never whole in memory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np


class FolderError(ValueError):
    """A checkpoint folder that cannot be read as a Qwen2.5-VL checkpoint (the message names the file)."""


def shard_files(folder: Path) -> dict[str, Path]:
    """{tensor name: shard path} from model.safetensors.index.json, or the single model.safetensors."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise FolderError(f"{index}: not a safetensors index ({error!r})") from None
        missing = sorted({shard for shard in weight_map.values() if not (folder / shard).is_file()})
        if missing:
            raise FolderError(f"{index} lists shard(s) that are not in {folder}: {', '.join(missing)}")
        return {name: folder / shard for name, shard in weight_map.items()}
    single = folder / "model.safetensors"
    if not single.is_file():
        raise FolderError(f"{folder}: neither model.safetensors nor model.safetensors.index.json")
    from safetensors import safe_open

    with safe_open(str(single), framework="pt") as handle:
        return {name: single for name in handle.keys()}


def _numpy(tensor):
    """A torch tensor read from a shard -> NumPy (bfloat16 / float16 widened to float32)."""
    import torch

    if tensor.dtype in (torch.bfloat16, torch.float16):
        tensor = tensor.float()
    return tensor.numpy()


class LazyTensor:
    def __init__(self, path: Path, name: str):
        from safetensors import safe_open

        self.path, self.name = path, name
        with safe_open(str(path), framework="pt") as handle:
            if name not in handle.keys():
                raise FolderError(f"{path}: the index names tensor {name!r} but the shard does not hold it")
            self.shape = tuple(handle.get_slice(name).get_shape())

    def _slice(self, index):
        from safetensors import safe_open

        with safe_open(str(self.path), framework="pt") as handle:
            return _numpy(handle.get_slice(self.name)[index])

    def __array__(self, dtype=None, copy=None):
        whole = self._slice(slice(None)) if self.shape else self._slice(())
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self._slice(index)
        rows = np.asarray(index)
        if rows.size == 0:
            return np.zeros((0,) + self.shape[1:], np.float32)
        lo, hi = int(rows.min()), int(rows.max()) + 1  # one contiguous read covering the rows asked for
        return self._slice(slice(lo, hi))[rows - lo]


class ShardWeights(Mapping):
    """{HF name: LazyTensor} of a checkpoint folder; nothing is read until used."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.files = shard_files(self.folder)

    def __getitem__(self, name):
        return LazyTensor(self.files[name], name)

    def __iter__(self):
        return iter(self.files)

    def __len__(self):
        return len(self.files)
