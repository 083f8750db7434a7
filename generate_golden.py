"""Regenerate the goldens, cross-checked against the installed HF Transformers and Pillow.

    uv run generate_golden.py            # recompute every case; rewrite only the goldens that moved
    uv run generate_golden.py --check    # recompute in memory, print the drift report, write nothing
    uv run generate_golden.py --check --report drift.md   # the report also to a file (never into golden/)
    uv run generate_golden.py --case gray --no-full        # recompute only these; every other golden is kept
    uv run generate_golden.py --force gray                 # rewrite gray even if it reproduces (--force-all: all)
    uv run generate_golden.py --float32-copy photo_astronaut --out astronaut_f32.safetensors   # for MLX (no F64)
    uv run generate_golden.py --model DIR --image cat.png --prompt "Describe this image." --out mine.safetensors
                                 # a golden of your own HF Qwen2.5-VL checkpoint and input, to the logits

Exit codes: 0 no drift (or written), 1 drift, or a case where HF differs from the reference or refuses
the input (nothing written), 2 cannot check: the installed transformers is outside the supported range
or its API broke (a one-paragraph message names the version and the range; no traceback); 2 also when
some cases could not be checked on this version and nothing else drifted. Every case is tried: the
report lists each case whose cross-check failed, with its first stage and HF's message.

Every stored case of the registry (``goldenlib.cases.CASES``) is computed by the NumPy reference
(``goldenlib.build``), then compared stage by stage with HF (image stages must match exactly;
tower stages within ``goldenlib.tolerances.HF_CROSSCHECK_BOUND``; the positions cases' ids, token
types and mRoPE positions exactly, their cos/sin within ``POSITIONS_ROTARY_VS_HF_BOUND``). Nothing is written unless
every case passes. Then only what moved is written (``goldenlib.rewrite``): a case whose every stage
reproduces its golden within its drift bound (exact stages bit for bit) and whose metadata is the same
but for ``versions`` keeps its file byte for byte; new cases, drifted ones and ``--force``'d ones are
rewritten. ``CROSSCHECK.md`` is rewritten only with a golden or the verification record
(``golden/VERIFIED.json``, ``goldenlib.verified``: what the goldens were last verified with), which a
complete run rewrites only when a library version changed or it rewrote a golden. When anything moves,
golden/ is replaced in one step; when nothing does, nothing is touched. A partial run (``--case``,
``--no-full``) keeps every golden it does not recompute, byte for byte with its manifest entry, and the
manifest names what it skipped (``not_generated``) so readers say "not regenerated", not "tampered with".
"""

import argparse
import os
import shutil
import sys
import time
import traceback
import types


from goldenlib import store
from goldenlib.build import CrosscheckError, build_case, build_positions, build_weights, check_crosscheck
from goldenlib.cases import BY_NAME, CASES, TOWERS, stored_names, weights_case_name
from goldenlib.drift import drift_table, report as drift_report, version_changes


class CaseFailure:
    """A case whose HF cross-check did not pass: ``verdict`` is one of VERDICTS, ``stage`` the first
    stage HF differs at (pipeline order; "-" when HF stopped before producing stages)."""

    def __init__(self, case, verdict, stage, message):
        self.case, self.verdict, self.stage, self.message = case, verdict, stage, message


# the verdicts of a failed cross-check and their exit code: HF computing something else, or refusing an input
# it used to take, is a difference of HF's behaviour (1); a name or signature the installed release lacks means
# the case cannot be checked there (2)
VERDICTS = {"differs from HF": 1, "HF refuses this input": 1, "cannot check on this version": 2}


def case_failure(case, error):
    """The CaseFailure of ``error`` raised while building ``case``, or None when it is not HF's (a bug: re-raised)."""
    from goldenlib import hf_compat
    from goldenlib.drift import stage_order

    message = " ".join(str(error).split())
    if isinstance(error, CrosscheckError):
        stages = stage_order(case.name, error.stages) if error.stages else ["(see message)"]
        return CaseFailure(case.name, "differs from HF", stages[0], message)
    if isinstance(error, hf_compat.UnsupportedVersion):
        return CaseFailure(case.name, "cannot check on this version", "-", message)
    if not _from_hf_side(error):
        return None
    if isinstance(error, (ImportError, AttributeError, TypeError)):
        return CaseFailure(case.name, "cannot check on this version", "-", " ".join(cannot_check(error).split()))
    return CaseFailure(case.name, "HF refuses this input", "-", f"{type(error).__name__}: {message}")


