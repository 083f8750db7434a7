"""Parity report: run the implementation under test (the torch port by default) against a golden
case and say, stage by stage, where it differs and whether interpolation or precision is why.

    uv run parity_report.py                                   # photo_astronaut, tiny_a, float32 on the CPU
    uv run parity_report.py --case full_size_3b --precision float32,bfloat16 --interpolation exact,float
    uv run parity_report.py --case seed_rocket_224 --interpolation exact,float   # the seed scenario
    uv run parity_report.py --case photo_chelsea --interpolation torchvision  # the PIL vs torchvision backend
    uv run parity_report.py --case tv_photo_chelsea --interpolation exact,torchvision,pil  # HF's default path
    uv run parity_report.py --case video_5_frames                 # the port's video transform + tower
    uv run parity_report.py --list                            # the cases
    uv run parity_report.py --case photo_astronaut --dump my_port.safetensors   # any port's stage dump
    uv run parity_report.py --golden mine.safetensors --dump my_port.safetensors  # against a generate_golden.py --model golden

Per stage: shape, max abs, mean abs, max relative error (max|a-b| / max|golden|) of the whole
run (accumulated) and of the stage fed its golden input (local), the tolerance
(``goldenlib.tolerances.PARITY_TOLERANCES``) and a verdict; the first stage out of tolerance is in bold.
Variants, each a switch, alone or together:

  --interpolation exact,torchvision,pil,float,bilinear   other resizes of the case's input image;
        each one's pixels go through the NumPy reference in float64 (interpolation only). exact is
        the port's transform on the golden's backend (PIL, or torchvision for tv_* cases); a
        torchvision or pil variant on the other backend's golden is reported as the named backend
        difference and judged exactly against the same input's golden on its own backend
        (video cases: exact only, the port's video transform)
  --precision float32,bfloat16,float16               the implementation at that dtype on the golden
        pixels (precision only), and on each variant's pixels (combined)
  --device cpu,cuda                                  cuda is skipped (with a note) when unavailable

  --dump PATH                                        compare a stage dump instead of running an
        implementation: a safetensors file of any subset of the case's stages under the golden's
        names (docs/golden-format.md), in any float dtype, written by any implementation; each
        stage judged at its dtype's tolerance (--precision DTYPE: the dtype it computed in, when it
        stored another), --config restricts it to one tower. Ends with the first stage out of
        tolerance, an attribution line and the local differences (parity.dump). Without --case the
        dump's metadata "case" is used when present.
  --golden FILE                                      with --dump: judge it against a golden written by
        `generate_golden.py --model` (your own checkpoint and input) instead of a stored case, exactly
        as --case does (local verdicts while the golden's checkpoint folder is there)

The markdown goes to stdout and to --out; --plot writes a PNG of the error per stage (log scale)
when matplotlib is importable. Exit status: 0 (written), 2 (bad arguments); with --dump: 0 every
stage in the dump within tolerance, 1 otherwise, 2 no stage of the case in the dump or a stage that
cannot be compared (named).
"""

import argparse
import sys
from pathlib import Path

DEFAULT_CASE = "photo_astronaut"


def _split(text):
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_args(argv=None):
    from parity.implementations import DTYPES
    from parity.variants import VARIANTS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default=None, help=f"golden case or scenario (default {DEFAULT_CASE}; with --dump: "
                                                     "the dump's metadata 'case' when present)")
    parser.add_argument("--config", default=None,
                        help="tower config: tiny_a, tiny_b (image cases, two_frames), 3b (full_size_3b, and the "
                             "in-memory scenarios: built on the fly, about a minute); default: the case's first")
    parser.add_argument("--precision", default=None,
                        help=f"comma-separated dtypes of the implementation: {','.join(DTYPES)} "
                             "(default float32, or none when only --interpolation is given)")
    parser.add_argument("--device", default="cpu,cuda", help="comma-separated devices (default cpu,cuda: cuda when "
                                                            "available)")
    parser.add_argument("--interpolation", default="",
                        help=f"comma-separated interpolation variants: {','.join(VARIANTS)} (default: none)")
    parser.add_argument("--impl", default="port",
                        help="implementation under test: port (default), reference, or module:factory with "
                             "factory(config, weights, dtype, device) (see parity/implementations.py)")
    parser.add_argument("--out", default="reports/parity.md", help="markdown file (default reports/parity.md; "
                                                                  "'' for none)")
    parser.add_argument("--plot", default="reports/parity.png", help="PNG plot (default reports/parity.png; '' for "
                                                                    "none)")
    parser.add_argument("--list", action="store_true", help="list the cases and their tower configs, then exit")
    parser.add_argument("--dump", default=None, help="a safetensors stage dump of any implementation to compare "
                                                     "with the case's golden (see above)")
    parser.add_argument("--golden", default=None, help="with --dump: a golden file of generate_golden.py --model to "
                                                       "judge the dump against, instead of --case")
    args = parser.parse_args(argv)
    if args.golden is not None:
        if args.dump is None:
            parser.error("--golden judges a --dump: give both")
        if args.case is not None:
            parser.error("--golden replaces --case: give one")
        if not args.golden.endswith(".safetensors") or not Path(args.golden).is_file():
            parser.error(f"--golden {args.golden!r}: not a .safetensors file")
        args.case = args.golden
    if args.dump is not None:
        _check_dump_args(parser, args)
    if args.case is None:
        args.case = DEFAULT_CASE

    args.variants = _split(args.interpolation)
    bad = [v for v in args.variants if v not in VARIANTS]
    if bad:
        parser.error(f"unknown --interpolation {bad}; choose from {', '.join(VARIANTS)}")
    if args.precision is None:
        args.dtypes = [] if args.variants else ["float32"]
    else:
        args.dtypes = _split(args.precision)
    bad = [d for d in args.dtypes if d not in DTYPES]
    if bad:
        parser.error(f"unknown --precision {bad}; choose from {', '.join(DTYPES)}")
    args.devices = _split(args.device)
    bad = [d for d in args.devices if d not in ("cpu", "cuda")]
    if bad:
        parser.error(f"unknown --device {bad}; choose from cpu, cuda")
    if "torchvision" in args.variants:
        from parity.variants import torchvision_available

        if not torchvision_available():
            args.variants.remove("torchvision")
            args.skipped = ["--interpolation torchvision: torchvision does not import; skipped"]
    args.skipped = getattr(args, "skipped", [])
    return parser, args


