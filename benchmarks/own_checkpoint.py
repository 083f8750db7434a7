"""The own-checkpoint golden (`generate_golden.py --model`) on a checkpoint of the released 3B widths: time, the
share of this machine's float64 GEMM peak (measured in the same run), peak RSS.

A synthetic HF folder is written first: Qwen2.5-VL-3B's widths (text hidden 2048, MLP 11008, 16 heads / 2 kv
heads, vocabulary 151936, tied embedding; the released tower: hidden 1280, MLP 3420, 16 heads) with only
``--layers`` decoder layers and ``--blocks`` tower blocks, random bfloat16 weights in two shards, the tiny
byte-level tokenizer of goldenlib.model_folders (so the special ids are 256.., inside the vocabulary). Then
one 448x448 image and a 64-token prompt go through the golden's steps; the reference part (float64 forward
from the shards, one layer in float64 at a time) is timed and its peak RSS read before HF is loaded for the
cross-check (float32, whole model: its memory is not the golden's). Usage::

    uv run python benchmarks/own_checkpoint.py [--layers 4] [--blocks 4] [--no-crosscheck]

GEMM share = the forward's multiply-add FLOPs (counted from the shapes: projections, MLPs, attention
scores and values as computed, patch embedding, merger, lm_head) / its time / the float64 GEMM peak
(the best of three 4096x4096 NumPy matmuls, same process, same threads), measured right after each of three
forwards: on a shared machine both move with the load, so each forward is paired with its own peak.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEXT = dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_attention_heads=16,
            num_key_value_heads=2, mrope_section=(16, 24, 24), rms_norm_eps=1e-6, tie_word_embeddings=True)
VISION = dict(hidden_size=1280, num_heads=16, intermediate_size=3420, out_hidden_size=2048)


def write_folder(folder: Path, layers: int, blocks: int) -> Path:
    import torch
    from safetensors.torch import save_file

    import reference
    from goldenlib.model_folders import PREPROCESSOR, SPECIAL_IDS, hf_config_json, write_tokenizer

    config = reference.ModelConfig(
        reference.VisionConfig(depth=blocks, fullatt_block_indexes=(blocks - 1,), **VISION),
        reference.TextConfig(num_hidden_layers=layers, **TEXT), image_token_id=SPECIAL_IDS["<|image_pad|>"],
        video_token_id=SPECIAL_IDS["<|video_pad|>"], vision_start_token_id=SPECIAL_IDS["<|vision_start|>"],
        tokens_per_second=2)
    shapes = {f"visual.{k}": s for k, s in reference.vision_weight_shapes(config.vision).items()}
    shapes.update({f"model.{k}": s for k, s in reference.text_weight_shapes(config.text).items()})
    g = torch.Generator().manual_seed(0)
    shards, weight_map = ({}, {}), {}
    for i, (name, shape) in enumerate(sorted(shapes.items())):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 0
        w = torch.randn(shape, generator=g)
        w = 1 + 0.1 * w if name.endswith("norm.weight") or name.endswith("ln_q.weight") else (
            w * 0.05 if fan_in == 0 else w if "embed_tokens" in name else w / fan_in ** 0.5)
        shards[i % 2][name] = w.to(torch.bfloat16)
        weight_map[name] = f"model-{i % 2 + 1:05d}-of-00002.safetensors"
    for s, tensors in enumerate(shards):
        save_file(tensors, str(folder / f"model-{s + 1:05d}-of-00002.safetensors"), metadata={"format": "pt"})
    total = sum(t.numel() * 2 for part in shards for t in part.values())
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                     "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps({**hf_config_json(config), "torch_dtype": "bfloat16"}))
    (folder / "preprocessor_config.json").write_text(json.dumps({**PREPROCESSOR, "min_pixels": 3136,
                                                                 "max_pixels": 12845056}))
    write_tokenizer(folder)
    return folder


def forward_flops(config, seq: int, patches: int, window: int) -> float:
    """Multiply-add FLOPs (2 per MAC) of the reference's forward, as computed (attention over whole rows)."""
    t, v = config.text, config.vision
    kv = t.num_key_value_heads * t.head_dim
    per_layer = 2 * seq * (2 * t.hidden_size ** 2 + 2 * t.hidden_size * kv + 3 * t.hidden_size * t.intermediate_size)
    per_layer += 2 * 2 * seq * seq * t.hidden_size  # scores and values, every head
    text = t.num_hidden_layers * per_layer + 2 * seq * t.hidden_size * t.vocab_size
    h = v.hidden_size
    block = 2 * patches * (4 * h * h + 3 * h * v.intermediate_size)
    tower = 2 * patches * v.patch_dim * h
    for i in range(v.depth):
        segment = patches if i in v.fullatt_block_indexes else window
        tower += block + 2 * 2 * patches * segment * h
    merged = patches // 4
    tower += 2 * merged * (16 * h * h + 4 * h * v.out_hidden_size)
    return text + tower


