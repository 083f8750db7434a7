"""The goldens hold on a machine other than the one that wrote them.

On a copy of golden/ whose float stages sit a few ulp from this machine's (``other_machine``: what
another BLAS kernel, CPU or libm writes), a regeneration keeps every byte, ``--check`` exits 0 with
no per-stage row (the float noise is one line naming its cause), and the golden tests pass. The
upgrade drill runs on such a copy too (tests/test_upgrade_drill.py). No test sets OPENBLAS_CORETYPE.
"""

import contextlib
import inspect
import io

import numpy as np
import pytest

import generate_golden
from goldenlib import store
from goldenlib.blas import openblas_kernel
from goldenlib.drift import drift_bound
from goldenlib.tolerances import DRIFT_BOUNDS, rel_error
from other_machine import SIMULATED_KERNEL, other_machine_copy

# one case of each kind with float stages (image + towers, tower-only, positions, video) and a weights file
CASES = ("noise", "two_frames", "pos_video_t3", "video_1_frame", "weights_tiny_a")


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def other_machine(tmp_path):
    return other_machine_copy(store.GOLDEN_DIR, tmp_path / "golden")


def _main(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = generate_golden.main([str(arg) for arg in args])
    return code, out.getvalue(), err.getvalue()


def test_the_copy_moves_float_bits_only(other_machine):
    """The simulation is real (every case with float stages moved) and within the drift bounds."""
    for file in store.load_manifest()["files"]:
        name = file.removesuffix(".safetensors")
        landed, _ = store.read_case(name)
        copy, meta = store.read_case(name, other_machine)
        assert sorted(copy) == sorted(landed), name
        moved = 0
        for stage, value in landed.items():
            kind = drift_bound(stage, value, name)
            assert copy[stage].dtype == value.dtype and copy[stage].shape == value.shape, (name, stage)
            if kind == "exact":
                np.testing.assert_array_equal(copy[stage], value, err_msg=f"{name}: {stage}")
            else:
                # a few ulp of the stage's dtype, far inside its drift bound
                assert rel_error(copy[stage], value) <= min(3 * np.finfo(value.dtype).eps, DRIFT_BOUNDS[kind]), (
                    name, stage)
                moved += not np.array_equal(copy[stage], value)
        floats = [s for s, v in landed.items() if drift_bound(s, v, name) != "exact"]
        assert moved == len(floats), (name, moved, len(floats))
        if "versions" in meta:
            assert meta["versions"]["openblas_kernel"] == SIMULATED_KERNEL


@pytest.mark.slow  # runs the generator on five cases (HF cross-check) twice, then on one
def test_regeneration_keeps_the_other_machines_bytes_and_check_is_quiet(other_machine):
    selection = [arg for case in CASES for arg in ("--case", case)] + ["--golden-dir", other_machine]
    before = _snapshot(other_machine)

    code, out, err = _main(*selection)
    assert code == 0, out + err
    assert "nothing to write" in out
    assert _snapshot(other_machine) == before  # every file, manifest and CROSSCHECK.md included

    code, out, err = _main("--check", *selection)
    assert code == 0, out + err
    assert not [line for line in out.splitlines() if line.startswith(tuple(f"| {case} |" for case in CASES))], out
    assert "No stage beyond its bound, no exact stage changed." in out
    assert "float64 stages within 1e-10 (max rel" in out
    assert f"BLAS kernel {SIMULATED_KERNEL} -> {openblas_kernel()}" in out
    assert "0 beyond tolerance" in out and "first drift" not in out

    # --force rewrites the named golden with this machine's bits, and nothing else moves
    code, out, err = _main("--force", "noise", "--case", "noise", "--golden-dir", other_machine)
    assert code == 0, out + err
    after = _snapshot(other_machine)
    assert {name for name in after if after[name] != before.get(name)} == {
        "noise.safetensors", store.MANIFEST, "CROSSCHECK.md"}
    _, meta = store.read_case("noise", other_machine)
    assert meta["versions"]["openblas_kernel"] == openblas_kernel()


def _calls(module, tmp_path):
    """(test id, function, kwargs) for every test of ``module`` and each of its parametrizations;
    a fixture other than tmp_path fails here, so a new one in the module is not skipped silently."""
    for name, func in sorted(vars(module).items()):
        if not name.startswith("test_") or not callable(func):
            continue
        combos = [{}]
        for mark in getattr(func, "pytestmark", []):
            if mark.name != "parametrize":
                continue
            argnames, values = mark.args[0], mark.args[1]
            names = [n.strip() for n in argnames.split(",")] if isinstance(argnames, str) else list(argnames)
            combos = [{**c, **dict(zip(names, v if len(names) > 1 else (v,)))} for c in combos for v in values]
        for i, kwargs in enumerate(combos):
            for arg in inspect.signature(func).parameters:
                if arg == "tmp_path":
                    kwargs["tmp_path"] = tmp_path / f"{name}-{i}"
                    kwargs["tmp_path"].mkdir()
                elif arg not in kwargs:
                    raise AssertionError(f"{name} asks for fixture {arg!r}: teach _calls to give it")
            yield f"{name}[{i}]", func, kwargs


@pytest.mark.slow  # every golden test once more, on the copy
def test_golden_tests_pass_on_the_other_machine(other_machine, monkeypatch, tmp_path):
    import test_goldens

    monkeypatch.setattr(store, "GOLDEN_DIR", other_machine)
    ran = []
    for test_id, func, kwargs in _calls(test_goldens, tmp_path):
        func(**kwargs)
        ran.append(test_id)
    assert len(ran) >= 40, ran
