"""Pretty printers for stage rows: a markdown table (first stage out of tolerance in bold with a
marker) and a log-scale plot of the error per stage (only when matplotlib imports)."""

from __future__ import annotations

import math

from .stages import first_failure

FIRST_MARKER = "◀ first out of tolerance"


def fmt(value):
    if value is None:
        return "n/a"
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return str(value)
    return "0" if value == 0 else f"{value:.2e}"


def markdown_table(rows):
    """| stage | shape | max abs | mean abs | max rel (accum.) | local rel | tol local / accum. | verdict |"""
    first = first_failure(rows)
    header = ("| stage | shape | max abs | mean abs | max rel (accumulated) | max rel (local) | "
              "tolerance (local / accum.) | verdict |")
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        stage, verdict = f"`{row.stage}`", "ok" if row.ok else "FAIL"
        if row is first:
            stage, verdict = f"**{stage}**", f"**FAIL {FIRST_MARKER}**"
        shape = "x".join(str(n) for n in row.shape) or "scalar"
        lines.append(f"| {stage} | {shape} | {fmt(row.max_abs)} | {fmt(row.mean_abs)} | {fmt(row.rel)} | "
                     f"{fmt(row.local)} | {fmt(row.tol.local)} / {fmt(row.tol.accumulated)} | {verdict} |")
    if any(row.local is None for row in rows):
        lines.append("\nn/a: not teacher-forced (the golden does not store this stage's input).")
    if first is None:
        lines.append("\nEvery stage within tolerance.")
    else:
        lines.append(f"\nFirst stage out of tolerance: **{first.stage}** (accumulated {fmt(first.rel)}, "
                     f"local {fmt(first.local)}, tolerance {fmt(first.tol.local)} / {fmt(first.tol.accumulated)}).")
    return "\n".join(lines)


def text_summary(rows):
    """One line: the first stage out of tolerance, or that none is."""
    first = first_failure(rows)
    if first is None:
        return "every stage within tolerance"
    return (f"first stage out of tolerance: {first.stage} (accumulated {fmt(first.rel)}, local {fmt(first.local)}, "
            f"tolerance {fmt(first.tol.local)} / {fmt(first.tol.accumulated)})")


ZERO_FLOOR = 1e-17  # where an error of exactly 0 is drawn on the log axis
SKIPPED_KINDS = ("index", "rotary", "positions", "text_rotary")  # exact integers and tables: not plotted


def _ordered_stages(runs, image):
    from goldenlib.stage_vocabulary import IMAGE_STAGES, PIXEL_OUTPUTS, is_image_stage, stage_kind

    seen = []
    for run in runs:
        for row in run.rows:
            if row.stage not in seen and is_image_stage(row.stage) == image and stage_kind(row.stage) not in SKIPPED_KINDS:
                seen.append(row.stage)
    if not image:
        return seen  # every run lists the tower stages in pipeline order
    pipeline = list(IMAGE_STAGES + PIXEL_OUTPUTS)
    return sorted(seen, key=lambda s: (s.split(".")[1] if "." in s else "", pipeline.index(s.split(".")[0])))


def plot_runs(runs, path, title=""):
    """Error per stage on a log scale: image stages (left) and tower stages (right), one colour per
    run; accumulated solid, local dotted, exact zeros as triangles on the floor, the first stage
    out of tolerance circled. Returns the path written, or None when matplotlib is not importable."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    panels = [(stages, label) for stages, label in ((_ordered_stages(runs, True), "image stages"),
                                                     (_ordered_stages(runs, False), "tower stages")) if stages]
    widths = [max(2, len(stages)) for stages, _ in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(max(9, 0.3 * sum(widths) + 6), 5.8), squeeze=False,
                             gridspec_kw={"width_ratios": widths}, sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if len(runs) > len(colours):
        colours = [plt.get_cmap("tab20")(i) for i in range(20)]
    for (stages, label), ax in zip(panels, axes[0]):
        position = {stage: i for i, stage in enumerate(stages)}
        for index, run in enumerate(runs):
            colour = colours[index % len(colours)]
            rows = [r for r in run.rows if r.stage in position]
            for attr, style in (("rel", "-"), ("local", ":")):
                points = [(position[r.stage], getattr(r, attr)) for r in rows]
                points = [(x, y) for x, y in points if y is not None and math.isfinite(y)]
                xs = [x for x, _ in points]
                ys = [y if y > 0 else float("nan") for _, y in points]  # a gap where the error is 0
                ax.plot(xs, ys, linestyle=style, marker="o" if attr == "rel" else None, markersize=3, color=colour,
                        label=run.title if attr == "rel" and label == panels[-1][1] else None)
                zeros = [x for x, y in points if y == 0]
                if attr == "rel" and zeros:
                    ax.scatter(zeros, [ZERO_FLOOR] * len(zeros), marker="v", s=14, color=colour)
            first = run.first_failure
            if first is not None and first.stage in position and math.isfinite(first.rel) and first.rel > 0:
                ax.scatter([position[first.stage]], [first.rel], s=140, facecolors="none", edgecolors=colour,
                           linewidths=1.5)
        ax.set_yscale("log")
        ax.set_xticks(range(len(stages)))
        ax.set_xticklabels(stages, rotation=75, ha="right", fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("max rel error vs golden (solid: accumulated, dotted: local)")
    fig.suptitle((title + ": " if title else "") + f"circle = first stage out of tolerance; triangle = exactly 0 "
                 f"(drawn at {ZERO_FLOOR:g})", fontsize=9)
    fig.legend(loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.04 + 0.022 * ((len(runs) + 1) // 2), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
