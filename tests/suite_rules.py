"""Suite-wide rules, hooks that tests/conftest.py imports: the test dependencies are present, and no
test skips itself into green.

* The dev dependency group of ``pyproject.toml`` (what ``uv sync --locked`` installs) must be installed
  at the pinned versions: a missing or mismatched package stops the session before collection,
  naming it, instead of letting the tests that need it skip.
* A test may be skipped only for lack of hardware, and only when it says so with
  ``@pytest.mark.hardware("cuda")`` (skipped here where torch sees no CUDA device) or
  ``@pytest.mark.hardware("<feature>")`` (the test checks the feature itself and may skip). Those
  skips are counted in the summary; any other skip is reported as a failure.
"""

import importlib.metadata
import tomllib
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def missing_dev_packages(pyproject=ROOT / "pyproject.toml"):
    """Lines naming each dev-group requirement that is not installed or not at a matching version."""
    from packaging.requirements import Requirement  # pytest depends on packaging

    groups = tomllib.loads(Path(pyproject).read_text()).get("dependency-groups", {})
    problems = []
    for line in groups.get("dev", []):
        requirement = Requirement(line)
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{requirement} (not installed)")
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement} (installed: {version})")
    return problems


def pytest_configure(config):
    problems = missing_dev_packages()
    if problems:
        raise pytest.UsageError(
            "the test suite needs the dev dependency group of pyproject.toml; missing or mismatched: "
            + ", ".join(problems) + ". Run `uv sync --locked` (it installs the dev group) and `uv run pytest`.")


def pytest_collection_modifyitems(config, items):
    cuda_items = [item for item in items
                  if any(mark.args[:1] == ("cuda",) for mark in item.iter_markers("hardware"))]
    if cuda_items:
        import torch

        if not torch.cuda.is_available():
            for item in cuda_items:
                item.add_marker(pytest.mark.skip(reason="hardware: no CUDA device"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    marks = list(item.iter_markers("hardware"))
    if marks:  # the summary counts it (user_properties also travel from pytest-xdist workers)
        report.user_properties.append(("hardware_skip", marks[0].args[0] if marks[0].args else "unnamed"))
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    report.outcome = "failed"  # an error when the skip came at setup (a skip/skipif marker)
    report.longrepr = (f"{item.nodeid} skipped itself ({reason}); a test may skip only for lack of hardware, "
                       "marked @pytest.mark.hardware(...) (see tests/suite_rules.py)")


def hardware_skips(reports):
    """{hardware name: number of tests skipped for lack of it} among ``reports``."""
    return Counter(value for report in reports if report.skipped
                   for key, value in getattr(report, "user_properties", ()) if key == "hardware_skip")


def pytest_terminal_summary(terminalreporter):
    counts = hardware_skips(terminalreporter.stats.get("skipped", []))
    if counts:
        listed = ", ".join(f"{name}: {n}" for name, n in sorted(counts.items()))
        terminalreporter.write_line(f"not run for lack of hardware (counted as skipped, not passed): {listed}")
