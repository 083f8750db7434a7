"""Golden files: one safetensors file per case, a manifest of sha256, atomic replacement.

A golden file holds every stage of one case as a named tensor, and its description in
the safetensors header metadata (strings only: structured values are JSON-encoded).
``MANIFEST.json`` lists each file's sha256 and size; readers verify it before use.
"""

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

# QWEN_VL_GOLDEN_DIR points every reader at another golden folder (the upgrade drill's copy).
GOLDEN_DIR = Path(os.environ.get("QWEN_VL_GOLDEN_DIR") or Path(__file__).resolve().parents[1] / "golden")
MANIFEST = "MANIFEST.json"
FORMAT_VERSION = "2"  # 2: metadata lists every stage, the processor settings, HF's float32 errors
# Hand-written files of golden/ that a regeneration carries over unchanged.
KEPT_FILES = ("README.md",)


class GoldenIntegrityError(RuntimeError):
    """A golden file is missing, altered, or not listed in the manifest."""


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def encode_metadata(metadata):
    """The header metadata ``write_case`` stores for ``metadata``: strings, JSON where structured."""
    header = {"format_version": FORMAT_VERSION}
    for key, value in metadata.items():
        header[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return header


def write_case(folder, name, tensors, metadata):
    """Write ``name.safetensors``; metadata values that are not strings are JSON-encoded."""
    path = Path(folder) / f"{name}.safetensors"
    path.write_bytes(_safetensors_bytes(tensors, encode_metadata(metadata)))
    return path


def read_header(path):
    """The header metadata of a golden file as stored (strings), without verifying it."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        return dict(handle.metadata() or {})


_DTYPES = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
           np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL"}


def _safetensors_bytes(tensors, metadata):
    """The safetensors encoding with a deterministic header (sorted keys), so that regenerating
    unchanged goldens gives byte-identical files (the library's writer orders metadata at random)."""
    header = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for key in sorted(tensors):
        array = np.ascontiguousarray(tensors[key])
        if array.dtype not in _DTYPES:
            raise TypeError(f"golden tensor {key!r} has unsupported dtype {array.dtype}")
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[key] = {"dtype": _DTYPES[array.dtype], "shape": list(array.shape),
                       "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    return len(raw).to_bytes(8, "little") + raw + b"".join(blobs)


def write_manifest(folder, extra=None):
    folder = Path(folder)
    files = {
        path.name: {"sha256": sha256_of(path), "bytes": path.stat().st_size}
        for path in sorted(folder.glob("*.safetensors"))
    }
    manifest = {"format_version": FORMAT_VERSION, "files": files, **(extra or {})}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def load_manifest(folder=None):
    path = Path(GOLDEN_DIR if folder is None else folder) / MANIFEST
    if not path.is_file():
        raise GoldenIntegrityError(f"no manifest at {path}: run `uv run generate_golden.py`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise GoldenIntegrityError(f"manifest {path} is not valid JSON: {error}") from None


def verify_file(path, manifest=None):
    """Check ``path`` against the manifest's sha256; raise GoldenIntegrityError naming it."""
    path = Path(path)
    manifest = manifest or load_manifest(path.parent)
    entry = manifest["files"].get(path.name)
    if entry is None:
        why = manifest.get("not_generated", {}).get(path.name)
        if why is not None:  # the generator skipped it and said so: stale or absent, not tampered with
            raise GoldenIntegrityError(f"golden file {path.name} was not regenerated ({why}): stale or absent; "
                                       f"run `uv run generate_golden.py --case {path.stem}`")
        if not path.is_file():
            raise GoldenIntegrityError(f"golden file {path.name} is not in {path.parent} and not listed in "
                                       f"{MANIFEST}: it was never generated there; run `uv run generate_golden.py`")
        raise GoldenIntegrityError(f"golden file {path.name} is not listed in {MANIFEST}: it was not written by "
                                   "generate_golden.py (copied or edited by hand?)")
    if not path.is_file():
        raise GoldenIntegrityError(f"golden file {path} listed in {MANIFEST} is missing")
    actual = sha256_of(path)
    if actual != entry["sha256"]:
        raise GoldenIntegrityError(
            f"golden file {path.name} does not match {MANIFEST}: sha256 {actual} != {entry['sha256']}"
        )


def read_case(name, folder=None, verify=True):
    """Return ``(tensors, metadata)`` of a golden case, verifying its sha256 first."""
    path = Path(GOLDEN_DIR if folder is None else folder) / f"{name}.safetensors"
    if verify:
        verify_file(path)
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        metadata = dict(handle.metadata() or {})
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    decoded = {}
    for key, value in metadata.items():
        try:
            decoded[key] = json.loads(value)
        except json.JSONDecodeError:
            decoded[key] = value
    return tensors, decoded


def case_names(folder=None):
    return sorted(Path(name).stem for name in load_manifest(folder)["files"])


def _exchange(a, b):
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


class AtomicFolder:
    """Build a new golden folder beside the old one, then swap it in with renames.

    Until ``commit()`` the old folder is untouched; a run killed midway leaves only a
    ``.golden-tmp-*`` folder behind (removed by the next run), never a half-written golden/.
    """

    def __init__(self, target=None):
        self.target = Path(GOLDEN_DIR if target is None else target)
        self.parent = self.target.parent
        for stale in self.parent.glob(f".{self.target.name}-tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.target.name}-tmp-", dir=self.parent))

    def commit(self):
        for name in KEPT_FILES:
            source = self.target / name
            if source.is_file() and not (self.path / name).exists():
                shutil.copy2(source, self.path / name)
        os.chmod(self.path, 0o755)  # mkdtemp makes it private
        for path in self.path.rglob("*"):  # flush file contents before the swap (golden/hf/ folders too)
            if path.is_dir():
                os.chmod(path, 0o755)
                continue
            os.chmod(path, 0o644)
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        if self.target.exists() and _exchange(self.path, self.target):
            shutil.rmtree(self.path, ignore_errors=True)  # now holds the old goldens
            return
        old = self.parent / f".{self.target.name}-old"
        shutil.rmtree(old, ignore_errors=True)
        if self.target.exists():
            os.rename(self.target, old)
        os.rename(self.path, self.target)
        shutil.rmtree(old, ignore_errors=True)

    def discard(self):
        shutil.rmtree(self.path, ignore_errors=True)
