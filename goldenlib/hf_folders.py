"""The HF checkpoint folders ``golden/hf/`` ships: the golden towers (tiny_a, tiny_b) as whole Qwen2.5-VL
models, and the whole-model goldens' tiny models (lm_tied, lm_untied), each a folder that
``from_pretrained`` loads and a real converter takes (config.json, preprocessor_config.json, a byte-level
tokenizer, model.safetensors; ``goldenlib.model_folders.write_model_folder``).

They are written by the generator with the goldens (the same bytes every time) and listed in
``golden/MANIFEST.json`` under ``hf_folders`` (sha256 and size per file), so readers check them as they
check the goldens.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from . import store
from .model_folders import SHIPPED, write_model_folder

SUBFOLDER = "hf"


def write(golden_folder):
    """Write every shipped folder under ``golden_folder/hf/``; the {relative path: entry} manifest."""
    root = Path(golden_folder) / SUBFOLDER
    for name in SHIPPED:
        write_model_folder(name, root / name)
    return manifest(golden_folder)


def manifest(golden_folder):
    """{"<model>/<file>": {"sha256", "bytes"}} of the folders under ``golden_folder/hf/`` as they are."""
    root = Path(golden_folder) / SUBFOLDER
    return {str(path.relative_to(root)): {"sha256": store.sha256_of(path), "bytes": path.stat().st_size}
            for path in sorted(root.rglob("*")) if path.is_file()}


def expected_manifest():
    """What :func:`write` gives, computed in a temporary folder."""
    with tempfile.TemporaryDirectory() as folder:
        return write(folder)


def verify(golden_folder=None, entries=None):
    """Raise ``store.GoldenIntegrityError`` naming a shipped file that is missing, altered or unlisted."""
    folder = Path(store.GOLDEN_DIR if golden_folder is None else golden_folder)
    entries = store.load_manifest(folder).get("hf_folders") if entries is None else entries
    if not entries:
        raise store.GoldenIntegrityError(f"{folder / store.MANIFEST} lists no HF folders: run "
                                         "`uv run generate_golden.py`")
    actual = manifest(folder)
    for name in sorted(set(entries) | set(actual)):
        if name not in actual:
            raise store.GoldenIntegrityError(f"{folder / SUBFOLDER / name} listed in {store.MANIFEST} is missing")
        if name not in entries:
            raise store.GoldenIntegrityError(f"{folder / SUBFOLDER / name} is not listed in {store.MANIFEST}")
        if actual[name] != entries[name]:
            raise store.GoldenIntegrityError(f"{folder / SUBFOLDER / name} does not match {store.MANIFEST}: sha256 "
                                             f"{actual[name]['sha256']} != {entries[name]['sha256']}")
