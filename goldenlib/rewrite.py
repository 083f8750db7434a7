"""Which goldens a regeneration rewrites: only what moved.

A recomputed case keeps its stored file byte for byte when every stage reproduces within its drift
bound (exact stages bit for bit, float stages within ``DRIFT_BOUNDS``: what another BLAS kernel, CPU
or thread count does to the float64 towers) and its metadata is the same apart from ``versions``
(what the golden was *written* with stays; what it was last *verified* with is the verification
record, ``goldenlib.verified``). Anything else - a new case, a stage beyond its bound, an exact
stage that changed at all, a stage added or dropped, other metadata, a file that fails its sha256 -
is rewritten, and the reason is said. A golden whose stages all reproduce but whose metadata changed is
rewritten with its stored values (the tensor bytes stay; only the header moves).
"""

from __future__ import annotations

from . import store
from .drift import compare_case

# metadata a golden keeps from when it was written, whatever the run that verifies it has installed
# (HF's float32 errors move in the last digits with the CPU's kernels, as the versions move)
WRITTEN_WITH = ("versions", "hf_float32_error")


# the reason of a rewrite whose stages all reproduce: the stored values are written again, byte for byte
METADATA_ONLY = "metadata changed"


def why_rewrite(name, tensors, metadata, folder, manifest):
    """None when the golden of case ``name`` in ``folder`` reproduces (keep its bytes), else why it
    must be rewritten (one line). ``manifest``: the folder's manifest, or None when it has none."""
    return assess(name, tensors, metadata, folder, manifest)[0]


def assess(name, tensors, metadata, folder, manifest):
    """(``why_rewrite``'s answer, the stage rows compared: ``goldenlib.drift.DriftRow``, [] when
    there was nothing to compare)."""
    path = store.Path(folder) / f"{name}.safetensors"
    if manifest is None or path.name not in manifest["files"]:
        return "new", []
    try:
        stored, _ = store.read_case(name, folder)
    except store.GoldenIntegrityError as error:
        return f"the stored file fails its check ({error})", []
    rows = compare_case(name, tensors, stored)
    drifted = [row for row in rows if not row.ok]
    if drifted:
        first = drifted[0]
        what = "changed" if first.kind == "exact" else f"{first.kind}, rel {first.rel:.3g} > {first.bound:g}"
        return f"drifted: {len(drifted)} stage(s), first {first.stage} ({what})", rows
    old, new = store.read_header(path), store.encode_metadata(metadata)
    differ = sorted(key for key in set(old) | set(new) if key not in WRITTEN_WITH and old.get(key) != new.get(key))
    if differ:
        return f"{METADATA_ONLY}: {', '.join(differ)}", rows
    return None, rows


def within_bounds(rows):
    """{kind: {"cases", "stages", "max_rel"}} of the float stages of ``rows`` that changed within
    their bounds: what the verification record says the kept goldens moved by."""
    summary = {}
    for row in rows:
        if row.ok and row.max_abs > 0 and row.kind != "exact":
            entry = summary.setdefault(row.kind, {"cases": set(), "stages": 0, "max_rel": 0.0})
            entry["cases"].add(row.case)
            entry["stages"] += 1
            entry["max_rel"] = max(entry["max_rel"], row.rel)
    return {kind: {"cases": len(e["cases"]), "stages": e["stages"], "max_rel": f"{e['max_rel']:.1e}"}
            for kind, e in sorted(summary.items())}
