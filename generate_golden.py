"""Regenerate the goldens, cross-checked against the installed HF Transformers and Pillow.

    uv run generate_golden.py            # rebuild golden/ (atomically) after cross-checking every case
    uv run generate_golden.py --check    # recompute in memory, print per-stage drift, write nothing

Every case is computed by the NumPy reference, then compared stage by stage with HF
(image stages must match exactly; tower stages within the bounds below). Nothing is
written unless every case passes; golden/ is then replaced in one step.
"""

import argparse
import sys
import time

import numpy as np

from goldenlib import store
from goldenlib.cases import IMAGE_CASES, photo
from goldenlib.image_goldens import crosscheck, image_metadata, run_reference
from goldenlib.tower_goldens import (FULL_BLOCKS, FULL_CONFIG_NAME, FULL_SEED, TINY_CONFIGS, WEIGHT_SEED, hf_crosscheck,
                                     keep_full_stage, rel_error, run_tower, tiny_weights, two_frame_input)

# HF float32 vs reference float64, max relative error per stage (measured values in golden/README.md).
TOWER_CROSSCHECK_BOUND = 1e-5
# --check: how far a recomputed stage may drift from the stored one. Image stages and
# integer stages are exact; float64 tower stages allow BLAS summation-order noise; the
# full-size stages are stored as float32.
DRIFT_BOUNDS = {"exact": 0.0, "float64": 1e-10, "float32": 1e-6}
# Resized (90x150 -> 84x140, both bicubic passes) so that interpolation variants show on the full tower.
FULL_IMAGE = ("photo crop 90x150 resized to 84x140 (merged grid 3x5: not a multiple of the 4x4 window)",
              lambda: photo("coffee")[60:150, 80:230])


def tiny_tower_stages(pixel_values, grid_thw, weights_by_config, report):
    tensors = {}
    for name, config in TINY_CONFIGS.items():
        trace = run_tower(config, weights_by_config[name], pixel_values, grid_thw)
        report.append((name, hf_crosscheck(config, weights_by_config[name], pixel_values, grid_thw, trace)))
        tensors.update({f"{name}.{stage}": value for stage, value in trace.items()})
    return tensors


def build_all(log, with_full=True, only=None):
    """Compute every golden case in memory: {name: (tensors, metadata)}, plus the cross-check report.

    ``only``: a set of case names to build (the others are skipped), for ``--check --case``.
    """
    def wanted(name):
        return only is None or name in only

    cases, report = {}, []
    weights = {name: tiny_weights(name) for name in TINY_CONFIGS}
    for name, config in TINY_CONFIGS.items():
        if not wanted(f"weights_{name}"):
            continue
        cases[f"weights_{name}"] = (weights[name], {
            "case": f"weights_{name}", "kind": "weights", "config": config.to_dict(),
            "seed": WEIGHT_SEED + sorted(TINY_CONFIGS).index(name),
            "description": f"seeded random weights of tiny config {name} (HF vision key names)"})

    for case in IMAGE_CASES:
        if not wanted(case.name):
            continue
        start = time.perf_counter()
        images, tensors = run_reference(case)
        diffs = crosscheck(case, images, tensors)
        bad = {stage: diff for stage, diff in diffs.items() if diff != 0.0}
        if bad:
            raise SystemExit(f"case {case.name}: reference differs from HF at {bad}; nothing written")
        tower_report = []
        tensors.update(tiny_tower_stages(tensors["pixel_values"], tensors["image_grid_thw"], weights, tower_report))
        report += [(case.name, cfg, errs) for cfg, errs in tower_report]
        metadata = image_metadata(case)
        metadata["tower_configs"] = {name: config.to_dict() for name, config in TINY_CONFIGS.items()}
        metadata["tower_dtype"] = "float64"
        cases[case.name] = (tensors, metadata)
        log(f"{case.name:22s} image stages == HF ({len(diffs)} checked), towers cross-checked "
            f"({time.perf_counter() - start:.1f}s)")

    if not wanted("two_frames"):
        return _with_full(cases, report, log, with_full and wanted("full_size_3b"))
    pixel_values, grid_thw = two_frame_input()
    tower_report = []
    tensors = {"pixel_values": pixel_values, "image_grid_thw": grid_thw}
    tensors.update(tiny_tower_stages(pixel_values, grid_thw, weights, tower_report))
    report += [("two_frames", cfg, errs) for cfg, errs in tower_report]
    cases["two_frames"] = (tensors, {
        "case": "two_frames", "kind": "tower", "description": "two different frames (grid_t = 2), random values",
        "tower_configs": {name: config.to_dict() for name, config in TINY_CONFIGS.items()},
        "tower_dtype": "float64", "seed": 7, "versions": _versions()})
    log("two_frames             towers cross-checked")
    return _with_full(cases, report, log, with_full and wanted("full_size_3b"))


