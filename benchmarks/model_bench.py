"""Whole-model benchmark: the fused torchtune model vs HF ``Qwen2_5_VLForConditionalGeneration``.

``benchmarks/run.py --only model`` runs it (see that file for the common header). One mid-size
config: 2 decoder layers of the 3B's width (hidden 2048, 16 heads, 2 kv heads, MLP 11008, vocab
151936, tied embeddings, mrope [16, 24, 24]) with the full 3B vision tower (depth 32, hidden 1280,
16 heads, MLP 3420, full attention in blocks 7/15/23/31), HF's random init (seed 0), saved once with
``save_pretrained`` in float32. The prompt: 15 text tokens, one 448x448 image (grid 1x32x32 ->
256 image tokens) in its vision run, 15 text tokens (288 tokens).

Tasks, each timed ``reps`` times after one warm-up call:

* ``forward``: logits of the prompt in eval mode under ``inference_mode``. Ours includes
  ``qwen2_5_vl_rope_index`` (HF computes its positions inside its forward).
* ``train step``: forward + backward in train mode on labels that mask the prompt up to the
  image's end (the last 15 tokens are the answer). Ours is the torchtune recipe's step
  (``set_num_output_chunks(8)``, labels shifted left, ``CEWithChunkedOutputLoss``); HF's is
  ``model(..., labels=labels).loss.backward()``. Gradients are set to None between steps, as
  ``zero_grad(set_to_none=True)`` does.

HF runs with ``attn_implementation="sdpa"`` (its default) in both the text model and the vision
tower. Every (implementation, dtype, task) runs in its own subprocess, one at a time, so peak RSS
(VmHWM, reset once the weights are loaded and load-time copies freed) is that run's own: the
resident weights, the libraries and the task's activations (and gradients). Outputs are compared
across implementations: forward logits (max |a - b| / max |b|) and the training loss.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

import measure
import targets

ROOT = measure.ROOT

IMPLS = ("HF (sdpa)", "port")
DTYPES = ("float32", "bfloat16")
TASKS = ("forward", "train step")
CHUNKS = 8  # the recipe's default number of output chunks
TEXT_BEFORE = TEXT_AFTER = 15
VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = 151652, 151653, 151655, 151656


def config_dict(quick: bool) -> dict:
    """The benchmark's HF config (released ``config.json`` layout); ``quick``: a tiny one."""
    if quick:
        text = dict(vocab_size=151936, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096)
        vision = dict(depth=2, hidden_size=64, num_heads=4, intermediate_size=96, out_hidden_size=64,
                      fullatt_block_indexes=[1])
        mrope = [2, 3, 3]
    else:  # the 3B's text width with 2 layers, the 3B's vision tower
        text = dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=2,
                    num_attention_heads=16, num_key_value_heads=2, max_position_embeddings=128000)
        vision = dict(depth=32, hidden_size=1280, num_heads=16, intermediate_size=3420, out_hidden_size=2048,
                      fullatt_block_indexes=[7, 15, 23, 31])
        mrope = [16, 24, 24]
    return {
        "model_type": "qwen2_5_vl",
        **text,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1e6,
        "rope_scaling": {"type": "mrope", "mrope_section": mrope},
        "tie_word_embeddings": True,
        "hidden_act": "silu",
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "vision_start_token_id": VISION_START,
        "vision_end_token_id": VISION_END,
        "image_token_id": IMAGE_PAD,
        "video_token_id": VIDEO_PAD,
        "vision_config": {**vision, "patch_size": 14, "temporal_patch_size": 2, "spatial_merge_size": 2,
                          "in_channels": 3, "hidden_act": "silu", "window_size": 112, "tokens_per_second": 2},
    }


