"""The language side of the dump verdicts (issues 28 and 29): HF's own whole model with hooks on the lm_*
goldens, clean and with planted mistakes; the verdict each gets is the one docs/porting.md's language table
states (the table is read here, so the page cannot drift from the report)."""

import re
from pathlib import Path

import pytest

from lm_dumps import hf_dump
from parity import compare_dump

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| `hf_dump\((.*?)\)` \|\s*([^|]*?)\s*\| (\d) \| `([\w.]+|none)` \| (\w+) \| ([^|]+) \|")


def documented():
    rows = [ROW.match(line) for line in (ROOT / "docs" / "porting.md").read_text().splitlines()]
    return [m.groups() for m in rows if m]


def test_the_page_lists_every_planted_mistake():
    calls = " ".join(call for call, *_ in documented())
    for planted in ("positions_1d", "sections", "scatter_shift", "eps", '"bfloat16"', '"float16"'):
        assert planted in calls


@pytest.mark.parametrize("call, without, code, stage, kind, local", documented())
def test_documented_language_verdict(call, without, code, stage, kind, local):
    args = eval(f"(lambda *a, **k: (a, k))({call})")  # the table's own arguments
    dump = hf_dump(*args[0], **args[1])
    for name in re.findall(r"`([\w.]+)`", without):
        dump.pop(name)
    report = compare_dump(args[0][0], dump)
    first = report.first_failure
    assert report.exit_code == int(code), report.attribution.line
    assert (first.stage if first else "none") == stage, report.attribution.line
    assert report.attribution.kind == kind, report.attribution.line
    documented_local = re.findall(r"`([\w.]+)`", local)
    named = [row.stage for row in report.local_differences]
    if local.strip().endswith("..."):
        assert named[:len(documented_local)] == documented_local, named
    else:
        assert named == documented_local, named


@pytest.mark.parametrize("case", ["lm_one_image", "lm_text"])
def test_hf_float32_dumps_pass(case):
    report = compare_dump(case, hf_dump(case))
    assert report.exit_code == 0 and not report.local_differences, report.attribution.line
    assert any(row.stage == "lm.logits" and row.local is not None for row in report)  # judged locally too


def test_bfloat16_written_as_float32_is_precision_at_the_text_tables():
    dump = {k: v.float() if v.is_floating_point() else v for k, v in hf_dump("lm_two_images", "bfloat16").items()}
    report = compare_dump("lm_two_images", dump)
    assert report.exit_code == 1 and report.first_failure.stage == "mrope_cos"
    assert report.attribution.kind == "precision" and "bfloat16" in report.attribution.line
