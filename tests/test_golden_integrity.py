"""Goldens are replaced atomically, verified by sha256, and --check names a tampered stage."""

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from goldenlib import store

ROOT = Path(__file__).resolve().parents[1]


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}


@pytest.fixture
def golden_copy(tmp_path):
    folder = tmp_path / "golden"
    shutil.copytree(store.GOLDEN_DIR, folder)
    return folder


@pytest.mark.slow  # subprocess
def test_writer_killed_midway_leaves_old_goldens(golden_copy):
    before = _snapshot(golden_copy)
    # A writer that builds a new golden folder slowly, killed with SIGKILL while writing.
    script = f"""
import sys, time, numpy as np
sys.path.insert(0, {str(ROOT)!r})
from goldenlib import store
target = store.AtomicFolder({str(golden_copy)!r})
for i in range(1000):
    store.write_case(target.path, f"case{{i}}", {{"x": np.full(1000, i, np.float32)}}, {{"case": str(i)}})
    print(i, flush=True)
    time.sleep(0.01)
target.commit()
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for _ in range(5):
        proc.stdout.readline()  # a few files written into the temporary folder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _snapshot(golden_copy) == before
    leftovers = list(golden_copy.parent.glob(".golden-tmp-*"))
    assert leftovers, "the killed writer's temporary folder should be what is left"
    store.AtomicFolder(golden_copy).discard()  # the next run clears stale temporary folders
    assert not list(golden_copy.parent.glob(".golden-tmp-*"))
    assert _snapshot(golden_copy) == before


@pytest.mark.slow  # subprocess
def test_generate_golden_killed_midway(golden_copy):
    before = _snapshot(golden_copy)
    proc = subprocess.Popen([sys.executable, str(ROOT / "generate_golden.py"), "--no-full",
                             "--golden-dir", str(golden_copy)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    # the first case is done: generation is under way. Libraries may log first (transformers
    # imports torchao, which warns through torch's logger), so skip lines until the case's.
    seen = []
    while not seen or ("photo_astronaut" not in seen[-1] and seen[-1] and len(seen) < 50):
        seen.append(proc.stderr.readline())
    assert "photo_astronaut" in seen[-1], seen
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _snapshot(golden_copy) == before


def test_failed_write_discards_and_keeps_old(golden_copy, monkeypatch):
    before = _snapshot(golden_copy)
    target = store.AtomicFolder(golden_copy)
    store.write_case(target.path, "a", {"x": np.zeros(3)}, {})
    target.discard()
    assert _snapshot(golden_copy) == before
    assert not target.path.exists()


def test_commit_replaces_and_keeps_readme(golden_copy):
    target = store.AtomicFolder(golden_copy)
    store.write_case(target.path, "only", {"x": np.arange(4.0)}, {"case": "only"})
    store.write_manifest(target.path)
    target.commit()
    names = sorted(p.name for p in golden_copy.iterdir())
    assert names == ["MANIFEST.json", "README.md", "only.safetensors"]
    tensors, meta = store.read_case("only", golden_copy)
    assert meta["case"] == "only" and tensors["x"].tolist() == [0, 1, 2, 3]


def test_corrupted_golden_named(golden_copy):
    path = golden_copy / "gray.safetensors"
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(store.GoldenIntegrityError, match="gray.safetensors"):
        store.read_case("gray", golden_copy)


def test_missing_manifest_is_a_clear_error(golden_copy):
    (golden_copy / store.MANIFEST).unlink()
    with pytest.raises(store.GoldenIntegrityError, match="no manifest"):
        store.read_case("gray", golden_copy)


def _tamper(folder, case, stage, delta):
    path = folder / f"{case}.safetensors"
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    tensors[stage] = tensors[stage].copy()
    tensors[stage].flat[7] += delta
    safetensors.numpy.save_file(tensors, str(path), metadata=metadata)
    store.write_manifest(folder, extra={k: v for k, v in json.loads((folder / store.MANIFEST).read_text()).items()
                                        if k not in ("files", "format_version")})


def _check(folder, *cases):
    """``generate_golden.py --check --golden-dir folder --case ...``, run as the script's ``main`` in
    this process (the killed-midway test above runs the script itself): its exit code and output."""
    import generate_golden

    args = ["--check", "--golden-dir", str(folder)]
    for case in cases:
        args += ["--case", case]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = generate_golden.main(args)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


@pytest.mark.slow  # runs the generator (HF cross-check)
def test_check_passes_on_landed_goldens_and_names_a_tampered_stage(golden_copy):
    clean = _check(golden_copy, "noise")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "0 beyond tolerance" in clean.stdout

    _tamper(golden_copy, "noise", "tiny_a.blocks.2.output", 1e-3)
    result = _check(golden_copy, "noise")
    assert result.returncode == 1, result.stdout
    assert "first drift: case noise, stage tiny_a.blocks.2.output" in result.stdout


@pytest.mark.slow  # runs the generator (HF cross-check)
def test_check_names_a_changed_image_stage(golden_copy):
    _tamper(golden_copy, "gray", "normalized", np.float32(1e-6))
    result = _check(golden_copy, "gray")
    assert result.returncode == 1
    assert "first drift: case gray, stage normalized" in result.stdout


@pytest.mark.slow  # runs the generator (HF cross-check)
def test_check_names_a_changed_position_and_rotary_stage(golden_copy):
    clean = _check(golden_copy, "pos_image_video")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "0 beyond tolerance" in clean.stdout
    _tamper(golden_copy, "pos_image_video", "position_ids", 1)
    result = _check(golden_copy, "pos_image_video")
    assert result.returncode == 1, result.stdout
    assert "first drift: case pos_image_video, stage position_ids" in result.stdout
    _tamper(golden_copy, "pos_video_t3", "mrope_sin", 1e-9)  # above the float64 drift bound (1e-10 relative)
    result = _check(golden_copy, "pos_video_t3")
    assert result.returncode == 1, result.stdout
    assert "first drift: case pos_video_t3, stage mrope_sin" in result.stdout


def test_skipped_golden_reads_as_not_regenerated_and_unlisted_as_tampering(golden_copy):
    # what a --no-full run into a folder without full_size_3b leaves: no file, a not_generated entry
    manifest = json.loads((golden_copy / store.MANIFEST).read_text())
    del manifest["files"]["full_size_3b.safetensors"]
    manifest["not_generated"] = {"full_size_3b.safetensors": "skipped by --no-full"}
    (golden_copy / "full_size_3b.safetensors").rename(golden_copy.parent / "elsewhere.safetensors")
    (golden_copy / store.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(store.GoldenIntegrityError, match=r"not regenerated \(skipped by --no-full\)"):
        store.read_case("full_size_3b", golden_copy)
    # a file nobody generated, put there by hand: tampering
    (golden_copy.parent / "elsewhere.safetensors").rename(golden_copy / "extra.safetensors")
    with pytest.raises(store.GoldenIntegrityError, match="not listed in MANIFEST.json: it was not written by"):
        store.read_case("extra", golden_copy)
    with pytest.raises(store.GoldenIntegrityError, match="never generated"):
        store.read_case("nowhere", golden_copy)


# ------------------------------------------------------------------ regeneration writes only what moved


def _stored_cases(folder):
    """Every golden of ``folder`` as a regeneration recomputes it on the machine that wrote it:
    {name: (tensors, metadata)} read back (metadata decoded, as the builders return it)."""
    return {name: store.read_case(name, folder) for name in store.case_names(folder)}


def _write(folder, cases, **kwargs):
    """``generate_golden.write_what_moved`` with the folder's own cross-check table: (code, stdout)."""
    import generate_golden

    table = (folder / "CROSSCHECK.md").read_text().split("\n\n", 1)[1].split("\n\n")[0].rstrip("\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = generate_golden.write_what_moved(folder, cases, [], table, **kwargs)
    return code, out.getvalue()


def _changed(before, folder):
    after = _snapshot(folder)
    return {name for name in set(before) | set(after) if before.get(name) != after.get(name)}


def test_why_rewrite_keeps_what_reproduces_and_names_what_moved(golden_copy):
    from goldenlib.rewrite import why_rewrite

    manifest = store.load_manifest(golden_copy)
    tensors, meta = store.read_case("gray", golden_copy)
    assert why_rewrite("gray", tensors, meta, golden_copy, manifest) is None
    noisy = dict(tensors, **{"tiny_a.output": tensors["tiny_a.output"] + 3 * np.spacing(tensors["tiny_a.output"])})
    assert why_rewrite("gray", noisy, meta, golden_copy, manifest) is None  # a few ulp: another kernel
    moved = dict(tensors, **{"tiny_a.output": tensors["tiny_a.output"] * (1 + 1e-9)})
    assert why_rewrite("gray", moved, meta, golden_copy, manifest).startswith(
        "drifted: 1 stage(s), first tiny_a.output (float64, rel 1e-09 > 1e-10)")
    resized = tensors["resized"].copy()
    resized.flat[5] += 1
    assert "first resized (changed)" in why_rewrite("gray", dict(tensors, resized=resized), meta, golden_copy,
                                                   manifest)
    assert "first tiny_a.output" in why_rewrite("gray", {k: v for k, v in tensors.items() if k != "tiny_a.output"},
                                                meta, golden_copy, manifest)
    cast = dict(tensors, normalized=tensors["normalized"].astype(np.float64))  # same values, another dtype
    assert "first normalized" in why_rewrite("gray", cast, meta, golden_copy, manifest)
    upgraded = dict(meta, versions={**meta["versions"], "transformers": "9.9.9"})
    assert why_rewrite("gray", tensors, upgraded, golden_copy, manifest) is None  # written-with stays
    assert why_rewrite("gray", tensors, dict(meta, description="other"), golden_copy, manifest) == (
        "metadata changed: description")
    weights, weights_meta = store.read_case("weights_tiny_a", golden_copy)
    key = sorted(weights)[0]
    nudged = dict(weights, **{key: weights[key] + np.spacing(weights[key])})  # weights are exact
    assert why_rewrite("weights_tiny_a", nudged, weights_meta, golden_copy, manifest).startswith("drifted")
    assert why_rewrite("brand_new", tensors, meta, golden_copy, manifest) == "new"


def test_regeneration_where_nothing_moved_touches_nothing(golden_copy):
    before = _snapshot(golden_copy)
    code, out = _write(golden_copy, _stored_cases(golden_copy))
    assert code == 0 and "nothing to write" in out
    assert _snapshot(golden_copy) == before


def test_an_upgrade_with_no_drift_changes_only_the_verification_record(golden_copy):
    from goldenlib import verified

    record = json.loads((golden_copy / verified.VERIFIED).read_text())
    record["verified_with"]["transformers"] = "5.23.0"  # the goldens were last verified before an upgrade
    (golden_copy / verified.VERIFIED).write_text(json.dumps(record))
    before = _snapshot(golden_copy)
    code, out = _write(golden_copy, _stored_cases(golden_copy))
    assert code == 0 and "rewrote 0 golden file(s)" in out, out
    assert _changed(before, golden_copy) == {verified.VERIFIED}
    new = verified.load(golden_copy)
    assert new["verified_with"] == verified.library_versions() and new["machine"] == verified.machine()
    assert new["result"]["rewritten"] == {} and new["result"]["kept"] == len(store.case_names(golden_copy))
    # each golden still says what it was written with
    assert store.read_case("gray", golden_copy)[1]["versions"] == store.read_case("gray")[1]["versions"]


def test_a_moved_stage_rewrites_that_golden_only(golden_copy):
    from goldenlib import verified

    cases = _stored_cases(golden_copy)
    tensors, meta = cases["gray"]
    resized = tensors["resized"].copy()
    resized.flat[5] += 1
    cases["gray"] = (dict(tensors, resized=resized), meta)
    old_manifest = store.load_manifest(golden_copy)
    before = _snapshot(golden_copy)
    code, out = _write(golden_copy, cases)
    assert code == 0 and "rewrote 1 golden file(s) (gray)" in out, out
    # a complete run that rewrites a golden also records its verification (the CROSSCHECK.md text is
    # this run's table, here the same as before)
    assert _changed(before, golden_copy) == {"gray.safetensors", store.MANIFEST, verified.VERIFIED}
    manifest = store.load_manifest(golden_copy)
    assert {k: v for k, v in manifest["files"].items() if k != "gray.safetensors"} == {
        k: v for k, v in old_manifest["files"].items() if k != "gray.safetensors"}
    assert manifest["versions"] == old_manifest["versions"]  # the weights' written-with stays
    assert store.read_case("gray", golden_copy)[0]["resized"].flat[5] == resized.flat[5]
    assert "gray" in verified.load(golden_copy)["result"]["rewritten"]
    # the same run again: nothing moved any more, nothing is touched
    before = _snapshot(golden_copy)
    assert "nothing to write" in _write(golden_copy, cases)[1]
    assert _snapshot(golden_copy) == before


def test_force_rewrites_a_golden_that_reproduces(golden_copy):
    tensors, meta = store.read_case("noise", golden_copy)
    cases = {"noise": (tensors, dict(meta, versions={**meta["versions"], "transformers": "9.9.9"}))}
    before = _snapshot(golden_copy)
    assert "nothing to write" in _write(golden_copy, cases, partial=True, selected=True)[1]  # written-with stays
    code, out = _write(golden_copy, cases, partial=True, selected=True, forced={"noise"})
    assert code == 0 and "rewrote 1 golden file(s) (noise)" in out, out
    assert _changed(before, golden_copy) == {"noise.safetensors", store.MANIFEST}
    assert store.read_case("noise", golden_copy)[1]["versions"]["transformers"] == "9.9.9"
    assert "not_generated" not in store.load_manifest(golden_copy)  # the others were kept


@pytest.mark.parametrize("args, message", [
    (["--force", "nowhere"], "--force: unknown case 'nowhere'"),
    (["--case", "gray", "--force", "noise"], "--force noise: not built by this run (add --case noise)"),
    (["--no-full", "--force", "full_size_3b"], "--force full_size_3b: --no-full skips it"),
    (["--check", "--force-all"], "--force / --force-all go with a regeneration, not --check"),
])
def test_force_arguments_are_checked(args, message, capsys):
    import generate_golden

    with pytest.raises(SystemExit) as exit_info:
        generate_golden.main(args)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_no_full_keeps_full_size_3b(golden_copy):
    """What a --no-full run writes: the cases it recomputed that moved; full_size_3b kept byte for byte
    with its manifest entry (or, where there is none, named as not generated)."""
    cases = {name: case for name, case in _stored_cases(golden_copy).items() if name != "full_size_3b"}
    tensors, meta = cases["gray"]
    cases["gray"] = (dict(tensors, normalized=tensors["normalized"] + np.float32(1e-3)), meta)
    entry = store.load_manifest(golden_copy)["files"]["full_size_3b.safetensors"]
    before = _snapshot(golden_copy)
    code, out = _write(golden_copy, cases, partial=True)
    assert code == 0 and "rewrote 1 golden file(s) (gray)" in out, out
    assert _changed(before, golden_copy) == {"gray.safetensors", store.MANIFEST}  # report empty: CROSSCHECK kept
    manifest = store.load_manifest(golden_copy)
    assert manifest["files"]["full_size_3b.safetensors"] == entry and "not_generated" not in manifest
    store.verify_file(golden_copy / "full_size_3b.safetensors", manifest)

    (golden_copy / "full_size_3b.safetensors").unlink()  # a folder that never had it
    manifest["files"].pop("full_size_3b.safetensors")
    (golden_copy / store.MANIFEST).write_text(json.dumps(manifest))
    assert _write(golden_copy, cases, partial=True)[0] == 0
    assert store.load_manifest(golden_copy)["not_generated"] == {"full_size_3b.safetensors": "skipped by --no-full"}
