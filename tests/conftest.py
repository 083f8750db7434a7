import os
import sys

# the dev group must be installed; a test may skip only for lack of hardware, counted (see suite_rules)
from suite_rules import (  # noqa: F401
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_runtest_makereport,
    pytest_terminal_summary,
)

# Python's bytecode cache, also where PYTHONDONTWRITEBYTECODE is set: this process and the ~15
# interpreters the subprocess checks start import torch, transformers and torchtune, and without the
# cache each one compiles their ~3000 modules again (measured: 22.6 s of CPU for `import torch_port,
# transformers...modeling_qwen2_5_vl` uncached, 8.9 s cached). Nothing a test checks depends on it.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
