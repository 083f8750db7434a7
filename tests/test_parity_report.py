"""The parity report (issue 5): attribution on constructed cases, the seed scenario, the command.

* a known resize change (float-domain resize, Pillow BILINEAR) is attributed to the resize stage:
  the first stage out of tolerance is ``resized``, and the later image steps fed their golden
  input are exact;
* a bfloat16 cast in a float32 implementation is attributed to the tower: image stages exact,
  tower stages flagged; the same port run honestly in bfloat16 is within the bfloat16 bounds;
* the exact path (the port's transform) shows 0.0 at every image stage;
* the seed scenario reproduces its measured pixel_values difference (see docs/parity-report.md);
* ``parity_report.py`` runs end to end and writes the markdown (and the PNG with matplotlib, and
  still the markdown without it);
* torchvision backend (issue 14): the port's torchvision path and the torchvision variant show 0.0
  on every ``tv_*`` golden; torchvision on a PIL golden (and PIL on a torchvision one) is the named
  backend difference, its size the difference of the two goldens of the same input, and the
  variant is exact against its own golden; planted bugs (unfused normalize, no antialias) fail it;
* video: the port's video transform gives every video golden's outputs exactly, the tower on them
  is within tolerance, and a planted padding bug is caught.
"""

import contextlib
import io
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from goldenlib.cases import TV_IMAGE_CASES, VIDEO_CASES
from goldenlib.tolerances import DRIFT_BOUNDS, SEED_FLOAT_RESIZE_MAX_BAND, SEED_FLOAT_RESIZE_MEAN_BAND
from helpers import case_of
from parity import variants as parity_variants
from parity.cases import SCENARIOS, backend_twin, scenario_case
from parity.implementations import PortImplementation
from parity.report import BACKEND_DIFFERENCE, Run, Session, attribution_lines, build_runs, image_rows, report_markdown
from parity.stages import first_failure
from parity.video import video_rows, video_transform

ROOT = Path(__file__).resolve().parents[1]
IMAGE_CASE_SAMPLE = ["photo_astronaut", "photo_chelsea", "checkerboard", "gray", "rgba", "two_images",
                     "tall_vertical_first", "above_max_pixels", "exact_multiple"]



@pytest.mark.parametrize("name", IMAGE_CASE_SAMPLE)
def test_exact_path_shows_zero(name):
    rows, pixel_values, _ = image_rows(case_of(name), "exact", "float32")
    assert {r.stage.split(".")[0] for r in rows} >= {"rgb", "resized", "normalized", "pixel_values"}
    for row in rows:
        assert row.max_abs == 0.0 and row.local == 0.0, row
    np.testing.assert_array_equal(pixel_values, case_of(name).pixel_values)


@pytest.mark.parametrize("variant", ["float", "bilinear"])
@pytest.mark.parametrize("name", ["photo_astronaut", "photo_coffee", "two_images"])
def test_resize_change_is_attributed_to_the_resize_stage(name, variant):
    session = Session(case_of(name), "tiny_b")
    (run,) = session.interpolation([variant])
    first = first_failure(run.rows)
    assert first is not None and first.stage.split(".")[0] == "resized", first
    assert run.attribution == "interpolation"
    rows = {r.stage: r for r in run.rows}
    assert rows["pixel_values"].max_abs > 1e-3  # a real pixel difference ...
    assert rows["output"].rel > 1e-4  # ... carried through the float64 tower
    assert rows["output"].local < 1e-12  # ... which itself is exact on golden inputs
    for stage, row in rows.items():  # the steps after the resize are exact when fed golden input
        if stage.split(".")[0] in ("normalized", "pixel_values"):
            assert row.local == 0.0, stage
    line = "\n".join(attribution_lines([run]))
    assert f"interpolation ({variant})" in line and "first stage out of tolerance: resized" in line


class _SilentBfloat16(PortImplementation):
    """A "float32" implementation that runs in bfloat16 inside: a planted precision bug."""

    def __init__(self, config, weights):
        super().__init__(config, weights, "bfloat16", "cpu")
        self.dtype = "float32"  # judged against the float32 tolerances


