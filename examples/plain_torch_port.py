"""A Qwen2.5-VL vision port written from docs/spec.md in plain torch + Pillow (none of this
project's code), that checks itself against a golden by writing a stage dump.

    uv run python examples/plain_torch_port.py --out dump.safetensors
    uv run parity_report.py --case photo_astronaut --dump dump.safetensors        # exit 0

    uv run python examples/plain_torch_port.py --mistake window-order --out bad.safetensors
    uv run parity_report.py --case photo_astronaut --dump bad.safetensors         # exit 1, names the stage
    uv run python examples/plain_torch_port.py --mistake f16-patch-embed,tanh-gelu --out two.safetensors

It reads the case's input image and the tower's weights straight from the golden files (any
safetensors reader would do), runs the image processor and the tower, and writes every stage
under the golden's names. ``--mistake`` plants one of the errors of docs/spec.md's table "where
ports go wrong", or what real ports were found doing (several: comma-separated; docs/porting.md
shows the report for each); ``--dtype bfloat16`` runs the tower in bfloat16 and writes it so
(judged with the bfloat16 tolerances).
"""

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
MISTAKES = ("none", "window-order", "merge-order", "float-resize", "bf16", "tanh-gelu", "eps-1e-5", "f16-patch-embed",
            "letterbox", "repeated-bounds")
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
PATCH, MERGE, TEMPORAL = 14, 2, 2


# ------------------------------------------------------------------ reading the golden files


def read_case_input(golden, case):
    """The case's input image (uint8 HWC) and its processor settings (min/max pixels)."""
    with safe_open(str(golden / f"{case}.safetensors"), framework="np") as f:
        params = json.loads(f.metadata().get("params", "{}"))
        return f.get_tensor("input"), params


def read_weights(golden, tower):
    """HF vision state dict (no prefix) and its config, from weights_<tower>.safetensors."""
    with safe_open(str(golden / f"weights_{tower}.safetensors"), framework="pt") as f:
        config = json.loads(f.metadata()["config"])
        return {k: f.get_tensor(k) for k in f.keys()}, config


# ------------------------------------------------------------------ image processor


def smart_resize(h, w, min_pixels, max_pixels, factor=PATCH * MERGE):
    hb, wb = round(h / factor) * factor, round(w / factor) * factor  # Python round: half to even
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb = max(factor, math.floor(h / beta / factor) * factor)
        wb = max(factor, math.floor(w / beta / factor) * factor)
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb, wb = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return hb, wb


