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