def test_bfloat16_cast_is_attributed_to_precision():
    case = case_of("photo_chelsea")
    tower = case.towers["tiny_a"]
    session = Session(case, "tiny_a", impl_spec=None)
    (run,) = session.precision(["float32"], ["cpu"])  # honest float32: all within tolerance
    assert first_failure(run.rows) is None

    from parity.report import Run
    from parity.stages import compare_tower

    planted = _SilentBfloat16(tower.config, tower.weights())
    run = Run("precision", "exact", "planted", "float32", "cpu", session._exact_image_rows())
    run.rows += compare_tower(planted, case, "tiny_a")
    image = [r for r in run.rows if r.kind == "image"]
    assert image and all(r.max_abs == 0.0 for r in image)  # image stages exact
    first = first_failure(run.rows)
    assert first is not None and first.stage == "patch_embed"  # the first tower stage is flagged
    assert run.attribution == "tower"
    assert sum(not r.ok for r in run.rows if r.kind not in ("image", "index", "rotary")) >= 8

    (honest,) = session.precision(["bfloat16"], ["cpu"])  # the same numbers, declared: within bounds
    assert all(r.ok for r in honest.rows), first_failure(honest.rows)
    line = attribution_lines([honest])[0]
    assert "precision (bfloat16, cpu)" in line and "image stages exact (0.0)" in line


def test_combined_run_separates_the_contributions():
    runs, _ = build_runs(case_of("photo_rocket"), "tiny_a", dtypes=["bfloat16"], devices=["cpu"],
                         variants=["exact", "float"])
    kinds = [(r.kind, r.variant, r.dtype) for r in runs]
    assert kinds == [("interpolation", "exact", "float64"), ("interpolation", "float", "float64"),
                     ("precision", "exact", "bfloat16"), ("combined", "float", "bfloat16")]
    out = {(r.kind, r.variant): r.row("output").rel for r in runs}
    # The float64 tower moves only in its GEMMs' last bits between BLAS kernels (goldenlib/blas.py):
    # the same bound on every machine, whichever kernel wrote the golden.
    assert out[("interpolation", "exact")] <= DRIFT_BOUNDS["float64"]
    assert out[("interpolation", "float")] > 1e-4 and out[("precision", "exact")] > 1e-3
    assert out[("combined", "float")] > max(out[("interpolation", "float")], out[("precision", "exact")]) / 2
    summary = "\n".join(attribution_lines(runs))
    assert "combined (float + bfloat16, cpu)" in summary and "interpolation alone" in summary
    assert "precision alone" in summary


def test_seed_scenario_numbers():
    """The float-domain resize on the seed scenario: max = one final rounding (half a uint8 step),
    attributed to the resize stage; the exact path shows 0.0."""
    case = scenario_case(SCENARIOS["seed_rocket_224"], configs=())
    assert case.images[0].shape == (213, 224, 3) and case.grid_thw.tolist() == [[1, 16, 16]]
    rows, _, _ = image_rows(case, "float", "float32")
    by_stage = {r.stage: r for r in rows}
    pixel = by_stage["pixel_values"]
    assert SEED_FLOAT_RESIZE_MAX_BAND[0] <= pixel.max_abs <= SEED_FLOAT_RESIZE_MAX_BAND[1], pixel
    assert SEED_FLOAT_RESIZE_MEAN_BAND[0] <= pixel.mean_abs <= SEED_FLOAT_RESIZE_MEAN_BAND[1], pixel
    assert by_stage["resized"].max_abs <= 0.5 + 1e-3  # no clipped overshoot: only the final rounding
    assert first_failure(rows).stage == "resized"
    exact, _, _ = image_rows(case, "exact", "float32")
    assert all(r.max_abs == 0.0 for r in exact)


