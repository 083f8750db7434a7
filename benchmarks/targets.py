"""The benchmarks' targets as data, and their check on a run's rows.

Each check returns ``[(met, text)]``; rendering them (``- [x] text``) is the report's job. Rows are
selected by their fields (implementation name, backend, setting; tower variant; model task), never
by the text a report shows.
"""

from __future__ import annotations

# preprocessing: (implementation, backend, setting, bound): median time <= bound x HF's processor of
# that backend on every size, and pixel_values bit-exact to it
PREPROCESS = (
    ("reference.fast.preprocess", "pil", "", 1.0),
    ("port Qwen2_5_VLImageTransform", "pil", "", 0.5),
    ("port Qwen2_5_VLImageTransform", "torchvision", "", 1.0),
    ("port Qwen2_5_VLImageTransform", "pil", "DataLoader x2", 1.0),
    ("port Qwen2_5_VLImageTransform", "torchvision", "DataLoader x2", 1.0),
    ("port Qwen2_5_VLImageTransform", "pil", "DataLoader x2, no transfer", 1.0),
    ("port Qwen2_5_VLImageTransform", "torchvision", "DataLoader x2, no transfer", 1.0),
    ("reference.preprocess", "torchvision", "", 2.0),
    ("port Qwen2_5_VLVideoTransform", "video", "", 1.0),
)
# the tower: variant -> bound on median time / HF float32 (sdpa)'s, every size
TOWER_TIME = (("reference float32", 1.0), ("reference float64", 2.5), ("reference float32 (fast)", 0.8),
              ("reference float64 (fast)", 2.5), ("port float32", 1.0))
# the tower: peak RSS at the largest size <= bound x HF's
TOWER_RSS = (("reference float32", 1.5), ("reference float64", 1.5), ("reference float32 (fast)", 1.5),
             ("reference float64 (fast)", 1.5))
TOWER_BASELINE = "HF float32 (sdpa)"
POSITIONS = ("port qwen2_5_vl_rope_index", 0.5)  # time <= bound x HF get_rope_index, positions equal
MODEL_TIME, MODEL_RSS = 1.0, 1.2  # the whole model, each (dtype, task): port <= bound x HF


def preprocess_checks(rows) -> list[tuple[bool, str]]:
    checks = []
    for name, backend, setting, bound in PREPROCESS:
        rs = [r for r in rows if (r["name"], r["backend"], r["setting"]) == (name, backend, setting)]
        if rs:
            worst = max(r["ratio"] for r in rs)
            exact = all(r["exact"] == "bit-exact" for r in rs)
            checks.append((worst <= bound and exact, f"{rs[0]['impl']} <= {bound}x {rs[0]['vs']} and bit-exact "
                                                     f"(worst {worst:.2f}x{'' if exact else ', NOT exact'})"))
    return checks


def positions_checks(rows) -> list[tuple[bool, str]]:
    impl, bound = POSITIONS
    port = [r for r in rows if r["impl"] == impl]
    if not port:
        return []
    ok = all(r["ratio"] <= bound and r["same"] == "equal" for r in port)
    return [(ok, f"qwen2_5_vl_rope_index <= {bound}x HF get_rope_index and equal "
                 f"({', '.join(format(r['ratio'], '.3f') + 'x' for r in port)})")]


def tower_checks(by_side: dict) -> list[tuple[bool, str]]:
    """``by_side``: {side: {variant: row with median_s and peak_rss_kb}}."""
    checks = []
    for variant, bound in TOWER_TIME:
        ratios = [rows[variant]["median_s"] / rows[TOWER_BASELINE]["median_s"]
                  for rows in by_side.values() if variant in rows and TOWER_BASELINE in rows]
        if ratios:
            checks.append((max(ratios) <= bound, f"{variant} <= {bound}x HF float32 (worst {max(ratios):.2f}x)"))
    if by_side:
        largest = max(by_side)
        rows = by_side[largest]
        if TOWER_BASELINE in rows:
            for variant, bound in TOWER_RSS:
                if variant in rows:
                    ratio = rows[variant]["peak_rss_kb"] / rows[TOWER_BASELINE]["peak_rss_kb"]
                    checks.append((ratio <= bound, f"peak RSS of {variant} at {largest ** 2} patches <= {bound}x "
                                                   f"HF's ({ratio:.2f}x)"))
    return checks


def model_checks(rows) -> list[tuple[bool, str]]:
    """``rows``: model_bench rows with ratio and rss_ratio to HF's row of the same dtype and task."""
    return [(r["ratio"] <= MODEL_TIME and r["rss_ratio"] <= MODEL_RSS,
             f"{r['dtype']} {r['task']}: time {r['ratio']:.2f}x HF (<= {MODEL_TIME}), "
             f"peak RSS {r['rss_ratio']:.2f}x HF (<= {MODEL_RSS})") for r in rows if r["impl"] == "port"]


def render(checks) -> list[str]:
    return [f"- [{'x' if ok else ' '}] {text}" for ok, text in checks]