def _check_dump_args(parser, args):
    """--dump compares a file: the switches that run an implementation are refused, not ignored."""
    from parity.dump_file import FLOAT_DTYPES

    clashes = [name for name, given in (("--interpolation", args.interpolation), ("--impl", args.impl != "port"),
                                        ("--device", args.device != "cpu,cuda")) if given]
    if clashes:
        parser.error(f"--dump compares a file; {', '.join(clashes)} run an implementation: use one or the other")
    if args.precision is not None and (len(_split(args.precision)) != 1 or args.precision not in FLOAT_DTYPES):
        parser.error(f"with --dump, --precision is the one dtype the implementation computed in "
                     f"({', '.join(FLOAT_DTYPES)}), not {args.precision!r}")
    if args.case is None:
        from parity.dump_file import DumpError, dump_metadata

        try:
            args.case = dump_metadata(args.dump).get("case")
        except (OSError, DumpError):
            args.case = None


def run_dump(parser, args, log):
    """parity_report.py --dump: compare the file, print and write the report; the exit code."""
    from parity.dump import compare_dump, dump_markdown
    from parity.dump_file import DumpError
    from parity.printing import plot_runs

    try:
        report = compare_dump(args.case, args.dump, config=args.config, dtype=args.precision)
    except DumpError as error:
        print(f"parity_report.py: cannot read the dump: {error}", file=sys.stderr)
        return 2
    except ValueError as error:
        parser.error(str(error))
    markdown = dump_markdown(report)
    print(markdown)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(markdown + "\n")
        log(f"wrote {out}")
    if args.plot and report:
        plot = Path(args.plot)
        plot.parent.mkdir(parents=True, exist_ok=True)
        if plot_runs([report.as_run()], plot, title=f"{args.case}: dump {Path(args.dump).name}") is None:
            log("matplotlib is not importable: no plot written (the markdown report is complete)")
        else:
            log(f"wrote {plot}")
    return report.exit_code


def main(argv=None):
    parser, args = parse_args(argv)
    from parity.cases import case_names, load_case
    from parity.printing import plot_runs
    from parity.report import build_runs, report_markdown

    if args.list:
        for name in case_names():
            print(name)
        return 0

    def log(message):
        print(message, file=sys.stderr, flush=True)

    if args.dump is not None:
        return run_dump(parser, args, log)
    if args.case not in case_names():
        parser.error(f"unknown --case {args.case!r}; known: {', '.join(case_names())}")

    case = load_case(args.case, configs=(args.config,) if args.config else None)
    config = args.config or next(iter(case.towers), None)  # None: the case stores no tower (tv_*)
    if config is not None and config not in case.towers:
        parser.error(f"case {args.case} has tower configs {sorted(case.towers)}, not {config!r}")
    runs, notes = build_runs(case, config, dtypes=args.dtypes, devices=args.devices, variants=args.variants,
                             impl_spec=args.impl, log=log)
    markdown = report_markdown(case, config, runs, args.skipped + notes)
    print(markdown)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(markdown + "\n")
        log(f"wrote {out}")
    if args.plot:
        plot = Path(args.plot)
        plot.parent.mkdir(parents=True, exist_ok=True)
        if plot_runs(runs, plot, title=f"{case.name} / {config or 'image stages'}") is None:
            log("matplotlib is not importable: no plot written (the markdown report is complete)")
        else:
            log(f"wrote {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
