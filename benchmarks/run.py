"""Benchmarks on CPU: preprocessing and the full vision tower, NumPy reference vs torch port vs HF.

One command prints one markdown report, everything measured in the same run::

    uv run benchmarks/run.py            # full run (about half an hour on a 2-core machine)
    uv run benchmarks/run.py --quick    # smoke run: tiny images and a tiny tower (about 30 s)
    uv run benchmarks/run.py --only tower --sides 32 --reps 2   # a part of it
    uv run benchmarks/run.py --only positions                    # the mRoPE positions row alone
    uv run benchmarks/run.py --only model                        # whole model vs HF (benchmarks/model_bench.py)
    uv run benchmarks/run.py --only tower --sides 32 --variants "HF float32 (sdpa),reference float32"

* Header: date, machine (CPU model, cores, load average before and after), library versions,
  BLAS libraries and thread counts.
* GEMM peaks: NumPy (OpenBLAS) float32/float64 and torch float32/bfloat16 matmul, GFLOP/s of the
  fastest run over the tower's Linear shapes with 4096 rows (qkv, MLP gate/up, MLP down).
* Preprocessing of 640x480, 2000x1500 and 4032x3024 images (a photo from data/photos resized
  with Pillow plus mild noise; max_pixels 12845056): ``reference.preprocess`` (the plain form) and
  ``reference.fast.preprocess`` (uint8 array in), ``torch_port.Qwen2_5_VLImageTransform``, HF's
  ``Qwen2VLImageProcessorPil`` and, when torchvision imports, HF's ``Qwen2VLImageProcessor`` (PIL
  image in). The implementations take turns for ``--reps`` rounds; in each round one warm-up call, then 5 timed calls back to back
  (a preprocessing loop's steady state). Median ms, ratio to HF's PIL processor, and whether
  ``pixel_values`` are bit-equal to it.
* The image transform where torchtune runs it (``benchmarks/dataloader.py``): 48 640x480 photos in a
  torch ``DataLoader`` with 2 workers (1 torch thread each), the port's transform and HF's processor
  of the same backend run by the workers; ms per image of the median epoch after a warm-up epoch,
  ratio to that HF processor. Rows marked ``[DataLoader x2]`` (each pixel_values handed back to the
  main process, 7 MB per image) and ``[DataLoader x2, no transfer]`` (the workers hand back the row
  count only: the transforms alone, two at a time).
* The full-size vision tower (3B preset, ``random_weights(seed=0)``) on a 448x448 image (1024
  patches) and a 1008x1008 image (5184 patches): reference float64 and float32, each in its plain
  form (``reference.vision_forward``) and its fast form (``reference.fast.vision_forward``), port
  float32 and bfloat16, HF float32 (sdpa). Each variant runs in its own subprocess, one warm-up then
  ``--reps`` timed runs per size (median reported). Model GFLOP/s use an analytic FLOP count
  (patch embed, qkv, attention scores and values per segment, proj, MLP, merger: 2 FLOPs per
  multiply-add; norms, rotary, softmax and activations not counted); the percentage is of the
  GEMM peak of the same run for the row's library and compute dtype (NumPy float32/float64 for
  the reference rows, torch float32 for HF and the float32 port, torch bfloat16 for the bfloat16
  port). Peak RSS is the process's VmHWM while that size runs: the high-water mark is reset
  (``/proc/self/clear_refs``) once the model is loaded and load-time copies are freed, so it
  counts the resident weights, the library itself and the forward's activations. Outputs are
  compared with the float64 reference (max |a - b| / max |b|).

* mRoPE positions: ``torch_port.qwen2_5_vl_rope_index`` vs HF's ``Qwen2_5_VLModel.get_rope_index``
  on a batch of 8 sequences of 8192 tokens with 4 images each (random grids, text between them,
  an all-ones attention mask; ``--quick``: 2 x 512 tokens, 2 images): median ms of ``max(reps, 5)``
  calls after a warm-up, ratio to HF, and whether position ids and deltas are equal to HF's.

Between implementations the run pauses briefly (BLAS and OpenMP worker threads keep spinning for
a while after their work and would steal the cores from the next one). Other processes on the
machine change every number: the load average before and after is printed for that reason.

The sections live in their own modules (``gemm_peaks.py``, ``preprocess_bench.py``, ``dataloader.py``,
``positions_bench.py``, ``tower_bench.py``, ``model_bench.py``), all measuring with ``measure.py``;
the targets are data in ``targets.py``. This file only composes them.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
from pathlib import Path

import measure
import targets
from dataloader import dataloader_section
from gemm_peaks import GEMM_SHAPES, QUICK_GEMM_SHAPES, gemm_line, gemm_peaks
from positions_bench import POSITIONS_LAYOUT, QUICK_POSITIONS_LAYOUT, positions_section, positions_table
from preprocess_bench import (PREPROCESS_SIZES, QUICK_PREPROCESS_SIZES, QUICK_VIDEO, VIDEO, preprocess_section,
                              preprocess_table, video_section)
from tower_bench import QUICK_TOWER_SIDES, TOWER_SIDES, VARIANTS, by_side, tower_config, tower_section, tower_table


def report(args, head, peaks, pre_rows, tower_rows, config, load_after, pos_rows=()) -> str:
    out = [f"## Benchmarks ({'quick smoke run: tiny sizes, numbers meaningless' if args.quick else 'full run'})", ""]
    out += measure.header_lines(head, load_after)
    out += [f"- timing: preprocessing: median of {args.reps} rounds x {1 if args.quick else 5} calls back to back, "
            f"each round after 1 warm-up call, implementations taking turns; tower: median of {args.reps} runs "
            "after 1 warm-up, each variant in its own process", "",
            gemm_line(peaks, QUICK_GEMM_SHAPES if args.quick else GEMM_SHAPES, max(args.reps, 5)), ""]
    if pre_rows:
        out += preprocess_table(pre_rows)
    if pos_rows:
        out += positions_table(pos_rows)
        if not args.quick:
            out += ["", *targets.render(targets.positions_checks(pos_rows))]
        out.append("")
    if tower_rows:
        out += tower_table(tower_rows, config, peaks, args.quick)
        if not args.quick:  # a quick run's numbers say nothing about the targets
            checks = targets.preprocess_checks(pre_rows) + targets.tower_checks(by_side(tower_rows))
            out += ["", "Targets (this run):", "", *targets.render(checks)]
    return "\n".join(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 run each: a smoke test of the script")
    parser.add_argument("--reps", type=int, default=None, help="timed runs per case (default 3; --quick: 1)")
    parser.add_argument("--only", choices=("preprocess", "tower", "positions", "model"), default=None,
                        help="run one section (model: the whole model vs HF, only on request: ~12 GB, tens of minutes)")
    parser.add_argument("--out", type=Path, default=None, help="also write the report to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # kept: tower_bench.py is the worker now
    parser.add_argument("--tmp", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--variants", default=None,
                        help="tower variants to run, comma-separated (default: all of " + ", ".join(VARIANTS) + ")")
    parser.add_argument("--sides", default=None,
                        help="tower sizes as patch-grid sides, comma-separated (default 32,72: 448x448 and 1008x1008)")
    args = parser.parse_args(argv)
    args.reps = args.reps or (1 if args.quick else 3)
    config = tower_config(args.quick)

    if args.worker:
        from tower_bench import worker

        worker(args.worker, args.tmp, [int(s) for s in args.sides.split(",")], args.reps, config)
        return

    variants = tuple(v.strip() for v in args.variants.split(",")) if args.variants else tuple(VARIANTS)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown tower variants {unknown}; known: {list(VARIANTS)}")
    head = measure.header()
    settle = 0.0 if args.quick else measure.SETTLE_S
    peaks = gemm_peaks(QUICK_GEMM_SHAPES if args.quick else GEMM_SHAPES, max(args.reps, 5), settle)
    print(f"[gemm] {', '.join(f'{k} {v:.0f}' for k, v in peaks.items())} GFLOP/s", file=sys.stderr, flush=True)
    pre_rows, pos_rows, tower_rows = [], [], []
    if args.only in (None, "preprocess"):
        pre_rows = preprocess_section(QUICK_PREPROCESS_SIZES if args.quick else PREPROCESS_SIZES,
                                      args.reps, 1 if args.quick else 5, settle)
        pre_rows += video_section(*(QUICK_VIDEO if args.quick else VIDEO), args.reps, settle)
        for transfer in (True, False):  # with pixel_values handed back, and the transforms alone
            pre_rows += dataloader_section(*QUICK_PREPROCESS_SIZES[0] if args.quick else PREPROCESS_SIZES[0],
                                           images=8 if args.quick else 48, rounds=args.reps, workers=2,
                                           transfer=transfer)
        print("[preprocess] done", file=sys.stderr, flush=True)
    if args.only in (None, "positions"):
        pos_rows = positions_section(QUICK_POSITIONS_LAYOUT if args.quick else POSITIONS_LAYOUT,
                                     max(args.reps, 3) if args.quick else max(args.reps, 5), settle)
        print("[positions] done", file=sys.stderr, flush=True)
    if args.only in (None, "tower"):
        gc.collect()
        sides = [int(s) for s in args.sides.split(",")] if args.sides else (
            QUICK_TOWER_SIDES if args.quick else TOWER_SIDES)
        with tempfile.TemporaryDirectory(prefix="qwen_vision_bench_") as tmp:
            tower_rows = tower_section(config, sides, args.reps, Path(tmp), args.quick, variants)
    model_text = ""
    if args.only == "model":  # not in the default run: see benchmarks/model_bench.py
        from model_bench import model_report, model_section

        with tempfile.TemporaryDirectory(prefix="qwen_model_bench_") as tmp:
            info, model_rows = model_section(Path(tmp), args.reps, args.quick, settle)
        model_text = "\n" + model_report(info, model_rows, args.quick, args.reps)
    text = report(args, head, peaks, pre_rows, tower_rows, config, os.getloadavg()[0], pos_rows) + model_text
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
