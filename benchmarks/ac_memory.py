"""Peak memory of one training step with and without activation checkpointing (the port vs HF).

The model of ``benchmarks/model_bench.py`` (2 decoder layers of the 3B's width + the full 3B vision
tower, HF's random init, seed 0), bfloat16 as the shipped configs train, on CPU. Two prompts: 15 text
tokens, one image, 15 answer tokens (labels on the answer only): a 448x448 image (grid 1x32x32, 256
visual tokens) and a 1120x896 one (grid 1x64x80, 1280 visual tokens, the configs' ``max_pixels``).

Configurations (one training step each: forward + ``CEWithChunkedOutputLoss`` backward for the port,
``labels=`` loss backward for HF; gradients start as None):

* ``port off``: no checkpointing;
* ``port decoder``: torchtune's ``set_activation_checkpointing(model, auto_wrap_policy=
  {TransformerSelfAttentionLayer})`` as the recipes call it, with ``vision_activation_checkpointing =
  False`` (what the recipes got before the tower followed the decoder);
* ``port decoder + vision``: the same call, the tower following the decoder (the default now);
* ``HF gradient_checkpointing_enable()`` (and ``HF off``): the same weights in
  ``Qwen2_5_VLForConditionalGeneration`` (sdpa), with HF's checkpointing of the text layers and vision blocks.

Each finished row is appended to ``<tmp>/results.jsonl``; a rerun with the same ``--tmp`` keeps those
rows and runs only the missing ones (``--configs`` picks configurations by their names).

Every configuration runs in its own subprocess, one at a time; peak RSS is VmHWM, reset after the
weights are loaded (so it is the resident weights + the step's activations and gradients + the
libraries). A watchdog stops a worker when the machine's MemAvailable falls below ``--min-free-gib``
(the row then says so instead of a number). Usage::

    uv run python benchmarks/ac_memory.py [--tmp DIR] [--only 448|1280]

prints a markdown table (peak RSS, the step's own part of it, the step's loss; no timing is asserted).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import measure
import model_bench as mb

IMAGES = {"448": (448, 448), "1280": (1120, 896)}  # (width, height): 256 and 1280 visual tokens
CONFIGS = ("port off", "port decoder + vision", "HF gradient_checkpointing_enable()", "port decoder", "HF off")


def prepare(tmp: Path) -> None:
    """The HF folder (float32, as model_bench writes it) and one inputs file per image."""
    import numpy as np
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    import reference

    if not (tmp / "hf" / "config.json").is_file():
        config = mb.config_dict(quick=False)
        torch.manual_seed(0)
        Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**config)).float().save_pretrained(tmp / "hf")
        (tmp / "config.json").write_text(json.dumps(config))
        gc.collect()
    g = torch.Generator().manual_seed(0)
    before = torch.randint(0, 151000, (mb.TEXT_BEFORE,), generator=g).tolist()
    after = torch.randint(0, 151000, (mb.TEXT_AFTER,), generator=g).tolist()
    for name, (w, h) in IMAGES.items():
        pre = reference.preprocess(measure.make_image(w, h), min_pixels=1, max_pixels=measure.MAX_PIXELS)
        grid = pre["image_grid_thw"]
        n_tokens = int(grid.prod()) // 4
        prompt = before + [mb.VISION_START] + [mb.IMAGE_PAD] * n_tokens + [mb.VISION_END]
        np.savez(tmp / f"inputs_{name}.npz", tokens=np.array([prompt + after]),
                 labels=np.array([[-100] * len(prompt) + after]), grid=grid, pixel_values=pre["pixel_values"])


def worker(config: str, image: str, tmp: Path) -> None:
    """One training step of ``config`` on ``image``; prints one ``RESULT {json}`` line."""
    import numpy as np
    import torch

    data = np.load(tmp / f"inputs_{image}.npz")
    tokens, labels = torch.from_numpy(data["tokens"]), torch.from_numpy(data["labels"])
    grid, pv = torch.from_numpy(data["grid"]).long(), torch.from_numpy(data["pixel_values"])
    types = (tokens == mb.IMAGE_PAD).long()
    if config.startswith("HF"):
        from transformers import Qwen2_5_VLForConditionalGeneration

        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp / "hf", dtype=torch.bfloat16,
                                                                   attn_implementation="sdpa")
        if config != "HF off":
            model.gradient_checkpointing_enable()

        def step():
            loss = model(input_ids=tokens, attention_mask=torch.ones_like(tokens), mm_token_type_ids=types,
                         pixel_values=pv, image_grid_thw=grid, labels=labels).loss
            loss.backward()
            return loss
    else:
        from torchtune import modules, training
        from torchtune.modules.loss import CEWithChunkedOutputLoss

        import torch_port

        state = mb.state_dict(tmp / "hf")
        model = torch_port.load_hf_model(json.loads((tmp / "config.json").read_text()), state, dtype=torch.bfloat16)
        del state
        if config != "port off":
            training.set_activation_checkpointing(model, auto_wrap_policy={modules.TransformerSelfAttentionLayer})
            if config == "port decoder":
                model.vision_activation_checkpointing = False
        loss_fn = CEWithChunkedOutputLoss(num_output_chunks=mb.CHUNKS)
        model.set_num_output_chunks(mb.CHUNKS)
        shifted = torch.hstack((labels[..., 1:], torch.full_like(labels[..., :1], -100)))
        pos = torch_port.qwen2_5_vl_rope_index(tokens, types, grid)[0]

        def step():
            logits = model(tokens, encoder_input={"image": {"pixel_values": pv, "grid_thw": grid}}, input_pos=pos)
            loss = loss_fn(logits, shifted)
            loss.backward()
            return loss
    model.train()
    gc.collect()
    rss_before = measure.proc_status_kb("VmRSS")
    reset = measure.reset_peak_rss()
    t0 = time.perf_counter()
    loss = step()
    seconds = time.perf_counter() - t0
    measure.emit_result({"config": config, "image": image, "loss": float(loss), "seconds": seconds,
                         "peak_rss_kb": measure.peak_rss_kb(), "rss_before_kb": rss_before,
                         "peak_reset": reset, "visual_tokens": int(grid.prod()) // 4})


def _mem_available_kb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def run_one(config: str, image: str, tmp: Path, min_free_gib: float) -> dict:
    """The worker in a subprocess, stopped if the machine runs short of memory."""
    cmd = measure.worker_command("ac_memory.py", "--worker", config, image, "--tmp", tmp)
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, cwd=measure.ROOT)
        stopped = False
        while proc.poll() is None:
            if _mem_available_kb() < min_free_gib * 2**20:
                proc.kill()
                stopped = True
            time.sleep(0.2)
        out.seek(0)
        text = out.read()
    if stopped:
        return {"config": config, "image": image, "stopped": True}
    return measure.checked_results(text, proc.returncode, f"{config} / {image}")[0]


def table(rows: list[dict]) -> str:
    """Peak RSS, what the step added to the loaded model (peak - RSS before the step), the ratio to the
    port without checkpointing on the same image, the loss (step times vary with the machine's load and
    are left to the JSON lines)."""
    out = ["| image | configuration | peak RSS GiB | step's own GiB | x port off | loss |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("stopped"):
            out.append(f"| {r['image']} | {r['config']} | stopped: machine short of memory | | | |")
            continue
        off = next((o for o in rows if o["image"] == r["image"] and o["config"] == "port off"
                    and not o.get("stopped")), None)
        ratio = f"{r['peak_rss_kb'] / off['peak_rss_kb']:.2f}" if off else "-"
        out.append(f"| {IMAGES[r['image']][0]}x{IMAGES[r['image']][1]} ({r['visual_tokens']} visual tokens) | "
                   f"{r['config']} | {r['peak_rss_kb'] / 2**20:.2f} | "
                   f"{(r['peak_rss_kb'] - r['rss_before_kb']) / 2**20:.2f} | {ratio} | {r['loss']:.5f} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", nargs=2, metavar=("CONFIG", "IMAGE"))
    parser.add_argument("--tmp", type=Path)
    parser.add_argument("--only", choices=sorted(IMAGES))
    parser.add_argument("--min-free-gib", type=float, default=1.5)
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker, args.tmp)
        return
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.tmp or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        if not (tmp / "inputs_448.npz").is_file():
            prepare(tmp)
        done_file = tmp / "results.jsonl"
        done = [json.loads(line) for line in done_file.read_text().splitlines()] if done_file.is_file() else []
        rows = []
        for image in [args.only] if args.only else list(IMAGES):
            for config in args.configs:
                row = next((r for r in done if (r["config"], r["image"]) == (config, image)), None)
                if row is None:
                    t0 = time.perf_counter()
                    row = run_one(config, image, tmp, args.min_free_gib)
                    with open(done_file, "a") as f:
                        f.write(json.dumps(row) + "\n")
                    print(f"[ac_memory] {image} {config}: {time.perf_counter() - t0:.0f} s {json.dumps(row)}",
                          file=sys.stderr, flush=True)
                rows.append(row)
        print(table(rows))


if __name__ == "__main__":
    main()
