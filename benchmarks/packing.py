"""Packed vs padded training throughput on a mixed dataset (CPU): real tokens/s and padding fraction.

The same samples are trained one epoch twice in one process, taking turns: as padded batches of
``batch`` samples (``padded_collate_qwen2_5_vl``, the unpacked recipe's batches, dataset order) and
as batches of ``batch`` packs (``Qwen2_5_VLPackedDataset`` up to ``max_seq_len`` tokens, best-fit,
then the same collate with its block-causal mask). A step is the torchtune recipe's: forward with 8
output chunks, labels shifted left, ``CEWithChunkedOutputLoss``, backward, AdamW step. Batches are
collated before the clock starts (a recipe's DataLoader workers do that); each row is the median
epoch over ``rounds`` rounds, after one untimed warm-up epoch per layout (the CPU kernels set
themselves up once per batch shape, and padded widths vary: a first epoch runs several times slower
per slot; that is left out here, so the numbers are the steady state).

The data: ``samples`` samples in the layout ``Qwen2_5_VLTransform`` gives (tokens, labels masking the
prompt, each sample's own 3-D positions from ``qwen2_5_vl_rope_index``, random pixel values with
their grids), a quarter each of text only, one image, two images and a video (second_per_grid_ts
1.0), shuffled. Lengths: prompt text U(8, 40) tokens + answer log-uniform on [8, 480] tokens, plus
per image a grid (1, 2a, 2b), a, b ~ U{2..6} (a*b + 2 tokens with its vision start / end), per video
(t, 2a, 2b), t ~ U{2, 3}, a, b ~ U{2..4}; capped at ``max_seq_len``. The report prints the resulting
distribution. The model: a small Qwen2.5-VL (text: 4 layers, hidden 384, 6 heads, 2 kv heads, MLP
1024, vocab 4096, mrope [8, 12, 12]; vision: 2 blocks, hidden 128), random init, float32.

    uv run benchmarks/packing.py              # 96 samples, batch 4, max_seq_len 512, 2 rounds
    uv run benchmarks/packing.py --quick      # 16 samples, 1 round (a smoke run)
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = 3, 4, 5, 6  # ids inside the small vocabulary
VOCAB = 4096
CHUNKS = 8
KINDS = ("text only", "one image", "two images", "video")


def config_dict() -> dict:
    """HF ``config.json`` layout of the benchmark's model."""
    return {
        "model_type": "qwen2_5_vl", "vocab_size": VOCAB, "hidden_size": 384, "intermediate_size": 1024,
        "num_hidden_layers": 4, "num_attention_heads": 6, "num_key_value_heads": 2, "rms_norm_eps": 1e-6,
        "rope_theta": 1e6, "max_position_embeddings": 4096, "tie_word_embeddings": False,
        "rope_scaling": {"type": "mrope", "mrope_section": [8, 12, 12]},
        "vision_config": {"depth": 2, "hidden_size": 128, "num_heads": 4, "intermediate_size": 256,
                          "out_hidden_size": 384, "patch_size": 14, "temporal_patch_size": 2,
                          "spatial_merge_size": 2, "in_channels": 3, "hidden_act": "silu", "tokens_per_second": 2,
                          "window_size": 112, "fullatt_block_indexes": [1]},
        "vision_start_token_id": VISION_START, "vision_end_token_id": VISION_END,
        "image_token_id": IMAGE_PAD, "video_token_id": VIDEO_PAD,
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
    }


