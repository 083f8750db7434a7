"""Regenerate the goldens, cross-checked against the installed HF Transformers and Pillow.

    uv run generate_golden.py            # rebuild golden/ (atomically) after cross-checking every case
    uv run generate_golden.py --check    # recompute in memory, print per-stage drift, write nothing

Every stored case of the registry (``goldenlib.cases.CASES``) is computed by the NumPy reference
(``goldenlib.build``), then compared stage by stage with HF (image stages must match exactly;
tower stages within ``goldenlib.tolerances.HF_CROSSCHECK_BOUND``; the positions cases' ids, token
types and mRoPE positions exactly, their cos/sin within ``POSITIONS_ROTARY_VS_HF_BOUND``). Nothing is written unless
every case passes; golden/ is then replaced in one step.
"""

import argparse
import sys
import time

import numpy as np

from goldenlib import store
from goldenlib.build import CrosscheckError, build_case, build_positions, build_weights, check_crosscheck
from goldenlib.cases import CASES, TOWERS, stored_names, weights_case_name
from goldenlib.tolerances import DRIFT_BOUNDS, rel_error


def build_all(log, with_full=True, only=None):
    """Compute every stored golden case in memory: {name: (tensors, metadata)}, plus the cross-check report.

    ``with_full``: False skips the cases that run the full-size tower. ``only``: a set of case
    names to build (the others are skipped), for ``--check --case``.
    """
    cases, report, weights = {}, [], {}

    def weights_of(name):  # each tower's seeded weights, made once per run (not the 3B: too big to keep)
        if not TOWERS[name].stored_weights:
            return TOWERS[name].weights()
        if name not in weights:
            weights[name] = TOWERS[name].weights()
        return weights[name]

    for name, tower in TOWERS.items():
        if tower.stored_weights and (only is None or weights_case_name(name) in only):
            cases[weights_case_name(name)] = build_weights(name, weights_of(name))
    for case in CASES:
        if not case.stored or (only is not None and case.name not in only):
            continue
        if not with_full and any(not TOWERS[name].stored_weights for name in case.towers):
            continue
        start = time.perf_counter()
        try:
            if case.kind == "positions":
                tensors, metadata, errors = build_positions(case)
            else:
                tensors, metadata, case_report = build_case(case, weights_of=weights_of)
        except CrosscheckError as error:
            raise SystemExit(f"{error}; nothing written") from None
        cases[case.name] = (tensors, metadata)
        if case.kind == "positions":
            rotary = ", ".join(f"{stage} {error:.2e}" for stage, error in errors.items())
            log(f"{case.name:22s} ids, types, positions == HF; rotary vs HF float32: {rotary} "
                f"({time.perf_counter() - start:.1f}s)")
            continue
        report += case_report
        image = "image stages == HF, " if case.make is not None else ""
        log(f"{case.name:22s} {image}towers cross-checked ({time.perf_counter() - start:.1f}s)")
    return cases, report


def _versions():
    from goldenlib.hf_image import versions

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
    try:
        check_crosscheck(report)
    except CrosscheckError as error:
        raise SystemExit(f"{error}\nnothing written") from None


# second_per_grid_ts: a positions case's float input, stored as given.
EXACT_STAGES = ("input", "rgb", "resized", "rescaled", "normalized", "pixel_values", "image_grid_thw",
                "second_per_grid_ts")


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
            rel = rel_error(new, stored[stage])
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
    known = set(stored_names())
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
