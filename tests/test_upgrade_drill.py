"""The upgrade drill: a simulated Pillow downgrade to 12.1 (horizontal pass always first) on a copy of
golden/ as another machine wrote it (tests/other_machine.py), followed step by step as docs/upgrades.md
"Upgrading transformers or Pillow" says; the drift report's shape; and the generator's exit codes
(0 no drift, 1 drift, 2 cannot check).

Pillow 12.1 is simulated in-process, on both sides of the cross-check: ``PIL.Image.Image.resize``
(what HF's processor calls) runs the two bicubic passes as two one-axis Pillow resizes, horizontal
first, and the reference reads Pillow 12.1's pass-order rule (``reference.bicubic``).
"""

import importlib.metadata
import json

import numpy as np
import PIL.Image
import pytest

import generate_golden
import reference
from goldenlib import hf_compat, store
from goldenlib.cases import BY_NAME
from other_machine import other_machine_copy

AFFECTED, UNAFFECTED = "gray", "noise"  # gray: 97x131 -> 84x140, Pillow 13 runs it vertical first


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def golden_copy(tmp_path):
    """golden/ as another machine wrote it (float stages a few ulp off this machine's): the drill
    holds wherever it runs, whichever BLAS kernel wrote the goldens."""
    return other_machine_copy(store.GOLDEN_DIR, tmp_path / "golden")


