"""The spatial parts of docs/spec.md, drawn from the reference's own functions.

    uv run docs/figures.py             # PNGs and figures.json into docs/figures/
    uv run docs/figures.py --out DIR   # the same into DIR

Each figure is a data function (numbers only, computed by ``reference``) and a drawing function
(matplotlib). ``figures.json`` holds the data each PNG draws: ``tests/test_figures.py`` reruns this
script and compares that data (not the PNG bytes, which differ between matplotlib and FreeType
versions) with the committed file, so a change in the reference that moves a figure fails until
the figures are redrawn.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# after the path above: `uv run docs/figures.py` puts docs/, not the project root, on the path
from reference.bicubic import bicubic_kernel, resample_coefficients  # noqa: E402
from reference.preprocess import patchify  # noqa: E402
from reference.rope_index import rope_index  # noqa: E402
from reference.vision import rotary_cos_sin, vision_position_ids, window_index  # noqa: E402
from reference.vision_tokens import expand_vision_tokens  # noqa: E402

PATCH = 14
ONE = 1 << 22  # Pillow's fixed-point unit of a bicubic weight
VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = 151652, 151653, 151655, 151656


# ----------------------------------------------------------------------------- data (reference only)


def merge_blocks_data(gh=4, gw=6):
    """The pixel_values row of each patch: patchify an image whose patches hold their raster number."""
    raster = np.arange(gh * gw, dtype=np.float32).reshape(gh, gw)
    image = np.kron(raster, np.ones((PATCH, PATCH), np.float32))[None]  # [1, gh*14, gw*14]
    rows, _, _ = patchify(image)  # [gh*gw, 1*2*14*14]: every value of a row is its patch's number
    patch_of_row = rows[:, 0].astype(np.int64)  # [S] raster number of the patch in row r
    position = vision_position_ids([[1, gh, gw]])  # [S, 2] (h, w) of row r, as the tower sees it
    assert (position[:, 0] * gw + position[:, 1] == patch_of_row).all()
    return {"grid": [gh, gw], "row_of_patch": np.argsort(patch_of_row).reshape(gh, gw).tolist()}


def windows_data(gh=10, gw=12):
    """window_index and cu_window_seqlens of a grid whose merged sides (5 x 6) are not multiples of 4."""
    index, cu = window_index([[1, gh, gw]])
    return {"grid": [gh, gw], "merged": [gh // 2, gw // 2], "window_index": index.tolist(),
            "cu_window_seqlens": cu.tolist()}


def rotary_data(gh=4, gw=4, head_dim=16):
    """Each patch row's rotary angles (d/2) and the cos table (d) for a small head: h and w stay below pi,
    so atan2 gives the angle back unwrapped."""
    cos, sin = rotary_cos_sin([[1, gh, gw]], head_dim)  # [S, d] each
    angle = np.arctan2(sin, cos)[:, :head_dim // 2]  # [S, d/2]: [h * inv_freq, w * inv_freq]
    return {"grid": [gh, gw], "head_dim": head_dim, "position": vision_position_ids([[1, gh, gw]]).tolist(),
            "angle": angle.tolist(), "cos": cos.tolist()}


def mrope_data():
    """The (t, h, w) positions of text, an image (grid 1x4x6), text, a video (grid 3x4x4, 1 s per grid
    step, 2 tokens per second), text."""
    prompt = [1, 2, 3, VISION_START, IMAGE_PAD, VISION_END, 4, 5, VISION_START, VIDEO_PAD, VISION_END, 6, 7]
    image_grid, video_grid = [[1, 4, 6]], [[3, 4, 4]]
    ids, types = expand_vision_tokens(prompt, image_grid, video_grid)
    position_ids, deltas = rope_index(ids[None], types[None], image_grid, video_grid, second_per_grid_ts=[1.0])
    return {"image_grid_thw": image_grid, "video_grid_thw": video_grid, "second_per_grid_ts": [1.0],
            "input_ids": ids.tolist(), "token_types": types.tolist(), "position_ids": position_ids[:, 0].tolist(),
            "delta": int(deltas[0, 0])}


def taps(in_size, out_size, i):
    """Pillow's taps of output ``i`` on one axis: source pixel centres, weights, and the kernel they sample."""
    xmin, fixed = resample_coefficients(in_size, out_size)
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    weights = fixed[i] / ONE
    live = np.nonzero(fixed[i])[0]
    source = xmin[i] + live  # source pixels read
    centre = (i + 0.5) * scale
    x = np.linspace(centre - 2 * filterscale, centre + 2 * filterscale, 121)  # source coordinate
    raw = bicubic_kernel((source + 0.5 - centre) / filterscale)
    curve = bicubic_kernel((x - centre) / filterscale) / raw.sum()  # the kernel with the taps' normalisation
    return {"in": in_size, "out": out_size, "output": i, "centre": centre, "filterscale": filterscale,
            "source": source.tolist(), "weight": weights[live].tolist(), "x": x.tolist(), "curve": curve.tolist()}