def make_samples(n: int, max_seq_len: int, seed: int = 0) -> list[dict]:
    """``n`` samples in the transform's layout, a quarter of each kind, shuffled (see the module doc)."""
    import torch
    from torchtune.data import CROSS_ENTROPY_IGNORE_IDX

    from torch_port import qwen2_5_vl_rope_index

    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    kinds = [KINDS[k % 4] for k in range(n)]
    rng.shuffle(kinds)

    def text(count):
        return torch.randint(10, VOCAB, (count,), generator=g).tolist()

    samples = []
    for kind in kinds:
        n_images = {"one image": 1, "two images": 2}.get(kind, 0)
        images = [(1, 2 * rng.randint(2, 6), 2 * rng.randint(2, 6)) for _ in range(n_images)]
        video = (rng.choice([2, 3]), 2 * rng.randint(2, 4), 2 * rng.randint(2, 4)) if kind == "video" else None
        prompt = text(rng.randint(8, 40))
        runs = [(grid, IMAGE_PAD) for grid in images] + ([(video, VIDEO_PAD)] if video else [])
        for (t, h, w), pad in runs:
            prompt += [VISION_START] + [pad] * (t * h * w // 4) + [VISION_END]
        answer = text(int(math.exp(rng.uniform(math.log(8), math.log(480)))))
        tokens = (prompt + answer)[:max_seq_len]
        labels = ([CROSS_ENTROPY_IGNORE_IDX] * len(prompt) + answer)[:max_seq_len]
        ids = torch.tensor([tokens])
        types = (ids == IMAGE_PAD).long() + 2 * (ids == VIDEO_PAD).long()
        igrid = torch.tensor(images) if images else None
        vgrid = torch.tensor([video]) if video else None
        pos, _ = qwen2_5_vl_rope_index(ids, types, igrid, vgrid, torch.tensor([1.0]) if video else None,
                                       tokens_per_second=2)
        encoder_input = {}
        for modality, grid in (("image", igrid), ("video", vgrid)):
            if grid is not None:
                rows = int(grid.prod(-1).sum())
                encoder_input[modality] = {"pixel_values": torch.randn(rows, 3 * 2 * 14 * 14, generator=g),
                                           "grid_thw": grid}
        samples.append({"kind": kind, "tokens": tokens, "labels": labels, "input_pos": pos[:, 0],
                        "encoder_input": encoder_input})
    return samples


def batches(samples: list[dict], batch: int, max_seq_len: int, packed: bool) -> list[dict]:
    """Collated batches of samples (padded) or of packs (packed), in dataset order."""
    from torch_port import Qwen2_5_VLPackedDataset, padded_collate_qwen2_5_vl

    items = Qwen2_5_VLPackedDataset(samples, max_seq_len=max_seq_len) if packed else samples
    items = [items[i] for i in range(len(items))]
    return [padded_collate_qwen2_5_vl(items[i:i + batch], padding_idx=0) for i in range(0, len(items), batch)]


def step(model, optimizer, loss_fn, batch: dict) -> float:
    """The recipe's training step on one collated batch; returns the loss."""
    import torch

    batch = dict(batch)
    labels = batch.pop("labels")
    logits = model(**batch)
    labels = torch.hstack((labels[..., 1:], torch.full_like(labels[..., :1], loss_fn.ignore_index)))
    loss = loss_fn(logits, labels)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def run(args) -> str:
    import torch
    from torchtune.modules.loss import CEWithChunkedOutputLoss

    from run import cpu_model, versions
    from torch_port import qwen2_5_vl_from_hf_config

    samples = make_samples(args.samples, args.max_seq_len, seed=0)
    layouts = {"padded": batches(samples, args.batch, args.max_seq_len, packed=False),
               "packed": batches(samples, args.batch, args.max_seq_len, packed=True)}
    torch.manual_seed(0)
    model = qwen2_5_vl_from_hf_config(config_dict()).train()
    model.set_num_output_chunks(CHUNKS)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    loss_fn = CEWithChunkedOutputLoss(num_output_chunks=CHUNKS)
    total_real = sum(len(s["tokens"]) for s in samples)
    times = {name: [] for name in layouts}
    for name, bs in layouts.items():  # warm-up: every batch shape once
        for batch in bs:
            step(model, optimizer, loss_fn, batch)
    for r in range(args.rounds):
        for name, bs in layouts.items():
            time.sleep(0.2)  # let the BLAS threads of the previous run settle
            t0 = time.perf_counter()
            for batch in bs:
                step(model, optimizer, loss_fn, batch)
            times[name].append(time.perf_counter() - t0)
            print(f"[packing] round {r + 1} {name}: {times[name][-1]:.1f} s", file=sys.stderr, flush=True)

    lines = [f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"- machine: {cpu_model()}, {platform.machine()}, torch threads {torch.get_num_threads()}",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
             f"- {args.samples} samples, batch {args.batch}, max_seq_len {args.max_seq_len}, {args.rounds} round(s), "
             "float32 CPU, median epoch after a warm-up epoch", "", "Sample lengths (tokens):", "",
             "| kind | samples | min | median | mean | max | vision tokens (mean) |", "|---|---|---|---|---|---|---|"]
    for kind in KINDS + ("all",):
        group = [s for s in samples if kind in ("all", s["kind"])]
        lengths = [len(s["tokens"]) for s in group]
        vision = [sum(t in (IMAGE_PAD, VIDEO_PAD) for t in s["tokens"]) for s in group]
        lines.append(f"| {kind} | {len(group)} | {min(lengths)} | {statistics.median(lengths):.0f} | "
                     f"{statistics.mean(lengths):.1f} | {max(lengths)} | {statistics.mean(vision):.1f} |")
    lines += ["", "| layout | steps | rows | slots | padding fraction | epoch (s) | real tokens/s | slots/s | "
              "real tokens/s vs padded |", "|---|---|---|---|---|---|---|---|---|"]
    base = None
    for name, bs in layouts.items():
        slots = sum(b["tokens"].numel() for b in bs)
        rows = sum(b["tokens"].shape[0] for b in bs)
        epoch = statistics.median(times[name])
        rate = total_real / epoch
        base = base or rate
        lines.append(f"| {name} | {len(bs)} | {rows} | {slots} | {1 - total_real / slots:.3f} | {epoch:.2f} | "
                     f"{rate:.0f} | {slots / epoch:.0f} | {rate / base:.2f}x |")
    lines.append(f"\nReal tokens: {total_real} in both layouts (every sample once per epoch).")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-seq-len", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="16 samples, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.rounds = 16, 1
    print(run(args))


if __name__ == "__main__":
    main()
