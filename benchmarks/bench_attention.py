"""Time the vision attention on CPU: fused qkv vs separate q/k/v, and the port vs HF.

Released sizes (hidden 1280, 16 heads, head_dim 80), 1024-patch images. Each variant is the whole
attention module of one block (projections + 2D rotary + segment attention + output projection),
all holding the same weights (outputs are checked to agree):

* ``port fused``    - ``Qwen2_5_VisionAttention`` (one ``qkv_proj`` GEMM), the port's choice;
* ``port separate`` - the same with torchtune-style ``q_proj``/``k_proj``/``v_proj`` (three GEMMs);
* ``HF``            - ``Qwen2_5_VLVisionAttention`` with sdpa (one SDPA call per segment).

Results (H200 machine; CPU runs limited to 2 threads) are in ``benchmarks/attention.md``.

Cases: window blocks and full-attention blocks, on a 32x32 patch grid (16 full 64-patch windows)
and a 28x36 patch grid (1008 patches: 6 full windows plus edge windows of 3 other sizes).

    uv run python benchmarks/bench_attention.py [--reps 10] [--threads N] [--device cpu|cuda]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from torch_port._encoder import Qwen2_5_VisionAttention, VisionLayout, segment_attention
from torch_port._positional_embeddings import Qwen2_5_VisionRotaryEmbedding, apply_rotary_emb

HIDDEN, HEADS = 1280, 16
HEAD_DIM = HIDDEN // HEADS


class SeparateQKVAttention(Qwen2_5_VisionAttention):
    """The port's attention with three projections instead of the fused one (benchmark only)."""

    def __init__(self, fused: Qwen2_5_VisionAttention) -> None:
        super().__init__(num_heads=HEADS, head_dim=HEAD_DIM, qkv_proj=nn.Identity(), output_proj=fused.output_proj)
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(HIDDEN, HIDDEN) for _ in range(3))
        with torch.no_grad():
            for i, proj in enumerate((self.q_proj, self.k_proj, self.v_proj)):
                proj.weight.copy_(fused.qkv_proj.weight[i * HIDDEN : (i + 1) * HIDDEN])
                proj.bias.copy_(fused.qkv_proj.bias[i * HIDDEN : (i + 1) * HIDDEN])

    def forward(self, x, rope_cos, rope_sin, segments):
        s = x.shape[0]
        q = apply_rotary_emb(self.q_proj(x).view(s, HEADS, HEAD_DIM), rope_cos, rope_sin)
        k = apply_rotary_emb(self.k_proj(x).view(s, HEADS, HEAD_DIM), rope_cos, rope_sin)
        v = self.v_proj(x).view(s, HEADS, HEAD_DIM)
        out = segment_attention(q, k, v, segments, scale=self.scale)
        return self.output_proj(out.reshape(s, HIDDEN))


def hf_attention(fused: Qwen2_5_VisionAttention) -> nn.Module:
    from transformers import Qwen2_5_VLVisionConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLVisionAttention

    config = Qwen2_5_VLVisionConfig(hidden_size=HIDDEN, num_heads=HEADS)
    config._attn_implementation = "sdpa"
    attn = Qwen2_5_VLVisionAttention(config)
    with torch.no_grad():
        attn.qkv.weight.copy_(fused.qkv_proj.weight)
        attn.qkv.bias.copy_(fused.qkv_proj.bias)
        attn.proj.weight.copy_(fused.output_proj.weight)
        attn.proj.bias.copy_(fused.output_proj.bias)
    return attn


def time_interleaved(fns: dict, reps: int, sync) -> dict:
    """Median and min wall time (ms) of each callable, run round-robin so load changes hit all alike."""
    for fn in fns.values():
        fn(), fn()
    times = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(t) * 1e3, min(t) * 1e3) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="cpu (the default, what the choice is about) or cuda")
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    fused = Qwen2_5_VisionAttention(
        num_heads=HEADS,
        head_dim=HEAD_DIM,
        qkv_proj=nn.Linear(HIDDEN, 3 * HIDDEN),
        output_proj=nn.Linear(HIDDEN, HIDDEN),
    )
    separate = SeparateQKVAttention(fused)
    hf = hf_attention(fused)
    rope = Qwen2_5_VisionRotaryEmbedding(HEAD_DIM)
    for m in (fused, separate, hf):
        m.to(device)

    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, hidden {HIDDEN}, {HEADS} heads")
    print(f"ms per call, median (min) of {args.reps} interleaved runs")
    head = " ".join(f"{h:>17}" for h in ("port fused qkv", "port sep. q/k/v", "HF sdpa"))
    print(f"{'grid':>6} {'blocks':>7} {'dtype':>9} | {head}")
    for grid in ([1, 32, 32], [1, 28, 36]):
        layout = VisionLayout.from_grid(torch.tensor([grid]), spatial_merge_size=2, window_units=4).to(device)
        cos, sin = rope(layout.position_ids)
        cos, sin = cos[layout.patch_order], sin[layout.patch_order]
        for kind, segments, cu in (
            ("window", layout.window_segments, layout.cu_window_seqlens),
            ("full", layout.full_segments, layout.cu_seqlens),
        ):
            for dtype in (torch.float32, torch.bfloat16):
                for m in (fused, separate, hf):
                    m.to(dtype)
                x = torch.randn(layout.num_patches, HIDDEN, dtype=dtype, device=device)
                with torch.inference_mode():
                    a = fused(x, cos, sin, segments)
                    b = separate(x, cos, sin, segments)
                    c = hf(x, cu_seqlens=cu, position_embeddings=(cos, sin))
                    tol = 1e-4 if dtype == torch.float32 else 5e-2
                    for name, y in (("separate", b), ("HF", c)):
                        err = ((y.float() - a.float()).abs().max() / a.float().abs().max()).item()
                        assert err < tol, f"{name} disagrees with fused: {err}"
                    t = time_interleaved(
                        {
                            "fused": lambda: fused(x, cos, sin, segments),
                            "separate": lambda: separate(x, cos, sin, segments),
                            "hf": lambda: hf(x, cu_seqlens=cu, position_embeddings=(cos, sin)),
                        },
                        args.reps,
                        sync,
                    )
                dt = str(dtype).removeprefix("torch.")
                g = f"{grid[1]}x{grid[2]}"
                cells = " ".join(f"{t[k][0]:>8.1f} ({t[k][1]:>6.1f})" for k in ("fused", "separate", "hf"))
                print(f"{g:>6} {kind:>7} {dt:>9} | {cells}")


if __name__ == "__main__":
    main()
