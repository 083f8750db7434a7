"""tests/suite_rules.py: a missing dev-group package is named before collection, an unmarked skip
fails, a skip marked @pytest.mark.hardware is counted as skipped (pytester runs a small suite in-process)."""

from pathlib import Path

import torch  # imported before pytester snapshots sys.modules: torch cannot be imported twice in a process

import pytest

from suite_rules import missing_dev_packages

pytest_plugins = ["pytester"]

TESTS = Path(__file__).resolve().parent


def test_missing_and_mismatched_dev_packages_are_named(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[dependency-groups]\ndev = ["pytest>=8", "pytest<1", "no-such-package-qwen-vl==1.0"]\n')
    problems = missing_dev_packages(pyproject)
    assert len(problems) == 2, problems
    assert problems[0].startswith("pytest<1 (installed: ") and problems[0].endswith(")")
    assert problems[1] == "no-such-package-qwen-vl==1.0 (not installed)"


def test_the_project_dev_group_is_installed():
    assert missing_dev_packages() == []


@pytest.fixture
def suite(pytester):
    pytester.makeconftest(f"import sys\nsys.path.insert(0, {str(TESTS)!r})\n"
                          "from suite_rules import (pytest_collection_modifyitems, pytest_configure,\n"
                          "                         pytest_runtest_makereport, pytest_terminal_summary)\n")
    pytester.makeini("[pytest]\nmarkers =\n    hardware(name): needs hardware\n")
    return pytester


def test_an_unmarked_skip_fails(suite):
    suite.makepyfile(test_a="""
        import pytest

        def test_runtime_skip():
            pytest.skip("no reason")

        @pytest.mark.skipif(True, reason="marker skip")
        def test_marker_skip():
            pass

        def test_ok():
            pass
    """)
    result = suite.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1, errors=1)  # the marker's skip comes at setup
    result.stdout.fnmatch_lines(["*test_marker_skip skipped itself (marker skip)*",  # errors print first
                                 "*test_runtime_skip skipped itself (no reason)*"])
    assert result.ret == 1


def test_a_hardware_skip_is_counted(suite):
    suite.makepyfile(test_b="""
        import pytest

        @pytest.mark.hardware("avx9")
        def test_feature():
            pytest.skip("this CPU has no avx9")

        @pytest.mark.hardware("cuda")
        def test_cuda():
            import torch
            assert torch.cuda.is_available()
    """)
    result = suite.runpytest_inprocess("-p", "no:cacheprovider")
    if torch.cuda.is_available():
        result.assert_outcomes(passed=1, skipped=1)
        result.stdout.fnmatch_lines(["*not run for lack of hardware (counted as skipped, not passed): avx9: 1"])
    else:
        result.assert_outcomes(skipped=2)
        result.stdout.fnmatch_lines(["*not run for lack of hardware (counted as skipped, not passed): avx9: 1, cuda: 1"])
    assert result.ret == 0
