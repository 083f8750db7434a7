"""A copy of golden/ as another machine would have written it, for the tests that must hold anywhere.

Another BLAS kernel, CPU family, libm or thread count moves the reference's float arithmetic in its
last bits: the float64 tower stages and cos/sin by a few ulp, the float32 casts of full_size_3b's
float64 stages by at most one. ``other_machine_copy`` writes such a folder: every float stage that
``goldenlib.drift`` does not hold exact moved by up to ``ulps`` ulp (float32: one), exact stages and
weights untouched, each golden's written-with ``openblas_kernel`` (and the manifest's) set to
``SIMULATED_KERNEL``, the manifest rewritten to match. The goldens' values stay within
``DRIFT_BOUNDS`` of the real ones by construction: a few ulp are ~1e-15 relative.
"""

import json
import shutil

import numpy as np

from goldenlib import store
from goldenlib.drift import drift_bound

SIMULATED_KERNEL = "OtherMachineKernel"


def perturb(value, rng, ulps):
    """``value`` moved element by element by a random whole number of ulp in [-ulps, ulps]."""
    steps = rng.integers(-ulps, ulps + 1, size=value.shape).astype(value.dtype)
    return (value + steps * np.spacing(value)).astype(value.dtype)


def other_machine_copy(source, dest, seed=0, ulps=3):
    """Copy golden folder ``source`` to ``dest`` as another machine would have written it; ``dest``."""
    shutil.copytree(source, dest)
    manifest = store.load_manifest(dest)
    rng = np.random.default_rng(seed)
    for file in sorted(manifest["files"]):
        name = file.removesuffix(".safetensors")
        tensors, _ = store.read_case(name, dest)
        header = store.read_header(dest / file)
        for stage, value in tensors.items():
            kind = drift_bound(stage, value, name)
            if kind != "exact":
                tensors[stage] = perturb(value, rng, ulps if kind == "float64" else 1)
        if "versions" in header:
            header["versions"] = json.dumps({**json.loads(header["versions"]), "openblas_kernel": SIMULATED_KERNEL},
                                            sort_keys=True)
        store.write_case(dest, name, tensors, header)
    extra = {key: value for key, value in manifest.items() if key not in ("files", "format_version")}
    if "versions" in extra:
        extra["versions"] = {**extra["versions"], "openblas_kernel": SIMULATED_KERNEL}
    store.write_manifest(dest, extra=extra)
    return dest
