"""Parity checks of an implementation (the torch port by default) against the goldens, stage by stage.

* :mod:`parity.cases` - the registry's cases (``goldenlib.cases``): stored, or built in memory (seed scenario).
* :mod:`parity.implementations` - the implementation under test (port, reference, or a factory).
* :mod:`parity.stages` - per-stage rows (local / accumulated error), ``TOLERANCES`` (``goldenlib.tolerances``), first failure.
* :mod:`parity.variants` - interpolation variants (exact, torchvision, float, bilinear).
* :mod:`parity.report` - interpolation / precision / combined runs and their attribution.
* :mod:`parity.printing` - markdown table and log-scale plot.
* :mod:`parity.dump` - ``compare_dump``: a stage dump written by any implementation (a safetensors
  file, :mod:`parity.dump_file`) against a golden, with the first stage out of tolerance and its
  attribution (order mistakes found by :mod:`parity.row_order`).
"""

from .cases import GoldenCase, case_names, load_case
from .dump import DumpReport, compare_dump, dump_markdown
from .implementations import PortImplementation, ReferenceImplementation, load_implementation
from .printing import markdown_table, text_summary
from .stages import TOLERANCES, StageRow, Tol, attribute, compare_tower, first_failure, stage_kind, tolerance

__all__ = [
    "TOLERANCES",
    "DumpReport",
    "GoldenCase",
    "PortImplementation",
    "ReferenceImplementation",
    "StageRow",
    "Tol",
    "attribute",
    "case_names",
    "compare_dump",
    "compare_tower",
    "dump_markdown",
    "first_failure",
    "load_case",
    "load_implementation",
    "markdown_table",
    "stage_kind",
    "text_summary",
    "tolerance",
]