def gemm_peak(n=4096, repeats=3) -> float:
    a, b = np.random.default_rng(0).standard_normal((2, n, n))
    a @ b  # warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--no-crosscheck", action="store_true")
    parser.add_argument("--folder", help="use (or, when absent, write and keep) the synthetic folder here")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.measure:
        return measure(Path(args.folder), args.no_crosscheck)
    # the folder is written by this process; the golden's steps run in a fresh child, whose peak RSS is
    # then the golden's own (writing random weights costs more memory than reading them)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder or tmp)
        if not (folder / "config.json").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            write_folder(folder, args.layers, args.blocks)
        child = [sys.executable, __file__, "--measure", "--folder", str(folder)]
        subprocess.run(child + (["--no-crosscheck"] if args.no_crosscheck else []), check=True)


def measure(folder: Path, no_crosscheck: bool):
    import reference
    from goldenlib import checkpoint_golden as cg

    size = sum(p.stat().st_size for p in folder.iterdir()) / 2**30
    config = cg.read_model_config(folder)
    image = np.random.default_rng(1).integers(0, 256, (448, 448, 3), dtype=np.uint8)
    prompt = cg.prompt_with_placeholders("".join(chr(97 + i % 26) for i in range(64)), 1, 0)
    ids, types, inputs, _ = cg.reference_inputs(folder, config, prompt, [image], [])
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    load = os.getloadavg()[0]
    times, peaks = [], []
    for run in range(3):  # each forward paired with a GEMM peak measured right after it (the machine is shared)
        start = time.perf_counter()
        trace = cg.run_reference(folder, config, ids, types, inputs, keep=lambda stage: True)
        times.append(time.perf_counter() - start)
        if run == 0:  # the golden's peak RSS: before any GEMM-peak arrays exist
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        peaks.append(gemm_peak())
    patches = int(np.prod(inputs["image_grid_thw"], axis=1).sum())
    flops = forward_flops(config, ids.shape[1], patches, (config.vision.window_size // 14) ** 2)
    layer_gib = sum(np.prod(s) for k, s in reference.text_weight_shapes(config.text).items()
                    if k.startswith("layers.0.")) * 8 / 2**30
    print(f"| folder | {config.text.num_hidden_layers} layers, {config.vision.depth} tower blocks, 3B widths, "
          f"bf16 shards: {size:.2f} GiB |")
    print(f"| input | 448x448 image ({patches} patches, {patches // 4} tokens) + 64 text tokens: "
          f"sequence {ids.shape[1]} |")
    shares = [flops / t / 1e9 / p for t, p in zip(times, peaks)]
    print(f"| reference float64 forward | {', '.join(f'{t:.1f}' for t in times)} s; {flops / 1e9:.0f} GFLOP, "
          f"{', '.join(f'{flops / t / 1e9:.1f}' for t in times)} GFLOP/s |")
    print(f"| float64 GEMM peak right after each (4096^2, best of 3) | {', '.join(f'{p:.1f}' for p in peaks)} GFLOP/s |")
    print(f"| share of the GEMM peak | {', '.join(f'{x:.0%}' for x in shares)} (median {sorted(shares)[1]:.0%}; load "
          f"average {load:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs) |")
    print(f"| peak RSS (the golden's steps, first run) | {rss:.2f} GiB (before the forward: {rss_before:.2f} GiB; "
          f"one decoder layer in float64: {layer_gib:.2f} GiB; logits [1, {ids.shape[1]}, 151936] float64: "
          f"{trace['lm.logits'].nbytes / 2**30:.2f} GiB) |")
    if not no_crosscheck:
        start = time.perf_counter()
        errors = cg.hf_crosscheck(folder, ids, types, inputs, trace)
        worst = max(errors.items(), key=lambda kv: kv[1])
        print(f"| HF float32 cross-check | {time.perf_counter() - start:.1f} s; worst {worst[0]} {worst[1]:.2e}; "
              f"lm.logits {errors['lm.logits']:.2e}; peak RSS with HF "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB |")


if __name__ == "__main__":
    main()