def _with_full(cases, report, log, with_full):
    if with_full:
        cases["full_size_3b"], full_report = build_full(log)
        report += full_report
    return cases, report


def build_full(log):
    import reference

    start = time.perf_counter()
    description, make = FULL_IMAGE
    trace_pre = {}
    out = reference.preprocess(make(), trace=trace_pre)
    config = reference.PRESETS[FULL_CONFIG_NAME]
    weights = reference.random_weights(config, seed=FULL_SEED)
    trace = run_tower(config, weights, out["pixel_values"], out["image_grid_thw"], keep=keep_full_stage)
    errors = hf_crosscheck(config, weights, out["pixel_values"], out["image_grid_thw"], trace,
                           implementations=("sdpa",))
    del weights
    tensors = {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"]}
    for stage, value in trace.items():
        is_float = np.issubdtype(np.asarray(value).dtype, np.floating)
        tensors[f"{FULL_CONFIG_NAME}.{stage}"] = value.astype(np.float32) if is_float else value
    metadata = {"case": "full_size_3b", "kind": "tower", "description": f"full-size 3B tower on {description}",
                "tower_configs": {FULL_CONFIG_NAME: config.to_dict()}, "tower_dtype": "float32 (computed in float64)",
                "seed": FULL_SEED, "weights": "reference.random_weights(PRESETS['3b'], seed), not stored",
                "stored_blocks": list(FULL_BLOCKS), "stage_prefix": f"{FULL_CONFIG_NAME}.",
                "versions": _versions()}
    log(f"full_size_3b           cross-checked ({time.perf_counter() - start:.1f}s)")
    return (tensors, metadata), [("full_size_3b", "3b", errors)]


def _versions():
    from hfcheck.hf_image import versions

    return versions()


def summarize_crosscheck(report):
    """Worst relative error per (config, implementation, stage kind) over all cases."""
    worst = {}
    for _, config, errors in report:
        for (implementation, stage), error in errors.items():
            kind = "blocks.*." + stage.split(".", 2)[-1] if stage.startswith("blocks.") else stage
            key = (config, implementation, kind)
            worst[key] = max(worst.get(key, 0.0), error)
    return worst


def crosscheck_table(report):
    lines = ["| config | attention | stage | max rel. error vs HF float32 |", "|---|---|---|---|"]
    for (config, implementation, kind), error in sorted(summarize_crosscheck(report).items()):
        lines.append(f"| {config} | {implementation} | {kind} | {error:.2e} |")
    return "\n".join(lines)


def check_bounds(report):
    bad = [(case, config, key, err) for case, config, errors in report for key, err in errors.items()
           if not err <= TOWER_CROSSCHECK_BOUND]
    if bad:
        lines = "\n".join(f"  {case} {config} {impl} {stage}: {err:.3e}" for case, config, (impl, stage), err in bad)
        raise SystemExit(f"tower differs from HF beyond {TOWER_CROSSCHECK_BOUND:g}:\n{lines}\nnothing written")


EXACT_STAGES = ("input", "rgb", "resized", "rescaled", "normalized", "pixel_values", "image_grid_thw")


def drift_bound(stage, value):
    """Which bound applies: image and integer stages are exact, tower stages by stored dtype."""
    value = np.asarray(value)
    if not np.issubdtype(value.dtype, np.floating) or stage.split(".")[0] in EXACT_STAGES:
        return "exact"
    return "float32" if value.dtype == np.float32 else "float64"


def drift_table(cases, folder=store.GOLDEN_DIR, complete=False):
    """Compare recomputed cases with the stored ones: rows of (case, stage, kind, max abs, rel, bound, ok).

    ``complete``: every case was recomputed, so a stored file that none matches is stale.
    """
    rows = []
    manifest = store.load_manifest(folder)
    if complete:
        for stale in sorted(set(manifest["files"]) - {f"{name}.safetensors" for name in cases}):
            rows.append((stale.removesuffix(".safetensors"), "(file)", "stale", float("inf"), float("inf"), 0.0,
                         False))
    for name, (tensors, _) in cases.items():
        if f"{name}.safetensors" not in manifest["files"]:
            rows.append((name, "(file)", "missing", float("inf"), float("inf"), 0.0, False))
            continue
        try:
            stored, _ = store.read_case(name, folder)
        except store.GoldenIntegrityError as error:
            print(f"integrity: {error}", file=sys.stderr)
            rows.append((name, "(sha256)", "integrity", float("inf"), float("inf"), 0.0, False))
            continue
        for stage in sorted(set(stored) | set(tensors)):
            if stage not in stored or stage not in tensors:
                rows.append((name, stage, "missing" if stage not in stored else "extra", float("inf"),
                             float("inf"), 0.0, False))
                continue
            kind = drift_bound(stage, stored[stage])
            new = np.asarray(tensors[stage]).astype(stored[stage].dtype)
            if new.shape != stored[stage].shape:
                rows.append((name, stage, "shape", float("inf"), float("inf"), 0.0, False))
                continue
            diff = np.abs(new.astype(np.float64) - stored[stage].astype(np.float64))
            max_abs = float(diff.max()) if diff.size else 0.0
            rel = rel_error(stored[stage], new)
            bound = DRIFT_BOUNDS[kind]
            rows.append((name, stage, kind, max_abs, rel, bound, (max_abs if kind == "exact" else rel) <= bound))
    return rows


def print_drift(rows, show_all=False):
    print("| case | stage | kind | max abs | max rel | bound | verdict |")
    print("|---|---|---|---|---|---|---|")
    for name, stage, kind, max_abs, rel, bound, ok in rows:
        if show_all or not ok or max_abs > 0:
            print(f"| {name} | {stage} | {kind} | {max_abs:.3g} | {rel:.3g} | {bound:g} | "
                  f"{'ok' if ok else '**DRIFT**'} |")
    drifted = [row for row in rows if not row[-1]]
    changed = sum(1 for row in rows if row[3] > 0)
    print(f"\n{len(rows)} stages compared, {changed} changed, {len(drifted)} beyond tolerance")
    if drifted:
        first = drifted[0]
        print(f"first drift: case {first[0]}, stage {first[1]}")
    return not drifted


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="recompute and compare with golden/, write nothing")
    parser.add_argument("--no-full", action="store_true", help="skip the full-size tower case")
    parser.add_argument("--golden-dir", default=str(store.GOLDEN_DIR), help="golden folder (default: golden/)")
    parser.add_argument("--all-stages", action="store_true", help="--check: list unchanged stages too")
    parser.add_argument("--case", action="append", metavar="NAME",
                        help="--check only these cases (repeatable); the full set is always written")
    args = parser.parse_args(argv)
    folder = store.Path(args.golden_dir)
    only = set(args.case) if args.case else None
    if only and not args.check:
        parser.error("--case only goes with --check: a regeneration always writes every case")
    known = {c.name for c in IMAGE_CASES} | {"two_frames", "full_size_3b"} | {f"weights_{n}" for n in TINY_CONFIGS}
    if only and only - known:
        parser.error(f"unknown case(s) {sorted(only - known)}; known: {sorted(known)}")

    def log(message):
        print(message, file=sys.stderr, flush=True)

    start = time.perf_counter()
    cases, report = build_all(log, with_full=not args.no_full, only=only)
    check_bounds(report)
    table = crosscheck_table(report)
    if args.check:
        print("## HF cross-check (reference float64 vs HF float32)\n")
        print(table + "\n")
        print("## Drift against stored goldens\n")
        rows = drift_table(cases, folder, complete=only is None and not args.no_full)
        ok = print_drift(rows, show_all=args.all_stages)
        return 0 if ok else 1

    target = store.AtomicFolder(folder)
    try:
        for name, (tensors, metadata) in cases.items():
            store.write_case(target.path, name, tensors, metadata)
        (target.path / "CROSSCHECK.md").write_text(
            "# HF cross-check of the tower goldens (generated)\n\n" + table + "\n")
        store.write_manifest(target.path, extra={"versions": _versions()})
        target.commit()
    except BaseException:
        target.discard()
        raise
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    print(table)
    print(f"\nwrote {len(cases)} golden files to {folder} ({size / 1e6:.1f} MB) "
          f"in {time.perf_counter() - start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
