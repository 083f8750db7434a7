"""mRoPE positions: ``torch_port.qwen2_5_vl_rope_index`` vs HF's ``Qwen2_5_VLModel.get_rope_index``
(``benchmarks/run.py`` describes the batch)."""

from __future__ import annotations

import time

import numpy as np

import measure

POSITIONS_LAYOUT = (8, 8192, 4)  # batch, tokens per sequence, images per sequence
QUICK_POSITIONS_LAYOUT = (2, 512, 2)
HF, PORT = "HF get_rope_index", "port qwen2_5_vl_rope_index"


def positions_batch(batch: int, seq: int, n_images: int, seed: int = 0):
    """ids, token types, image grids and an all-ones mask: per row, ``n_images`` images of random
    grids (8..32 patches a side, even) between text runs of random length, padded with text to ``seq``."""
    import torch

    rng = np.random.default_rng(seed)
    types = torch.zeros(batch, seq, dtype=torch.int64)
    grids = []
    for b in range(batch):
        tokens = [seq]
        while sum(tokens) + n_images + 1 > seq:  # draw again until the images fit with text between them
            sizes = [(1, 2 * int(rng.integers(4, 17)), 2 * int(rng.integers(4, 17))) for _ in range(n_images)]
            tokens = [t * h * w // 4 for t, h, w in sizes]
        # image k follows cuts[k] text tokens: distinct cuts in [1, text) put text before, between and after
        cuts = np.sort(rng.choice(np.arange(1, seq - sum(tokens)), n_images, replace=False))
        before = 0  # image tokens before image k
        for cut, n, size in zip(cuts, tokens, sizes):
            start = int(cut) + before
            types[b, start:start + n] = 1
            before += n
            grids.append(size)
        assert int((types[b] == 1).sum()) == sum(tokens)
    ids = torch.randint(0, 150000, (batch, seq))
    return ids, types, torch.tensor(grids), torch.ones(batch, seq, dtype=torch.int64)


def hf_get_rope_index(*args, spatial_merge_size=2, tokens_per_second=2):
    """HF's ``Qwen2_5_VLModel.get_rope_index`` on a stub holding the two config values it reads."""
    import functools
    from types import SimpleNamespace

    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel

    vision = SimpleNamespace(spatial_merge_size=spatial_merge_size, tokens_per_second=tokens_per_second)
    stub = SimpleNamespace(config=SimpleNamespace(vision_config=vision),
                           get_vision_position_ids=functools.partial(Qwen2_5_VLModel.get_vision_position_ids, None))
    return Qwen2_5_VLModel.get_rope_index(stub, *args)


def positions_section(layout, reps: int, settle: float) -> list[dict]:
    """``torch_port.qwen2_5_vl_rope_index`` vs HF's ``get_rope_index``: median ms, same positions?"""
    import torch

    from torch_port import qwen2_5_vl_rope_index

    batch, seq, n_images = layout
    ids, types, grids, mask = positions_batch(batch, seq, n_images)
    args = (ids, types, grids, None, None, mask)
    impls = {HF: lambda: hf_get_rope_index(*args), PORT: lambda: qwen2_5_vl_rope_index(*args)}
    want = impls[HF]()
    rows = []
    for name, fn in impls.items():
        time.sleep(settle)
        seconds = measure.median_time(fn, reps)
        got = fn()
        same = torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        rows.append({"layout": f"{batch} x {seq} tokens, {n_images} images each", "impl": name,
                     "ms": 1000 * seconds, "same": "equal" if same else "DIFFERENT"})
    for r in rows:
        r["ratio"] = r["ms"] / rows[0]["ms"]
    return rows


def positions_table(rows) -> list[str]:
    out = ["### mRoPE positions (median ms of get_rope_index-style calls; ratio to HF)", "",
           "| layout | implementation | ms | x HF | position_ids, deltas vs HF |", "|---|---|---:|---:|---|"]
    for r in rows:
        out.append(f"| {r['layout']} | {r['impl']} | {r['ms']:.2f} | {r['ratio']:.3f} | {r['same']} |")
    return out
