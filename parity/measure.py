"""Measure the errors behind ``goldenlib.tolerances.PARITY_TOLERANCES``: the worst local and accumulated error
per (dtype, stage kind) over every golden case and config, for the port (and the reference in
float64), on the CPU and on CUDA when available.

    uv run python -m parity.measure                  # all cases, tiny configs + full_size_3b
    uv run python -m parity.measure --no-full --dtypes float32,bfloat16 --devices cpu
    uv run python -m parity.measure --json out.json   # also write the raw worst values

Prints a markdown table: measured worst (local / accumulated), the table's tolerance, and
whether it holds. Tolerances are set just above these numbers (see the comment on PARITY_TOLERANCES).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from .cases import case_names, load_case
from .implementations import cuda_available, load_implementation
from .printing import fmt
from .stages import TOLERANCES, compare_tower


def stored_cases(with_full=True):
    from goldenlib.cases import BY_NAME

    return [name for name in case_names()
            if BY_NAME[name].stored and (with_full or "3b" not in BY_NAME[name].towers)]


def measure(cases, dtypes, devices, log=print):
    """{(device, dtype, kind): [worst local, worst accumulated, where local, where accumulated]}."""
    worst = {}
    for name in cases:
        case = load_case(name)
        for config_name, tower in case.towers.items():
            for device in devices:
                for dtype in dtypes:
                    spec = "reference" if dtype == "float64" else "port"
                    if spec == "reference" and device != "cpu":
                        continue
                    start = time.perf_counter()
                    impl = load_implementation(spec, tower.config, tower.weights(), dtype, device)
                    rows = compare_tower(impl, case, config_name)
                    impl.close()
                    del impl
                    for row in rows:
                        entry = worst.setdefault((device, dtype, row.kind), [0.0, 0.0, "", ""])
                        if row.local is not None and row.local > entry[0]:
                            entry[0], entry[2] = row.local, f"{name}/{config_name}/{row.stage}"
                        if row.rel > entry[1]:
                            entry[1], entry[3] = row.rel, f"{name}/{config_name}/{row.stage}"
                    log(f"{name:20s} {config_name:6s} {dtype:8s} {device:4s} {time.perf_counter() - start:5.1f}s")
    return worst


def table(worst):
    header = ("| device | dtype | kind | worst local | worst accumulated | tolerance (local / accum.) | holds | "
              "where (accumulated) |")
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for (device, dtype, kind), (local, acc, _, where_acc) in sorted(worst.items()):
        tol = TOLERANCES.get((dtype, kind))
        holds = "?" if tol is None else ("yes" if local <= tol.local and acc <= tol.accumulated else "**NO**")
        tol_text = "-" if tol is None else f"{fmt(tol.local)} / {fmt(tol.accumulated)}"
        lines.append(f"| {device} | {dtype} | {kind} | {fmt(local)} | {fmt(acc)} | {tol_text} | {holds} | {where_acc} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtypes", default="float64,float32,bfloat16,float16")
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--no-full", action="store_true", help="skip full_size_3b")
    parser.add_argument("--cases", default="", help="comma-separated case names (default: every stored case)")
    parser.add_argument("--json", default="", help="also write the worst values as JSON")
    args = parser.parse_args(argv)
    devices = [d for d in args.devices.split(",") if d and (d != "cuda" or cuda_available())]
    cases = [c for c in args.cases.split(",") if c] or stored_cases(with_full=not args.no_full)
    worst = measure(cases, [d for d in args.dtypes.split(",") if d], devices,
                    log=lambda m: print(m, file=sys.stderr, flush=True))
    print(table(worst))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"|".join(key): value for key, value in worst.items()}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
