"""docs/figures.py draws every figure, and the committed figures show what the reference computes now.

The PNG bytes depend on the matplotlib and FreeType versions, so the check is on the data drawn:
the script writes it to figures.json next to the PNGs, and a fresh run must give the committed file's
numbers (integers exactly, floats to 1e-12: libm's cos/sin may differ in the last bit between CPUs).
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "figures"


def load_script():
    spec = importlib.util.spec_from_file_location("docs_figures", ROOT / "docs" / "figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    script = load_script()
    out = tmp_path_factory.mktemp("figures")
    script.main(["--out", str(out)])
    return script, out


def same(got, want, path="figures.json"):
    """Raise AssertionError naming the first place where two JSON trees differ."""
    assert type(got) is type(want) or {type(got), type(want)} <= {int, float}, (path, got, want)
    if isinstance(want, dict):
        assert got.keys() == want.keys(), (path, sorted(got), sorted(want))
        for key in want:
            same(got[key], want[key], f"{path}/{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), (path, len(got), len(want))
        for i, (g, w) in enumerate(zip(got, want)):
            same(g, w, f"{path}[{i}]")
    elif isinstance(want, float):
        assert np.isclose(got, want, rtol=1e-12, atol=1e-15), (path, got, want)
    else:
        assert got == want, (path, got, want)


def test_script_writes_every_figure(fresh):
    script, out = fresh
    for name in script.FIGURES:
        png = (out / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000, name


def test_committed_figures_are_current(fresh):
    """A change in the reference that moves a figure: rerun `uv run docs/figures.py` and commit."""
    script, out = fresh
    same(json.loads((out / "figures.json").read_text()), json.loads((COMMITTED / "figures.json").read_text()))
    spec = (ROOT / "docs" / "spec.md").read_text()
    for name in script.FIGURES:
        assert (COMMITTED / f"{name}.png").is_file(), name
        assert f"(figures/{name}.png)" in spec, f"docs/spec.md does not show figures/{name}.png"


def test_figures_show_the_spec_examples(fresh):
    """The drawn data says what docs/spec.md says in words (a figure of the wrong thing fails here)."""
    script, _ = fresh
    data = script.figure_data()
    assert np.array(data["merge_blocks"]["row_of_patch"])[:2, :2].tolist() == [[0, 1], [2, 3]]  # one 2x2 block
    windows = data["windows"]  # merged 5x6 -> windows of 4x4, 4x2, 1x4, 1x2 tokens
    assert windows["cu_window_seqlens"] == [0, 64, 96, 112, 120]
    assert windows["window_index"][16:18] == [4, 5]  # the second window starts at the top row's 5th token