@pytest.fixture
def pillow_12_1(monkeypatch):
    original_resize = PIL.Image.Image.resize
    original_version = importlib.metadata.version

    def resize(self, size, resample=None, box=None, reducing_gap=None):
        width, height = size
        if (resample == PIL.Image.Resampling.BICUBIC and box is None and reducing_gap is None
                and width != self.width and height != self.height):  # both passes: horizontal, then vertical
            return original_resize(original_resize(self, (width, self.height), resample), size, resample)
        return original_resize(self, size, resample, box, reducing_gap)

    monkeypatch.setattr(PIL.Image.Image, "resize", resize)
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "12.1.0" if name.lower() == "pillow" else original_version(name))
    monkeypatch.setattr(reference.bicubic, "installed_pillow_version", lambda: (12, 1))
    # the simulation is Pillow 12.1's rule: the reference with that rule equals the patched Pillow
    image = BY_NAME[AFFECTED].images()[0]
    rgb = np.repeat(image[:, :, None], 3, axis=2)
    expected = np.asarray(PIL.Image.fromarray(rgb).resize((140, 84), PIL.Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(reference.resize_bicubic(rgb, 84, 140, pillow_version=(12, 1)), expected)
    assert not np.array_equal(reference.resize_bicubic(rgb, 84, 140, pillow_version=(13, 0)), expected)


def _main(capsys, *args):
    code = generate_golden.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow  # four case builds with the HF cross-check (about 30 s)
def test_pillow_downgrade_drill(golden_copy, pillow_12_1, capsys, monkeypatch, tmp_path):
    cases = ["--case", AFFECTED, "--case", UNAFFECTED, "--golden-dir", str(golden_copy)]
    before = _snapshot(golden_copy)
    old_manifest = json.loads((golden_copy / store.MANIFEST).read_text())

    # 1. --check: exit 1, resized is the first drift of the affected case and overall; the header names Pillow
    code, out, _ = _main(capsys, "--check", *cases, "--report", str(tmp_path / "drift.md"))
    assert code == 1, out
    assert f"first drift: case {AFFECTED}, stage resized" in out
    assert f"- {AFFECTED}: resized (1 local," in out
    assert f"| {AFFECTED} | rescaled | exact |" in out and "(inherited)" in out
    assert not any(line.startswith(f"| {UNAFFECTED} |") for line in out.splitlines())
    assert "| pillow | 13.0.0 | 12.1.0 |" in out
    assert (tmp_path / "drift.md").read_text() == out
    assert _snapshot(golden_copy) == before  # --check writes nothing

    # 2. regenerate both: only the drifted case is rewritten; every other golden (the unaffected case,
    # whose float stages differ from this machine's within their bounds, included) stays byte-identical
    code, out, err = _main(capsys, *cases)
    assert code == 0, out
    assert f"{AFFECTED:22s} rewrite: drifted" in err and f"{UNAFFECTED:22s} rewrite" not in err
    after = _snapshot(golden_copy)
    manifest = json.loads((golden_copy / store.MANIFEST).read_text())
    assert sorted(after) == sorted(before)
    changed = {name for name in after if after[name] != before[name]}
    assert changed == {f"{AFFECTED}.safetensors", store.MANIFEST, "CROSSCHECK.md"}
    for name, entry in old_manifest["files"].items():
        if name != f"{AFFECTED}.safetensors":
            assert manifest["files"][name] == entry, name
    assert "not_generated" not in manifest
    _, meta = store.read_case(AFFECTED, golden_copy)
    assert meta["versions"]["pillow"] == "12.1.0"

    # 3. --check is clean again, and the golden tests pass against the regenerated copy
    code, out, _ = _main(capsys, "--check", *cases)
    assert code == 0, out
    monkeypatch.setattr(store, "GOLDEN_DIR", golden_copy)
    import test_goldens

    test_goldens.test_manifest_lists_exactly_the_files_with_their_sha256()
    for name in (AFFECTED, UNAFFECTED):
        test_goldens.test_reference_reproduces_image_stages(BY_NAME[name])


def test_unsupported_transformers_exits_2_without_traceback(monkeypatch, capsys):
    monkeypatch.setattr(hf_compat, "installed_version", lambda: "4.40.0")
    code, out, err = _main(capsys, "--check", "--case", AFFECTED)
    assert code == 2
    assert "4.40.0" in err and hf_compat.SUPPORTED in err and "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1  # one paragraph


def test_hf_api_break_exits_2_naming_the_version(monkeypatch, capsys):
    import transformers.image_transforms

    original = transformers.image_transforms.normalize

    def normalize(image, mean, std):  # an API break: the keyword HF's callers pass is gone
        return original(image, mean, std)

    monkeypatch.setattr(transformers.image_transforms, "normalize", normalize)
    code, out, err = _main(capsys, "--check", "--case", AFFECTED)
    assert code == 2, out + err
    assert "TypeError" in err and hf_compat.installed_version() in err and hf_compat.SUPPORTED in err
    assert "Traceback" not in err + out


def test_hf_import_break_exits_2(monkeypatch, capsys):
    from goldenlib import build

    def broken(*args, **kwargs):
        from transformers import Qwen2VLImageProcessorPilGone  # noqa: F401 - a name this transformers lacks

    monkeypatch.setattr(build, "crosscheck", broken)
    code, out, err = _main(capsys, "--check", "--case", AFFECTED)
    assert code == 2, out + err
    assert "Qwen2VLImageProcessorPilGone" in err and "Traceback" not in err + out


def test_reference_bug_is_not_hidden_as_cannot_check(monkeypatch, capsys):
    from goldenlib import build

    def buggy(case, **kwargs):
        raise TypeError("a bug in the reference, not in transformers")

    monkeypatch.setattr(build, "build_case", buggy)
    monkeypatch.setattr(generate_golden, "build_case", buggy)
    with pytest.raises(TypeError, match="a bug in the reference"):
        generate_golden.main(["--check", "--case", AFFECTED])


def _from_transformers(message):
    """A function that raises ValueError(message) from a frame whose file lies in transformers, as HF's own
    input checks do (4.49's smart_resize refuses a side under 28)."""
    namespace = {}
    code = f"def refuse(*args, **kwargs):\n    raise ValueError({message!r})\n"
    exec(compile(code, "/site-packages/transformers/models/qwen2_vl/image_processing_qwen2_vl.py", "exec"), namespace)
    return namespace["refuse"]


@pytest.mark.slow  # two case builds with the HF cross-check, twice
def test_every_case_is_reported_and_an_hf_refusal_is_drift(golden_copy, monkeypatch, capsys):
    from goldenlib import hf_image

    refuse, original = _from_transformers("height:10 or width:12 must be larger than factor:28"), hf_image.hf_preprocess

    def preprocess(images, *args, **kwargs):  # HF refuses the affected case's image only
        return refuse() if images[0].shape[:2] == BY_NAME[AFFECTED].images()[0].shape[:2] else original(
            images, *args, **kwargs)

    monkeypatch.setattr(hf_image, "hf_preprocess", preprocess)
    cases = ["--case", AFFECTED, "--case", UNAFFECTED, "--golden-dir", str(golden_copy)]
    before = _snapshot(golden_copy)
    code, out, err = _main(capsys, "--check", *cases)
    assert code == 1, out + err
    assert f"| {AFFECTED} | HF refuses this input | - | ValueError: height:10 or width:12" in out
    assert f"{UNAFFECTED}" in err and "1 case(s) failed the HF cross-check" in out  # the other case still ran
    assert "Traceback" not in out + err
    code, out, err = _main(capsys, *cases)  # a regeneration: reports the case and writes nothing
    assert code == 1 and "nothing written" in err and f"| {AFFECTED} | HF refuses this input |" in out
    assert _snapshot(golden_copy) == before


def test_case_failures_are_sorted_by_cause():
    from goldenlib.build import CrosscheckError

    case = BY_NAME[AFFECTED]
    differ = generate_golden.case_failure(case, CrosscheckError("differs", ["normalized", "tiny_a.output", "resized"]))
    assert (differ.verdict, differ.stage) == ("differs from HF", "resized")  # first in pipeline order
    try:
        _from_transformers("no")()
    except ValueError as error:
        assert generate_golden.case_failure(case, error).verdict == "HF refuses this input"
    missing = generate_golden.case_failure(case, hf_compat.UnsupportedVersion("4.57.6", "a name is missing"))
    assert missing.verdict == "cannot check on this version"
    assert generate_golden.case_failure(case, ValueError("a bug of ours")) is None  # not HF's: re-raised


def test_exit_code_drift_beats_cannot_check():
    failure = generate_golden.CaseFailure
    cannot, refused = failure("a", "cannot check on this version", "-", ""), failure("b", "HF refuses this input", "-", "")
    drifted = type("Row", (), {"ok": False})()
    assert generate_golden.exit_code([]) == 0
    assert generate_golden.exit_code([cannot]) == 2
    assert generate_golden.exit_code([cannot, refused]) == 1
    assert generate_golden.exit_code([cannot], [drifted]) == 1


def test_report_lists_what_moved_and_collapses_float_noise():
    """A row per stage beyond its bound (or exact stage that changed); float noise within its bound
    is one line per kind and cause, the cause read from the changed versions of each case."""
    from goldenlib.drift import DriftRow, report

    rows = [DriftRow(case, f"tiny_a.blocks.{i}.output", "float64", 1e-15, 1.5e-15, 1e-10, True)
            for case in ("noise", "checkerboard") for i in range(4)]
    rows += [DriftRow("gray", "tiny_a.output", "float64", 0.0, 0.0, 1e-10, True),  # unchanged
             DriftRow("full_size_3b", "3b.output", "float32", 1e-8, 6e-8, 1e-6, True),
             DriftRow("two_frames", "tiny_b.output", "float64", 2e-15, 1e-15, 1e-10, True),
             DriftRow("gray", "resized", "exact", 3.0, 0.01, 0.0, False, "local"),
             DriftRow("gray", "rescaled", "exact", 0.01, 0.01, 0.0, False, "inherited")]
    changes = {"openblas_kernel": ("Haswell", "SkylakeX", ["noise", "checkerboard", "full_size_3b", "gray"]),
               "pillow": ("13.0.0", "12.1.0", ["noise", "checkerboard", "gray"])}
    text = report(rows, changes)
    table = [line for line in text.splitlines() if line.startswith(("| gray", "| noise", "| checkerboard",
                                                                       "| full_size_3b", "| two_frames"))]
    assert table == ["| gray | resized | exact | 3 | 0.01 | 0 | **DRIFT** |",
                     "| gray | rescaled | exact | 0.01 | 0.01 | 0 | **DRIFT** (inherited) |"]
    assert "- 2 cases, 8 float64 stages within 1e-10 (max rel 1.5e-15): BLAS kernel Haswell -> SkylakeX" in text
    assert "- 1 case, 1 float32 stage within 1e-06 (max rel 6e-08): BLAS kernel Haswell -> SkylakeX" in text
    assert ("- 1 case, 1 float64 stage within 1e-10 (max rel 1e-15): no library version or BLAS kernel changed "
            "since the goldens were written") in text
    assert "| pillow | 13.0.0 | 12.1.0 |" in text
    assert "13 stages compared, 12 changed, 2 beyond tolerance" in text
    assert text.endswith("first drift: case gray, stage resized")
    assert len([line for line in report(rows, changes, show_all=True).splitlines()
                if line.startswith(("| noise |", "| checkerboard |"))]) == 8  # --all-stages lists them
    quiet = report(rows[:8], changes)
    assert "No stage beyond its bound, no exact stage changed." in quiet and "| case |" not in quiet