def _run_report(tmp_path, *args, block_matplotlib=False):
    """``python parity_report.py ...`` run in this process (runpy as __main__: no interpreter start and
    torch import per call); its exit status, stdout and stderr as a CompletedProcess."""
    out, plot = tmp_path / "parity.md", tmp_path / "parity.png"
    argv = ["parity_report.py", "--case", "photo_coffee", "--config", "tiny_b", "--precision", "float32",
            "--interpolation", "exact,float", "--device", "cpu", "--out", str(out), "--plot", str(plot), *args]
    stdout, stderr = io.StringIO(), io.StringIO()
    saved_argv, hidden = sys.argv, {}
    if block_matplotlib:  # as `sys.modules['matplotlib'] = None` does in a fresh interpreter
        hidden = {name: sys.modules.pop(name) for name in list(sys.modules)
                  if name == "matplotlib" or name.startswith("matplotlib.")}
        sys.modules["matplotlib"] = None
    try:
        sys.argv = argv
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                runpy.run_path(str(ROOT / "parity_report.py"), run_name="__main__")
                code = 0
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    finally:
        sys.argv = saved_argv
        if block_matplotlib:
            del sys.modules["matplotlib"]
            sys.modules.update(hidden)
    return subprocess.CompletedProcess(argv, code, stdout.getvalue(), stderr.getvalue()), out, plot


@pytest.mark.slow  # the whole command
def test_command_writes_markdown_and_plot(tmp_path):
    result, out, plot = _run_report(tmp_path)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert text.strip() == result.stdout.strip()
    for expected in ("## interpolation only: float resize -> tower in reference float64",
                     "## precision only: golden pixel_values -> torch_port float32 cpu",
                     "## combined: float resize -> torch_port float32 cpu", "## Attribution",
                     "| **`resized`** |", "◀ first out of tolerance", "max rel (local)"):
        assert expected in text, expected
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not plot.exists()
    else:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # the whole command
def test_command_without_matplotlib_still_writes_markdown(tmp_path):
    result, out, plot = _run_report(tmp_path, block_matplotlib=True)
    assert result.returncode == 0, result.stderr
    assert "matplotlib is not importable" in result.stderr
    assert out.is_file() and "## Attribution" in out.read_text()
    assert not plot.exists()


@pytest.mark.slow  # the whole command
def test_command_rejects_bad_arguments(tmp_path):
    for bad in (["--interpolation", "nearest"], ["--precision", "int8"], ["--case", "nope"]):
        result, _, _ = _run_report(tmp_path, *bad)
        assert result.returncode == 2, (bad, result.stderr)


def test_report_markdown_lists_notes():
    case = case_of("two_frames")
    runs, notes = build_runs(case, "tiny_a", dtypes=["float32"], devices=["cpu"], variants=["float"])
    text = report_markdown(case, "tiny_a", runs, notes)
    assert "no input image: interpolation variants skipped" in text
    assert "## precision only" in text


# ------------------------------------------------------------------ torchvision backend and video (issue 14)

TV_PHOTO_PAIRS = [("photo_astronaut", "tv_photo_astronaut"), ("photo_chelsea", "tv_photo_chelsea"),
                  ("photo_coffee", "tv_photo_coffee"), ("photo_rocket", "tv_photo_rocket")]


@pytest.mark.parametrize("variant", ["exact", "torchvision"])
@pytest.mark.parametrize("name", [case.name for case in TV_IMAGE_CASES])
def test_torchvision_paths_are_exact_on_their_own_golden(name, variant):
    """exact (the port's torchvision backend) and torchvision (built here from torchvision) show 0.0."""
    case = case_of(name)
    assert case.backend == "torchvision" and not case.towers
    rows, pixel_values, _ = image_rows(case, variant, "float32")
    assert [r.stage for r in rows] == ["rgb", "resized", "rescaled_normalized", "pixel_values", "image_grid_thw"]
    for row in rows:
        assert row.max_abs == 0.0 and row.local == 0.0, row
    np.testing.assert_array_equal(pixel_values, case.pixel_values)