def patchify(image, merge_order=True):
    """[3, H, W] float32 -> [H/14 * W/14, 1176]: rows in 2x2 merge-block order (or raster order)."""
    c, h, w = image.shape
    gh, gw = h // PATCH, w // PATCH
    if merge_order:
        x = image.reshape(c, gh // MERGE, MERGE, PATCH, gw // MERGE, MERGE, PATCH).permute(1, 4, 2, 5, 0, 3, 6)
    else:  # planted mistake: patches row by row
        x = image.reshape(c, gh, PATCH, gw, PATCH).permute(1, 3, 0, 2, 4)
    x = x.unsqueeze(-3).expand(*x.shape[:-2], TEMPORAL, PATCH, PATCH)  # the frame repeated in time
    return x.reshape(gh * gw, c * TEMPORAL * PATCH * PATCH), torch.tensor([[1, gh, gw]])


def preprocess(image, params, mistake="none"):
    """The PIL-backend image processor: (stages, pixel_values, image_grid_thw)."""
    h, w = image.shape[:2]
    th, tw = smart_resize(h, w, params.get("min_pixels", 3136), params.get("max_pixels", 12845056))
    if "letterbox" in mistake:  # planted mistake (llama.cpp's): keep the aspect, pad the rest with black
        scale = min(th / h, tw / w)
        ih, iw = round(h * scale), round(w * scale)
        inner = np.array(Image.fromarray(image).resize((iw, ih), Image.BICUBIC))
        canvas = np.zeros((th, tw, 3), np.uint8)
        top, left = (th - ih) // 2, (tw - iw) // 2
        canvas[top:top + ih, left:left + iw] = inner
        resized = torch.from_numpy(canvas)
        rescaled = (resized.permute(2, 0, 1).double() * (1 / 255)).float()
    elif "float-resize" in mistake:  # planted mistake: resize in float, no clamp, no rounding
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
        rescaled = F.interpolate(x, size=(th, tw), mode="bicubic", antialias=True, align_corners=False)[0]
        resized = (rescaled * 255).permute(1, 2, 0)
    else:  # Pillow's BICUBIC on the uint8 image, as HF's PIL processor
        resized = torch.from_numpy(np.array(Image.fromarray(image).resize((tw, th), Image.BICUBIC)))  # a writable copy
        rescaled = (resized.permute(2, 0, 1).double() * (1 / 255)).float()
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    normalized = (rescaled - mean) / std
    pixel_values, grid = patchify(normalized, merge_order="merge-order" not in mistake)
    stages = {"resized": resized, "rescaled": rescaled, "normalized": normalized, "pixel_values": pixel_values,
              "image_grid_thw": grid}
    return stages, pixel_values, grid


# ------------------------------------------------------------------ the tower


def rms_norm(x, weight, eps=1e-6):
    variance = x.float().pow(2).mean(-1, keepdim=True)
    return weight * (x.float() * torch.rsqrt(variance + eps)).to(x.dtype)


def rotary_tables(gh, gw, head_dim, theta):
    """cos, sin [S, head_dim] in float32, rows in merge-block order (each patch's row h, column w)."""
    hpos = torch.arange(gh)[:, None].expand(gh, gw)
    wpos = torch.arange(gw)[None, :].expand(gh, gw)
    order = lambda p: p.reshape(gh // MERGE, MERGE, gw // MERGE, MERGE).permute(0, 2, 1, 3).flatten()  # noqa: E731
    half = head_dim // 2
    inv_freq = 1.0 / theta ** (torch.arange(0, half, 2, dtype=torch.float32) / half)
    angle = torch.cat([order(hpos)[:, None] * inv_freq, order(wpos)[:, None] * inv_freq], dim=-1)
    angle = torch.cat([angle, angle], dim=-1)
    return angle.cos(), angle.sin()


def windows(gh, gw, window_size, keep_empty=False):
    """window_index (merged tokens window by window, row-major in each) and cu_window_seqlens.
    ``keep_empty``: also the empty windows of HF's padding to whole windows (repeated bounds)."""
    mh, mw, side = gh // MERGE, gw // MERGE, window_size // MERGE // PATCH
    index, cu = [], [0]
    for r0 in range(0, mh + (side if keep_empty else 0), side):
        for c0 in range(0, mw + (side if keep_empty else 0), side):
            tokens = [r * mw + c for r in range(r0, min(r0 + side, mh)) for c in range(c0, min(c0 + side, mw))]
            index += tokens
            cu.append(cu[-1] + len(tokens) * MERGE * MERGE)
    return torch.tensor(index), torch.tensor(cu)


def rotate(x, cos, sin):  # x [S, heads, d]; in float32 as HF does
    x1, x2 = x.float().chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x.float() * cos[:, None] + rotated * sin[:, None]).to(x.dtype)


def attention(x, cos, sin, cu, w, prefix, heads):
    s, hidden = x.shape
    qkv = F.linear(x, w[f"{prefix}.qkv.weight"], w[f"{prefix}.qkv.bias"]).reshape(s, 3, heads, hidden // heads)
    q, k, v = rotate(qkv[:, 0], cos, sin), rotate(qkv[:, 1], cos, sin), qkv[:, 2]
    out = torch.empty_like(q)
    for a, b in zip(cu[:-1].tolist(), cu[1:].tolist()):  # attention never crosses a segment bound
        scores = torch.einsum("qhd,khd->hqk", q[a:b], k[a:b]) / math.sqrt(hidden // heads)
        out[a:b] = torch.einsum("hqk,khd->qhd", scores.float().softmax(-1).to(v.dtype), v[a:b])
    return F.linear(out.reshape(s, hidden), w[f"{prefix}.proj.weight"], w[f"{prefix}.proj.bias"])


def tower(pixel_values, grid, w, config, mistake="none"):
    """The vision tower; every stage recorded in ORIGINAL row order under the golden's names."""
    _, gh, gw = grid[0].tolist()
    dtype = w["patch_embed.proj.weight"].dtype
    heads, depth = config["num_heads"], config["depth"]
    eps = 1e-5 if "eps-1e-5" in mistake else 1e-6  # planted mistake: another RMSNorm eps in every norm
    kernel = w["patch_embed.proj.weight"].reshape(config["hidden_size"], -1)
    if "f16-patch-embed" in mistake:  # planted mistake (llama.cpp's F16 im2col): pixels and kernel in float16
        x = pixel_values.half().to(dtype) @ kernel.half().to(dtype).T
    else:
        x = pixel_values.to(dtype) @ kernel.T
    cos, sin = rotary_tables(gh, gw, config["hidden_size"] // heads, config["rope_theta"])
    window_index, cu_window = windows(gh, gw, config["window_size"], keep_empty="repeated-bounds" in mistake)
    cu_full = torch.tensor([0, gh * gw])
    stages = {"patch_embed": x, "rotary_cos": cos, "rotary_sin": sin, "window_index": window_index,
              "cu_seqlens": cu_full, "cu_window_seqlens": cu_window}
    rows = (window_index[:, None] * MERGE * MERGE + torch.arange(MERGE * MERGE)).flatten()
    if "window-order" in mistake:  # planted mistake: the window segments applied to unpermuted rows
        rows = torch.arange(len(rows))
    x, cos, sin = x[rows], cos[rows], sin[rows]
    original = lambda t: torch.empty_like(t).index_copy_(0, rows, t)  # noqa: E731  window order -> original
    for i in range(depth):
        p = f"blocks.{i}"
        cu = cu_full if i in config["fullatt_block_indexes"] else cu_window
        x = x + attention(rms_norm(x, w[f"{p}.norm1.weight"], eps), cos, sin, cu, w, f"{p}.attn", heads)
        stages[f"{p}.attn_residual"] = original(x)
        n = rms_norm(x, w[f"{p}.norm2.weight"], eps)
        gate = F.silu(F.linear(n, w[f"{p}.mlp.gate_proj.weight"], w[f"{p}.mlp.gate_proj.bias"]))
        up = F.linear(n, w[f"{p}.mlp.up_proj.weight"], w[f"{p}.mlp.up_proj.bias"])
        x = x + F.linear(gate * up, w[f"{p}.mlp.down_proj.weight"], w[f"{p}.mlp.down_proj.bias"])
        stages[f"{p}.output"] = original(x)
    ln = rms_norm(x, w["merger.ln_q.weight"], eps)
    stages["merger.ln_q"] = original(ln)
    merged = ln.reshape(-1, MERGE * MERGE * config["hidden_size"])  # 4 consecutive rows: one 2x2 block
    gelu = "tanh" if "tanh-gelu" in mistake else "none"  # planted mistake: the tanh approximation
    merged = F.linear(F.gelu(F.linear(merged, w["merger.mlp.0.weight"], w["merger.mlp.0.bias"]), approximate=gelu),
                      w["merger.mlp.2.weight"], w["merger.mlp.2.bias"])
    token_order = rows[::MERGE * MERGE] // (MERGE * MERGE)
    stages["output"] = torch.empty_like(merged).index_copy_(0, token_order, merged)  # out[window_index] = merged
    return stages


# ------------------------------------------------------------------ the dump


def run(case="photo_astronaut", tower_name="tiny_a", mistake="none", dtype="float32", golden=GOLDEN):
    """{golden stage name: tensor} of this port on ``case`` (``mistake``: one, or several comma-separated)."""
    mistakes = tuple(mistake.split(","))
    unknown = [m for m in mistakes if m not in MISTAKES]
    if unknown:
        raise ValueError(f"unknown mistake {unknown}; choose from {', '.join(MISTAKES)}")
    image, params = read_case_input(Path(golden), case)
    weights, config = read_weights(Path(golden), tower_name)
    compute = torch.bfloat16 if "bf16" in mistakes or dtype == "bfloat16" else getattr(torch, dtype)
    weights = {k: v.to(compute) for k, v in weights.items()}
    image_stages, pixel_values, grid = preprocess(image, params, mistakes)
    with torch.no_grad():
        tower_stages = tower(pixel_values, grid, weights, config, mistakes)
    if "bf16" in mistakes:  # planted mistake: computed in bfloat16, written (and claimed) as float32
        tower_stages = {k: v.float() if v.is_floating_point() else v for k, v in tower_stages.items()}
    dump = dict(image_stages)
    dump.update({f"{tower_name}.{k}": v for k, v in tower_stages.items()})
    return {k: v.contiguous() for k, v in dump.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default="photo_astronaut")
    parser.add_argument("--tower", default="tiny_a", choices=("tiny_a", "tiny_b"))
    parser.add_argument("--mistake", default="none", help=f"one or several (comma-separated) of {', '.join(MISTAKES)}")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--golden", default=str(GOLDEN), help="the golden folder")
    parser.add_argument("--out", default="dump.safetensors")
    args = parser.parse_args(argv)
    dump = run(args.case, args.tower, args.mistake, args.dtype, args.golden)
    save_file(dump, args.out, metadata={"case": args.case, "writer": "examples/plain_torch_port.py",
                                        "mistake": args.mistake})
    print(f"wrote {args.out}: {len(dump)} stages of {args.case} ({args.tower}, {args.dtype}, mistake {args.mistake})")


if __name__ == "__main__":
    main()