def failures_report(failures):
    """Markdown: every case whose HF cross-check failed, with its verdict, first stage and HF's message."""
    if not failures:
        return "Every case cross-checked against HF."
    lines = ["## HF cross-check failures (reference vs the installed HF; these cases were not compared with the "
             "goldens)", "", "| case | verdict | first stage | message |", "|---|---|---|---|"]
    for failure in failures:
        lines.append(f"| {failure.case} | {failure.verdict} | {failure.stage} | {failure.message.replace('|', '/')} |")
    return "\n".join(lines + ["", f"{len(failures)} case(s) failed the HF cross-check"])


def exit_code(failures, rows=()):
    """1 when anything drifted or HF behaves differently, else 2 when a case could not be checked, else 0."""
    codes = {VERDICTS[f.verdict] for f in failures} | {1 for row in rows if not row.ok}
    return 1 if 1 in codes else 2 if 2 in codes else 0


def build_all(log, with_full=True, only=None, failures=None):
    """Compute every stored golden case in memory: {name: (tensors, metadata)}, plus the cross-check report.

    ``with_full``: False skips the cases that run the full-size tower. ``only``: a set of case
    names to build (the others are skipped), for ``--check --case``. ``failures``: a list that
    collects a :class:`CaseFailure` per case whose HF cross-check fails (every case is still tried);
    None: the first failure stops the run (SystemExit).
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
                check_crosscheck(case_report)
        except Exception as error:  # noqa: BLE001 - sorted by case_failure; anything not HF's is re-raised
            failure = case_failure(case, error)
            if failure is None:
                raise
            if failures is None:
                raise SystemExit(f"{failure.case}: {failure.verdict}: {failure.message}; nothing written") from None
            failures.append(failure)
            log(f"{case.name:22s} {failure.verdict} (first stage {failure.stage}): {failure.message}")
            continue
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


def _installed():
    """What the drift header compares each golden's ``versions`` with (torchvision included)."""
    from goldenlib.verified import library_versions

    return {**_versions(), "torchvision": library_versions()["torchvision"]}


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


def _from_hf_side(error):
    """Whether ``error`` was raised by transformers or by the HF-facing goldenlib modules (hf_*.py):
    an import or API break of the installed transformers, not a bug of the reference."""
    if isinstance(error, ImportError) and "transformers" in f"{error.name} {error}":
        return True
    if isinstance(error, AttributeError):  # a name missing on a transformers object or module
        obj = getattr(error, "obj", None)
        owner = obj.__name__ if isinstance(obj, types.ModuleType) else type(obj).__module__
        if owner.split(".")[0] == "transformers":
            return True
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return False
    last = frames[-1].filename.replace(os.sep, "/")
    return "/transformers/" in last or os.path.basename(last).startswith("hf_") and "/goldenlib/" in last


def cannot_check(error):
    """The one-paragraph message of exit code 2."""
    from goldenlib import hf_compat

    if isinstance(error, hf_compat.UnsupportedVersion):
        return f"cannot check: {error}"
    try:
        installed = hf_compat.installed_version()
    except hf_compat.UnsupportedVersion:
        installed = "(not installed)"
    where = traceback.extract_tb(error.__traceback__)[-1]
    return (f"cannot check: the HF cross-check failed with transformers {installed} (supported: transformers "
            f"{hf_compat.SUPPORTED}): {type(error).__name__}: {error} (at {os.path.basename(where.filename)}:"
            f"{where.lineno}). This is an import or API break of the installed transformers, not drift: install a "
            "supported version and run again; nothing was compared or written.")