def prepare(tmp: Path, quick: bool) -> dict:
    """Write the HF folder (random weights, float32) and the inputs to ``tmp``; return a summary."""
    import numpy as np
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    import reference

    t0 = time.perf_counter()
    config = config_dict(quick)
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**config)).float()
    model.save_pretrained(tmp / "hf", safe_serialization=True)
    n_params = sum(p.numel() for p in model.parameters())
    del model
    gc.collect()
    (tmp / "config.json").write_text(json.dumps(config))

    side = 8 if quick else 32  # patches a side: 112x112 or 448x448 pixels
    pre = reference.preprocess(measure.make_image(side * 14, side * 14), min_pixels=1, max_pixels=measure.MAX_PIXELS)
    grid = torch.from_numpy(pre["image_grid_thw"]).long()
    assert grid.tolist() == [[1, side, side]], grid
    g = torch.Generator().manual_seed(0)
    before = torch.randint(0, 151000, (TEXT_BEFORE,), generator=g).tolist()
    after = torch.randint(0, 151000, (TEXT_AFTER,), generator=g).tolist()
    prompt = before + [VISION_START] + [IMAGE_PAD] * (side * side // 4) + [VISION_END]
    tokens = torch.tensor([prompt + after])
    labels = torch.tensor([[-100] * len(prompt) + after])
    np.savez(tmp / "inputs.npz", tokens=tokens.numpy(), labels=labels.numpy(), grid=grid.numpy(),
             pixel_values=pre["pixel_values"])
    print(f"[model] HF folder ({n_params / 1e9:.2f} B parameters) and inputs written in "
          f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return {"params": n_params, "tokens": int(tokens.shape[1]), "image_tokens": side * side // 4,
            "image": f"{side * 14}x{side * 14}"}


# ----------------------------------------------------------------------------- worker


def state_dict(folder: Path) -> dict:
    from safetensors.torch import load_file

    state = {}
    for f in sorted(folder.glob("*.safetensors")):
        state.update(load_file(str(f)))
    return state


def load(impl: str, dtype, tmp: Path, device="cpu"):
    """The model on ``device`` in ``dtype`` and a ``step(train) -> tensor`` closure over the inputs."""
    import numpy as np
    import torch

    data = np.load(tmp / "inputs.npz")
    tokens, labels = torch.from_numpy(data["tokens"]).to(device), torch.from_numpy(data["labels"]).to(device)
    grid = torch.from_numpy(data["grid"]).to(device)
    pv = torch.from_numpy(data["pixel_values"]).to(device)
    types = (tokens == IMAGE_PAD).long()
    if impl.startswith("HF"):
        from transformers import Qwen2_5_VLForConditionalGeneration

        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp / "hf", dtype=dtype,
                                                                   attn_implementation="sdpa").to(device)
        attention_mask = torch.ones_like(tokens)

        def step(train: bool):
            kwargs = dict(input_ids=tokens, attention_mask=attention_mask, mm_token_type_ids=types,
                          pixel_values=pv, image_grid_thw=grid)
            if not train:
                return model(**kwargs).logits
            loss = model(**kwargs, labels=labels).loss
            loss.backward()
            return loss
    else:
        from torchtune.modules.loss import CEWithChunkedOutputLoss

        import torch_port

        config = json.loads((tmp / "config.json").read_text())
        state = state_dict(tmp / "hf")
        model = torch_port.load_hf_model(config, state, dtype=dtype, device=device)
        del state
        loss_fn = CEWithChunkedOutputLoss(num_output_chunks=CHUNKS)
        shifted = torch.hstack((labels[..., 1:], torch.full_like(labels[..., :1], -100)))

        def step(train: bool):
            pos = torch_port.qwen2_5_vl_rope_index(tokens, types, grid)[0]
            encoder_input = {"image": {"pixel_values": pv, "grid_thw": grid}}
            if not train:
                return model(tokens, encoder_input=encoder_input, input_pos=pos)
            loss = loss_fn(model(tokens, encoder_input=encoder_input, input_pos=pos), shifted)
            loss.backward()
            return loss

        step.set_chunks = model.set_num_output_chunks
    return model, step


def worker(impl: str, dtype_name: str, task: str, tmp: Path, reps: int) -> None:
    """Run one (implementation, dtype, task); print one ``RESULT {json}`` line."""
    import numpy as np
    import torch

    dtype = getattr(torch, dtype_name)
    model, step = load(impl, dtype, tmp)
    train = task == "train step"
    model.train(train)
    if train and hasattr(step, "set_chunks"):
        step.set_chunks(CHUNKS)
    gc.collect()
    rss_before = measure.proc_status_kb("VmRSS")
    reset = measure.reset_peak_rss()
    times = []
    out = None
    for i in range(reps + 1):  # the first call is the warm-up
        if train:
            for p in model.parameters():
                p.grad = None
        t0 = time.perf_counter()
        if train:
            out = step(True)
        else:
            with torch.inference_mode():
                out = step(False)
        if i:
            times.append(time.perf_counter() - t0)
    peak = measure.peak_rss_kb()
    tag = f"{impl}_{dtype_name}_{task}".replace(" ", "_").replace("(", "").replace(")", "")
    if train:
        value = {"loss": float(out)}
    else:
        np.save(tmp / f"logits_{tag}.npy", out.float().numpy())
        value = {"logits": f"logits_{tag}.npy"}
    measure.emit_result({"impl": impl, "dtype": dtype_name, "task": task, "times": times, "peak_rss_kb": peak,
                         "rss_before_kb": rss_before, "peak_reset": reset, "load_after": os.getloadavg()[0], **value})


# ----------------------------------------------------------------------------- section


def model_section(tmp: Path, reps: int, quick: bool, settle: float) -> tuple[dict, list[dict]]:
    """Run every (dtype, task, implementation) in its own process; rows with ratios to HF."""
    import numpy as np

    from goldenlib.tolerances import rel_error

    info = prepare(tmp, quick)
    results = []
    for dtype in DTYPES:
        for task in TASKS:
            for impl in IMPLS:
                time.sleep(settle)
                t0 = time.perf_counter()
                cmd = measure.worker_command("model_bench.py", impl, dtype, task, tmp, reps)
                results += measure.run_worker(cmd, f"model worker {impl} {dtype} {task}")
                print(f"[model] {impl} {dtype} {task}: {time.perf_counter() - t0:.0f} s", file=sys.stderr,
                      flush=True)
    by_key = {(r["impl"], r["dtype"], r["task"]): r for r in results}
    for r in results:
        r["median_s"] = statistics.median(r["times"])
        hf = by_key[(IMPLS[0], r["dtype"], r["task"])]
        r["ratio"] = r["median_s"] / hf["median_s"]
        r["rss_ratio"] = r["peak_rss_kb"] / hf["peak_rss_kb"]
        if r["task"] == "forward":
            r["vs_hf"] = rel_error(np.load(tmp / r["logits"]), np.load(tmp / hf["logits"]))
            r["vs_hf_text"] = f"logits {r['vs_hf']:.1e}"
        else:
            r["vs_hf"] = abs(r["loss"] - hf["loss"]) / abs(hf["loss"])
            r["vs_hf_text"] = f"loss {r['loss']:.5f} ({r['vs_hf']:.1e})"
    return info, results


def model_report(info: dict, rows: list[dict], quick: bool, reps: int) -> str:
    out = []
    w = out.append
    name = "tiny smoke config" if quick else ("2 decoder layers of the 3B (hidden 2048, 16/2 heads, MLP 11008, "
                                              "vocab 151936, tied) + the full 3B vision tower")
    w(f"### Whole model, {name}: {info['params'] / 1e9:.2f} B parameters, HF random init")
    w("")
    w(f"Prompt: {info['tokens']} tokens ({info['image_tokens']} image tokens of one {info['image']} image). "
      f"Median of {reps} runs after 1 warm-up, each (implementation, dtype, task) in its own process. "
      "HF: `Qwen2_5_VLForConditionalGeneration`, attn_implementation \"sdpa\".")
    w("")
    w("| dtype | task | implementation | ms (median) | ms (min) | x HF | peak RSS GiB | x HF RSS | load | vs HF |")
    w("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        w(f"| {r['dtype']} | {r['task']} | {r['impl']} | {r['median_s'] * 1e3:.0f} | {min(r['times']) * 1e3:.0f} | "
          f"{r['ratio']:.2f} | {r['peak_rss_kb'] / 2**20:.2f} | {r['rss_ratio']:.2f} | {r['load_after']:.1f} | "
          f"{r['vs_hf_text']} |")
    if not quick:
        out += ["", "Targets (this run):", "", *targets.render(targets.model_checks(rows))]
    return "\n".join(out)


if __name__ == "__main__":  # worker: IMPL DTYPE TASK TMP REPS
    import warnings

    warnings.simplefilter("ignore")
    worker(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5]))