def test_backend_twins_are_the_same_input():
    for pil, tv in TV_PHOTO_PAIRS + [("tiny_upscaled", "tv_upscale"), ("aspect_1_150", "tv_aspect_1_150")]:
        assert backend_twin(pil, "torchvision") == tv and backend_twin(tv, "pil") == pil
        np.testing.assert_array_equal(case_of(pil).images[0], case_of(tv).images[0])
    assert backend_twin("tv_one_axis", "pil") is None  # no PIL golden of that input
    assert backend_twin("photo_chelsea", "pil") == "photo_chelsea"


@pytest.mark.parametrize("pil, tv", TV_PHOTO_PAIRS)
def test_torchvision_on_a_pil_golden_is_a_named_backend_difference(pil, tv):
    """A port on torchvision's resize against a PIL golden: the difference is the backend's, its
    size the difference between the two goldens of the same input; against its own golden: 0.0."""
    runs = Session(case_of(pil), "tiny_a").interpolation(["torchvision"])
    assert [(r.kind, r.variant) for r in runs] == [("interpolation", "torchvision"), ("own_golden", "torchvision")]
    run, own = runs
    assert run.attribution == "backend" and first_failure(run.rows).stage == "resized"
    expected = np.abs(case_of(tv).pixel_values.astype(np.float64) - case_of(pil).pixel_values).max()
    assert run.row("pixel_values").max_abs == expected > 0
    assert run.row("output").rel > 1e-4 and run.row("output").local < 1e-12  # the tower itself is exact
    assert own.golden == tv and first_failure(own.rows) is None
    assert all(r.max_abs == 0.0 for r in own.rows)
    lines = "\n".join(attribution_lines(runs))
    assert f"{BACKEND_DIFFERENCE} (variant on torchvision, golden on PIL)" in lines
    assert f"pixel_values max {expected:.4g}" in lines
    assert f"torchvision vs its own golden {tv}: exact (0.0 at every image stage)" in lines


@pytest.mark.parametrize("pil, tv", TV_PHOTO_PAIRS[:2])
def test_pil_on_a_torchvision_golden_is_the_same_named_difference(pil, tv):
    """Vice versa: the port's PIL backend against a torchvision golden (no tower stored: image stages only)."""
    session = Session(case_of(tv), None)
    runs = session.interpolation(["exact", "pil"])
    assert [(r.kind, r.variant) for r in runs] == [("interpolation", "exact"), ("interpolation", "pil"),
                                                   ("own_golden", "pil")]
    exact, run, own = runs
    assert exact.attribution == "none" and not exact.backend_difference
    assert run.attribution == "backend" and first_failure(run.rows).stage == "resized"
    expected = np.abs(case_of(tv).pixel_values.astype(np.float64) - case_of(pil).pixel_values).max()
    assert run.row("pixel_values").max_abs == expected
    assert own.golden == pil and all(r.max_abs == 0.0 for r in own.rows)
    assert session.precision(["float32"], ["cpu"]) == [] and "stores no tower" in session.notes[-1]
    assert f"{BACKEND_DIFFERENCE} (variant on PIL, golden on torchvision)" in "\n".join(attribution_lines(runs))


def _planted_unfused(resized):
    """A planted bug: rescale then normalize in float32 (not HF's fused (x - 255 mean) / (255 std))."""
    chw = np.asarray(resized).transpose(2, 0, 1).astype(np.float32) * np.float32(1 / 255)
    return (chw - parity_variants.MEAN32) / parity_variants.STD32


def _planted_no_antialias(self, rgb, height, width):
    """A planted bug: torchvision's bicubic without antialias."""
    import torch
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    chw = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    return TF.resize(chw, [height, width], interpolation=InterpolationMode.BICUBIC, antialias=False).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("bug, stage", [(("normalize_from_resized", staticmethod(_planted_unfused)), "rescaled_normalized"),
                                        (("resize", _planted_no_antialias), "resized")])
