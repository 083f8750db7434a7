"""The OpenBLAS kernel NumPy runs on, which decides the last bits of the float64 goldens.

The reference's float64 tower goes through NumPy's OpenBLAS, which picks a GEMM kernel per CPU
family at start-up (or takes OPENBLAS_CORETYPE, which this workplace sets on some processors).
Kernels block and fuse their sums differently, so float64 products differ in the last bits
between kernels: about 1e-15 relative between SkylakeX and Haswell on the tiny towers. Each golden
records the kernel it was written with (``versions.openblas_kernel``), ``golden/VERIFIED.json`` the
one it was last verified under. Float64 tower stages are bit for bit the same only under the
writer's kernel (and CPU); everything that compares them - regeneration, ``--check``, the tests -
holds them to ``goldenlib.tolerances.DRIFT_BOUNDS["float64"]``, so no result depends on the kernel.
"""

import ctypes
import functools
from pathlib import Path


@functools.lru_cache(maxsize=1)
def openblas_kernel():
    """The core name OpenBLAS chose ("Haswell", "SkylakeX", ...), or "unknown"."""
    import numpy

    libs = Path(numpy.__file__).resolve().parent.parent / "numpy.libs"
    for path in sorted(libs.glob("*openblas*")):
        lib = ctypes.CDLL(str(path))
        for symbol in ("scipy_openblas_get_corename64_", "openblas_get_corename64_", "openblas_get_corename"):
            getter = getattr(lib, symbol, None)
            if getter is not None:
                getter.restype = ctypes.c_char_p
                return getter().decode()
    return "unknown"