def kept_goldens(folder, rebuilt, log):
    """The golden files of ``folder`` a partial regeneration keeps (not in ``rebuilt``), each verified
    against the old manifest: [(path, manifest entry)]. A file that fails verification stops the run."""
    folder = store.Path(folder)
    if not (folder / store.MANIFEST).is_file():
        return []
    manifest = store.load_manifest(folder)
    known, kept = set(stored_names()), []
    for file, entry in sorted(manifest["files"].items()):
        name = file.removesuffix(".safetensors")
        if name in rebuilt:
            continue
        if name not in known:
            log(f"{name:22s} dropped: no case of goldenlib/cases.py writes it any more")
            continue
        try:
            store.verify_file(folder / file, manifest)
        except store.GoldenIntegrityError as error:
            raise SystemExit(f"{error}; rebuild it (--case {name}) or regenerate everything; nothing written") from None
        kept.append((folder / file, entry))
    return kept


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="recompute and compare with golden/, write nothing")
    parser.add_argument("--no-full", action="store_true",
                        help="skip the full-size tower case (a regeneration keeps its stored golden)")
    parser.add_argument("--golden-dir", default=str(store.GOLDEN_DIR), help="golden folder (default: golden/)")
    parser.add_argument("--all-stages", action="store_true", help="--check: list unchanged stages too")
    parser.add_argument("--case", action="append", metavar="NAME",
                        help="only these cases (repeatable); a regeneration keeps every other golden as it is")
    parser.add_argument("--report", metavar="PATH", help="--check: also write the markdown report to PATH")
    parser.add_argument("--force", action="append", metavar="NAME",
                        help="rewrite this case even when it reproduces (repeatable; it must be among those built)")
    parser.add_argument("--force-all", action="store_true", help="rewrite every case built, whether it moved or not")
    parser.add_argument("--float32-copy", metavar="NAME",
                        help="write a float32 / int32 copy of golden NAME to --out (for readers without float64, "
                             "e.g. MLX) and exit; nothing else is computed or written")
    own = parser.add_argument_group("a golden of your own checkpoint (goldenlib.checkpoint_golden)")
    own.add_argument("--model", metavar="DIR", help="an HF Qwen2.5-VL checkpoint folder")
    own.add_argument("--image", action="append", metavar="FILE", help="an image file (repeatable, in prompt order)")
    own.add_argument("--video", action="append", metavar="PATH",
                     help="a video: a folder of frame images (sorted by name) or a .npy uint8 [T, H, W, 3] (repeatable)")
    own.add_argument("--video-fps", type=float, help="the videos' frame rate (default: HF's fallback, 24)")
    own.add_argument("--prompt", help="the text; one <|image_pad|> / <|video_pad|> per medium, or none (one run "
                                      "per medium is put in front)")
    own.add_argument("--out", metavar="FILE.safetensors", help="where to write the golden (or the --float32-copy)")
    own.add_argument("--layers", metavar="I,J,...", help="decoder layers whose stages are kept (default: all of up "
                                                         "to 8 layers, else every 8th, the last and the one before each)")
    own.add_argument("--blocks", metavar="I,J,...", help="tower blocks whose stages are kept (default: as --layers, "
                                                         "plus the full-attention blocks)")
    args = parser.parse_args(argv)
    if args.float32_copy is not None:
        return _float32_copy(parser, args)
    if args.model or args.out:
        return own_checkpoint(parser, args)
    folder = store.Path(args.golden_dir)
    only = set(args.case) if args.case else None
    known = set(stored_names())
    if only and only - known:
        parser.error(f"unknown case(s) {sorted(only - known)}; known: {sorted(known)}")
    if args.report and not args.check:
        parser.error("--report goes with --check")
    if (args.force or args.force_all) and args.check:
        parser.error("--force / --force-all go with a regeneration, not --check")
    for name in args.force or ():
        if name not in known:
            parser.error(f"--force: unknown case {name!r}; known: {sorted(known)}")
        if only is not None and name not in only:
            parser.error(f"--force {name}: not built by this run (add --case {name})")
        if args.no_full and any(not TOWERS[tower].stored_weights for tower in getattr(BY_NAME.get(name), "towers", ())):
            parser.error(f"--force {name}: --no-full skips it")
    from goldenlib import hf_compat

    try:
        hf_compat.check_version()
        return _run(args, folder, only)
    except hf_compat.UnsupportedVersion as error:
        print(cannot_check(error), file=sys.stderr)
        return 2
    except (ImportError, AttributeError, TypeError) as error:
        if not _from_hf_side(error):
            raise
        print(cannot_check(error), file=sys.stderr)
        return 2


def _float32_copy(parser, args):
    from goldenlib.float32_copy import write_float32_copy

    if args.float32_copy is None or args.out is None:
        parser.error("--float32-copy NAME and --out PATH go together")
    if args.float32_copy not in set(store.case_names(args.golden_dir)):
        parser.error(f"--float32-copy: no golden {args.float32_copy!r} in {args.golden_dir}; known: "
                     f"{', '.join(store.case_names(args.golden_dir))}")
    try:
        path = write_float32_copy(args.float32_copy, args.out, args.golden_dir)
    except (store.GoldenIntegrityError, ValueError) as error:
        print(f"generate_golden.py: {error}; nothing written", file=sys.stderr)
        return 1
    print(f"wrote {path}: {args.float32_copy} with float64 -> float32, int64 -> int32")
    return 0