def bicubic_data():
    x = np.linspace(-2.5, 2.5, 201)
    return {"kernel_x": x.tolist(), "kernel": bicubic_kernel(x).tolist(),
            "shrink": taps(10, 4, 1), "enlarge": taps(4, 10, 4)}


# ----------------------------------------------------------------------------- drawing (matplotlib)


def _cells(ax, values, colors, cmap="tab20", fontsize=11):
    """A grid of labelled cells: ``values`` [h, w] of text, ``colors`` [h, w] of numbers."""
    h, w = np.shape(colors)
    ax.imshow(colors, cmap=cmap, vmin=0, vmax=20 if cmap == "tab20" else None)
    for r in range(h):
        for c in range(w):
            ax.text(c, r, values[r][c], ha="center", va="center", fontsize=fontsize)
    ax.set_xticks(range(w))
    ax.set_yticks(range(h))


def draw_merge_blocks(d, plt):
    gh, gw = d["grid"]
    rows = np.array(d["row_of_patch"])
    fig, ax = plt.subplots(figsize=(7, 5))
    _cells(ax, rows.astype(str).tolist(), rows // 4)
    for k in range(0, gh + 1, 2):
        ax.axhline(k - 0.5, color="black", lw=3)
    for k in range(0, gw + 1, 2):
        ax.axvline(k - 0.5, color="black", lw=3)
    ax.set_xlabel("patch column w")
    ax.set_ylabel("patch row h")
    ax.set_title(f"pixel_values row of each 14x14 patch (grid {gh}x{gw})\n"
                 "4 consecutive rows = one 2x2 merge block; blocks go row-major", fontsize=11)
    return fig


def draw_windows(d, plt):
    mh, mw = d["merged"]
    index, cu = np.array(d["window_index"]), np.array(d["cu_window_seqlens"])
    window = np.repeat(np.arange(len(cu) - 1), np.diff(cu) // 4)  # [S/4] window of each position j
    position = np.empty_like(index)
    position[index] = np.arange(len(index))  # position j of each original merged token
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8), gridspec_kw={"height_ratios": [mh, 2.2]})
    labels = [[f"{r * mw + c}\nj={position[r * mw + c]}" for c in range(mw)] for r in range(mh)]
    colors = np.empty(mh * mw, np.int64)
    colors[index] = window * 2
    _cells(top, labels, colors.reshape(mh, mw), fontsize=9)
    for k in (3.5,):
        top.axhline(k, color="black", lw=3)
        top.axvline(k, color="black", lw=3)
    top.set_xlabel("merged column")
    top.set_ylabel("merged row")
    top.set_title(f"grid {d['grid'][0]}x{d['grid'][1]} patches -> {mh}x{mw} merged tokens, windows of 4x4 "
                  "(edge windows smaller, nothing padded)\ncell: original merged token, j = its position "
                  "in window order", fontsize=10)
    strip = [[str(v) for v in index]]
    _cells(bottom, strip, (window * 2)[None], fontsize=8)
    bottom.set_yticks([])
    bottom.set_xlabel("position j in window order (cell: window_index[j])")
    for b in cu:
        bottom.axvline(b // 4 - 0.5, color="black", lw=2)
        bottom.text(b // 4 - 0.5, -0.9, str(b), ha="center", fontsize=9)
    bottom.set_title(f"window_index = {index.tolist()}\ncu_window_seqlens (patch rows = 4 x tokens) = "
                     f"{cu.tolist()}", fontsize=9, pad=24)
    fig.tight_layout()
    return fig


def draw_rotary(d, plt):
    angle, cos = np.array(d["angle"]), np.array(d["cos"])
    position, quarter = d["position"], d["head_dim"] // 4
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6.5), gridspec_kw={"width_ratios": [1, 1.6]})
    left.imshow(angle, cmap="viridis", aspect="auto")
    for r in range(angle.shape[0]):
        for c in range(angle.shape[1]):
            left.text(c, r, f"{angle[r, c]:.3g}", ha="center", va="center", fontsize=8,
                      color="white" if angle[r, c] < angle.max() / 2 else "black")
    ylabels = [f"row {r}: (h {h}, w {w})" for r, (h, w) in enumerate(position)]
    left.set_yticks(range(len(ylabels)), ylabels, fontsize=8)
    left.set_xticks(range(2 * quarter), [f"h f{k}" for k in range(quarter)] + [f"w f{k}" for k in range(quarter)],
                    fontsize=8)
    left.axvline(quarter - 0.5, color="red", lw=2)
    left.set_title(f"angle = [h * inv_freq, w * inv_freq] (head_dim {d['head_dim']}, inv_freq f_k = "
                   f"10000^(-k/{quarter}))", fontsize=9)
    image = right.imshow(cos, cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
    right.set_yticks(range(len(ylabels)), [f"row {r}" for r in range(len(ylabels))], fontsize=8)
    right.axvline(2 * quarter - 0.5, color="black", lw=2)
    right.set_xlabel("cos column (the angle vector written twice: [angle, angle])")
    right.set_title("rotary_cos [S, head_dim], rows in merge-block order", fontsize=9)
    fig.colorbar(image, ax=right)
    fig.tight_layout()
    return fig


def draw_mrope(d, plt):
    pos, types = np.array(d["position_ids"]), np.array(d["token_types"])
    ids = d["input_ids"]
    names = {VISION_START: "<vs>", VISION_END: "<ve>", IMAGE_PAD: "img", VIDEO_PAD: "vid"}
    fig, ax = plt.subplots(figsize=(15, 3.6))
    colors = np.broadcast_to(types * 2, pos.shape)  # text, image, video in three colours
    _cells(ax, pos.astype(str).tolist(), colors, cmap="Pastel1", fontsize=9)
    ax.imshow(colors, cmap="Pastel1", vmin=0, vmax=8, aspect="auto")
    ax.set_yticks(range(3), ["t", "h", "w"])
    ax.set_xticks(range(len(ids)), [names.get(i, "text") for i in ids], rotation=90, fontsize=8)
    ax.set_title(f"3-D positions (rope_index) of text + image {d['image_grid_thw'][0]} + text + video "
                 f"{d['video_grid_thw'][0]} (second_per_grid_ts {d['second_per_grid_ts'][0]}: t steps by 2) + "
                 f"text; after a vision run text goes on at max(h, w)/2 past its start; delta {d['delta']}",
                 fontsize=9)
    fig.tight_layout()
    return fig


def draw_bicubic(d, plt):
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    axes[0].plot(d["kernel_x"], d["kernel"])
    axes[0].axhline(0, color="gray", lw=0.5)
    axes[0].set_title("bicubic kernel k(x), a = -0.5, support 2", fontsize=10)
    axes[0].set_xlabel("x (source pixels, before widening)")
    for ax, name in zip(axes[1:], ("shrink", "enlarge")):
        t = d[name]
        ax.plot(t["x"], t["curve"], color="gray", lw=1, label="k((x - centre) / filterscale), normalised")
        ax.stem(np.array(t["source"]) + 0.5, t["weight"], basefmt=" ", label="tap weights (22-bit fixed point)")
        ax.axvline(t["centre"], color="red", lw=1, label=f"centre (i + 0.5) * scale = {t['centre']:g}")
        ax.axhline(0, color="gray", lw=0.5)
        ax.set_xlabel("source coordinate (pixel s is centred at s + 0.5)")
        ax.set_title(f"{name}: {t['in']} -> {t['out']} pixels, output {t['output']}: filterscale "
                     f"{t['filterscale']:g}, {len(t['source'])} taps", fontsize=10)
        ax.set_ylim(top=1.7 * max(t["weight"]))  # room for the legend above the taps
        ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


FIGURES = {  # file stem -> (data, draw)
    "merge_blocks": (merge_blocks_data, draw_merge_blocks),
    "windows": (windows_data, draw_windows),
    "rotary": (rotary_data, draw_rotary),
    "mrope_positions": (mrope_data, draw_mrope),
    "bicubic_taps": (bicubic_data, draw_bicubic),
}


def figure_data() -> dict:
    return {name: data() for name, (data, _) in FIGURES.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "figures")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.out.mkdir(parents=True, exist_ok=True)
    data = figure_data()
    for name, (_, draw) in FIGURES.items():
        fig = draw(data[name], plt)
        fig.savefig(args.out / f"{name}.png", dpi=100)
        plt.close(fig)
    (args.out / "figures.json").write_text(json.dumps(data, indent=1) + "\n")
    print(f"{len(FIGURES)} figures and figures.json written to {args.out}")


if __name__ == "__main__":
    main()
