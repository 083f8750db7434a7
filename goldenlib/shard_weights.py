"""An HF checkpoint's tensors, read from its safetensors shards only when used.

`ShardWeights(folder, dtype)` is a read-only mapping from HF names to `LazyTensor`s: each knows its shape
without reading, becomes a NumPy array of `dtype` (float64 by default: every BF16/F16/F32 value is exact
in it) when NumPy asks (`np.asarray(t)`), and reads only the rows asked for when indexed (`t[ids]`,
`t[a:b]`). The widening is one torch conversion from the stored dtype (the reference's own cast is then
a no-op).
The reference reads one layer at a time this way, so a 7B checkpoint is never whole in memory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
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


def _numpy(tensor, dtype):
    """A torch tensor read from a shard -> a NumPy array of ``dtype`` (one conversion)."""
    import torch

    return tensor.to({np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}[dtype]).numpy()


class LazyTensor:
    def __init__(self, path: Path, name: str, dtype=np.float64, owner=None):
        from safetensors import safe_open

        self.path, self.name, self.dtype, self.owner = path, name, np.dtype(dtype), owner
        with safe_open(str(path), framework="pt") as handle:
            if name not in handle.keys():
                raise FolderError(f"{path}: the index names tensor {name!r} but the shard does not hold it")
            self.shape = tuple(handle.get_slice(name).get_shape())

    def _slice(self, index):
        from safetensors import safe_open

        with safe_open(str(self.path), framework="pt") as handle:
            return _numpy(handle.get_slice(self.name)[index], self.dtype)

    def read(self):
        return self._slice(slice(None)) if self.shape else self._slice(())

    def __array__(self, dtype=None, copy=None):
        whole = self.owner.whole(self) if self.owner is not None else self.read()
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self._slice(index)
        from safetensors import safe_open

        rows = np.asarray(index)
        wanted = np.unique(rows)  # sorted; read as runs of consecutive rows (token ids are scattered
        runs = np.split(wanted, np.flatnonzero(np.diff(wanted) > 1) + 1) if wanted.size else []  # over the vocab)
        with safe_open(str(self.path), framework="pt") as handle:
            part = handle.get_slice(self.name)
            table = [_numpy(part[int(run[0]):int(run[-1]) + 1], self.dtype) for run in runs]
        table = np.concatenate(table) if table else np.zeros((0,) + self.shape[1:], self.dtype)
        return table[np.searchsorted(wanted, rows)]


class ShardWeights(Mapping):
    """{HF name: LazyTensor} of a checkpoint folder; nothing is read until used.

    When a whole tensor of block or layer i is read (a name with "layers.{i}." or "blocks.{i}."), the
    tensors of block or layer i + 1 are read in a background thread, so that reading and widening the
    next layer overlaps the current one's arithmetic (at most two layers are held at once); the values
    are the same either way."""

    LAYER = re.compile(r"^(.*\b(?:layers|blocks)\.)(\d+)\.")

    def __init__(self, folder, dtype=np.float64):
        self.folder, self.dtype = Path(folder), np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
            raise ValueError(f"ShardWeights reads float32 or float64, not {self.dtype}")
        self.files = shard_files(self.folder)
        self.pool, self.ahead = ThreadPoolExecutor(max_workers=1), {}

    def __getitem__(self, name):
        return LazyTensor(self.files[name], name, self.dtype, owner=self)

    def whole(self, tensor: LazyTensor):
        """The whole tensor (read ahead or now), and the next layer's tensors started."""
        match = self.LAYER.match(tensor.name)
        if match:
            following = f"{match.group(1)}{int(match.group(2)) + 1}."
            for name in (n for n in self.files if n.startswith(following) and n not in self.ahead):
                self.ahead[name] = self.pool.submit(LazyTensor(self.files[name], name, self.dtype).read)
        pending = self.ahead.pop(tensor.name, None)
        return pending.result() if pending is not None else tensor.read()

    def __iter__(self):
        return iter(self.files)

    def __len__(self):
        return len(self.files)