def own_checkpoint(parser, args):
    """``--model``: the golden of a checkpoint folder on the given media and prompt. Exit 0 written, 1 HF
    disagrees (nothing written), 2 a folder, input or placeholder problem (nothing written)."""
    from goldenlib.checkpoint_golden import CheckpointCrosscheckError, checkpoint_golden, read_media

    if not (args.model and args.out and args.prompt is not None):
        parser.error("--model, --prompt and --out go together")
    if not args.out.endswith(".safetensors"):
        parser.error(f"--out must name a .safetensors file, got {args.out!r}")
    try:
        layers, blocks = (None if v is None else [int(i) for i in v.split(",")] for v in (args.layers, args.blocks))
    except ValueError:
        parser.error(f"--layers / --blocks take comma-separated integers, got {args.layers!r} / {args.blocks!r}")
    try:
        images, videos = read_media(args.image or (), args.video or ())
        tensors, metadata, _ = checkpoint_golden(args.model, args.prompt, images=images, videos=videos,
                                                 video_fps=args.video_fps, layers=layers, blocks=blocks, log=_log)
    except CheckpointCrosscheckError as error:
        print(f"{error}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as error:
        print(f"cannot make the golden: {error}; nothing written", file=sys.stderr)
        return 2
    out = store.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = store.write_case(out.parent, f".{out.stem}.partial", tensors, metadata)
    os.replace(partial, out)  # never a half-written golden under the name asked for
    print(f"wrote {out}: {len(tensors)} stages, {out.stat().st_size / 1e6:.1f} MB "
          f"(layers {metadata['stored_layers']}, tower blocks {metadata['stored_blocks']})")
    return 0


def _log(message):
    print(message, file=sys.stderr, flush=True)


def _run(args, folder, only):
    start = time.perf_counter()
    failures = []  # every case is tried; the report lists each one that fails
    cases, report = build_all(_log, with_full=not args.no_full, only=only, failures=failures)
    check_bounds(report)
    table = crosscheck_table(report)
    if args.check:
        # a case that failed the cross-check was not recomputed: its golden is not "stale"
        rows = drift_table(cases, folder, complete=only is None and not args.no_full and not failures)
        text = "\n".join(["## HF cross-check (reference float64 vs HF float32)", "", table, "",
                          failures_report(failures), "",
                          drift_report(rows, version_changes(folder, _installed()), show_all=args.all_stages)])
        print(text)
        if args.report:
            store.Path(args.report).write_text(text + "\n")
        return exit_code(failures, rows)
    if failures:  # nothing is written unless every case passes; the report names each failing case
        print(failures_report(failures))
        print(f"\nnothing written: {len(failures)} case(s) failed the HF cross-check", file=sys.stderr)
        return exit_code(failures)

    forced = set(cases) if args.force_all else set(args.force or ())
    return write_what_moved(folder, cases, report, table, partial=only is not None or args.no_full,
                            selected=only is not None, forced=forced, start=start)


def write_what_moved(folder, cases, report, table, partial=False, selected=False, forced=(), start=None):
    """Write what moved into golden folder ``folder``; 0. ``cases``: the recomputed {name: (tensors,
    metadata)}; ``report``, ``table``: their HF cross-check. Each case whose stored golden reproduces
    keeps its bytes, the others (and ``forced`` ones) are rewritten; nothing is touched when nothing
    moved. ``partial``: not every case was recomputed (the others are kept; ``selected``: by --case,
    else by --no-full), so the verification record is left as it is."""
    from goldenlib import verified
    from goldenlib.rewrite import METADATA_ONLY, assess, within_bounds

    start = time.perf_counter() if start is None else start
    folder = store.Path(folder)
    manifest = store.load_manifest(folder) if (folder / store.MANIFEST).is_file() else None
    rewrite, rows = {}, []
    for name, (tensors, metadata) in cases.items():
        reason, case_rows = assess(name, tensors, metadata, folder, manifest)
        rows += case_rows
        if reason is None and name in forced:
            reason = "forced (--force)"
        elif reason is not None and reason.startswith(METADATA_ONLY):  # values reproduce: keep their bytes,
            stored, old = store.read_case(name, folder)  # and what they were written with
            cases[name] = (stored, {**metadata, **{k: old[k] for k in ("versions",) if k in old}})
        if reason is not None:
            rewrite[name] = reason
            _log(f"{name:22s} rewrite: {reason}")
    kept_built = sorted(set(cases) - set(rewrite))
    kept = kept_goldens(folder, set(cases), _log) if partial else []
    kept += [(folder / f"{name}.safetensors", manifest["files"][f"{name}.safetensors"]) for name in kept_built]
    skipped = sorted(set(stored_names()) - set(cases) - {path.stem for path, _ in kept})
    why = "not selected by --case" if selected else "skipped by --no-full"
    dropped = sorted(set(manifest["files"]) - {path.name for path, _ in kept} - {f"{n}.safetensors" for n in cases}
                     if manifest else [])
    from goldenlib import hf_folders

    extra = {"versions": _manifest_versions(manifest, {name: cases[name][1] for name in rewrite}),
             "hf_folders": hf_folders.expected_manifest()}  # golden/hf/: written with every replacement
    if skipped:
        extra["not_generated"] = {f"{name}.safetensors": why for name in skipped}
    old_record = verified.load(folder)
    record_why = None if partial else verified.needs_update(old_record, rewrite)
    manifest_moves = manifest is None or {k: v for k, v in manifest.items() if k != "files"} != {
        "format_version": store.FORMAT_VERSION, **extra}
    if not rewrite and not dropped and not manifest_moves and record_why is None:
        print(f"nothing to write: all {len(cases)} recomputed goldens reproduce within their bounds (kept byte for "
              f"byte), verification record current ({time.perf_counter() - start:.0f}s)")
        return 0
    target = store.AtomicFolder(folder)
    try:
        for name in rewrite:
            store.write_case(target.path, name, *cases[name])
        if hf_folders.write(target.path) != extra["hf_folders"]:
            raise RuntimeError("golden/hf/ folders came out other than expected; nothing written")
        for path, _ in kept:
            shutil.copy2(path, target.path / path.name)
        (target.path / "CROSSCHECK.md").write_text(_crosscheck_text(folder, partial, rewrite, report, table,
                                                                    record_why is not None))
        if record_why is not None:
            _log(f"verification record: {record_why}")
            verified.write(target.path, verified.record({
                "cases": len(cases), "rewritten": dict(sorted(rewrite.items())), "kept": len(kept_built),
                "within_bounds": within_bounds(rows)}))
        elif (folder / verified.VERIFIED).is_file():
            shutil.copy2(folder / verified.VERIFIED, target.path / verified.VERIFIED)
        new_manifest = store.write_manifest(target.path, extra=extra)
        for path, entry in kept:  # copied byte for byte: the same manifest entry
            if new_manifest["files"][path.name] != entry:
                raise RuntimeError(f"kept golden {path.name} changed while copying; nothing written")
        target.commit()
    except BaseException:
        target.discard()
        raise
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    print(table)
    print(f"\nrewrote {len(rewrite)} golden file(s) ({', '.join(sorted(rewrite)) or 'none'}), kept {len(kept)} byte "
          f"for byte, in {folder} ({size / 1e6:.1f} MB) in {time.perf_counter() - start:.0f}s")
    if dropped:
        print(f"dropped (no case of goldenlib/cases.py writes them): {', '.join(dropped)}")
    if record_why is not None:
        print(f"verification record {verified.VERIFIED} rewritten: {record_why}")
    if skipped:
        print(f"not generated ({why}): {', '.join(skipped)}")
    return 0


def _manifest_versions(manifest, rewritten):
    """The manifest's ``versions``: what the goldens without their own ``versions`` metadata (the
    weights) were written with. The old value stays unless such a golden is rewritten now."""
    if manifest is None or "versions" not in manifest or any("versions" not in meta for meta in rewritten.values()):
        return _versions()
    return manifest["versions"]


def _crosscheck_text(folder, partial, rewrite, report, table, record_moves):
    """CROSSCHECK.md: the old text unless a golden is rewritten or the verification record moves.
    A complete run's table covers every case; a partial one appends the rewritten cases' table."""
    path = folder / "CROSSCHECK.md"
    old = path.read_text() if path.is_file() else None
    fresh = "# HF cross-check of the tower goldens (generated)\n\n" + table + "\n"
    if old is None:
        return fresh
    if partial:
        own = [entry for entry in report if entry[0] in rewrite]
        if not own:
            return old
        return old + f"\n## Rebuilt by a partial run: {', '.join(sorted(rewrite))}\n\n" + crosscheck_table(own) + "\n"
    return fresh if rewrite or record_moves else old


if __name__ == "__main__":
    sys.exit(main())