def test_a_planted_torchvision_bug_fails_its_own_golden(monkeypatch, bug, stage):
    """Against its own golden any difference is a failure, found at the stage that has the bug,
    whether the case is the torchvision golden itself or the PIL golden of the same input."""
    monkeypatch.setattr(parity_variants._Torchvision, *bug)
    rows, _, _ = image_rows(case_of("tv_photo_chelsea"), "torchvision", "float32")
    first = first_failure(rows)
    assert first is not None and first.stage == stage and first.max_abs > 0
    runs = Session(case_of("photo_chelsea"), "tiny_b").interpolation(["torchvision"])
    own = runs[-1]
    assert own.kind == "own_golden" and first_failure(own.rows).stage == stage
    assert "torchvision vs its own golden tv_photo_chelsea: NOT exact" in attribution_lines(runs)[-1]


@pytest.mark.parametrize("name", [case.name for case in VIDEO_CASES])
def test_video_case_port_transform_and_tower(name):
    """A video golden: the port's video transform gives HF's outputs exactly and the port's float32
    tower on them stays within the float32 tolerances."""
    case = case_of(name)
    runs = Session(case, "tiny_b").precision(["float32"], ["cpu"])
    (run,) = runs
    assert [r.stage for r in run.rows[:3]] == ["pixel_values_videos", "video_grid_thw", "second_per_grid_ts"]
    assert all(r.max_abs == 0.0 for r in run.rows[:3])
    assert first_failure(run.rows) is None and run.row("output") is not None
    assert "image stages exact (0.0)" in attribution_lines(runs)[0]


def test_video_case_exact_variant_through_the_float64_tower():
    case = case_of("video_5_frames")
    session = Session(case, "tiny_a")
    runs = session.interpolation(["exact", "float"])
    assert [(r.kind, r.variant) for r in runs] == [("interpolation", "exact")]
    assert "float skipped" in session.notes[0]
    assert runs[0].title == "interpolation only: the port's video transform -> tower in reference float64"
    assert runs[0].row("pixel_values_videos").max_abs == 0.0
    assert runs[0].row("output").rel <= DRIFT_BOUNDS["float64"]


def test_a_planted_video_bug_is_caught():
    """Padding with a black frame instead of repeating the last one (5 frames -> 6)."""
    case = case_of("video_5_frames")
    honest = video_transform(case.params)

    def zero_padded(sample):
        clip = np.asarray(sample["video"])
        return honest({**sample, "video": np.concatenate([clip, np.zeros_like(clip[:1])])})

    rows, _, _ = video_rows(case, transform=zero_padded)
    first = first_failure(rows)
    assert first is not None and first.stage == "pixel_values_videos" and first.max_abs > 1
    assert {r.stage: r.max_abs for r in rows}["video_grid_thw"] == 0.0  # still grid_t 3


@pytest.mark.parametrize("argv, expected", [
    (["--case", "tv_photo_coffee", "--interpolation", "exact,torchvision,pil"],
     ["torchvision backend, no tower stored", "## pil resize vs its own golden `photo_coffee` (exact expected)",
      BACKEND_DIFFERENCE, "image stages only"]),
    (["--case", "photo_coffee", "--config", "tiny_b", "--interpolation", "torchvision", "--precision", "float32"],
     ["## combined: torchvision resize -> torch_port float32 cpu", f"; {BACKEND_DIFFERENCE}",
      "torchvision vs its own golden tv_photo_coffee: exact"]),
    (["--case", "video_fps_sampling", "--config", "tiny_a"],
     ["| `pixel_values_videos` | 32x1176 | 0 |", "| `second_per_grid_ts` | 1 | 0 |", "image stages exact (0.0)"]),
])
def test_command_torchvision_and_video(tmp_path, argv, expected):
    import parity_report

    out = tmp_path / "parity.md"
    assert parity_report.main([*argv, "--device", "cpu", "--out", str(out), "--plot", ""]) == 0
    text = out.read_text()
    for piece in expected:
        assert piece in text, piece
