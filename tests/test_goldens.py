"""The stored goldens: the manifest matches the files, and the reference reproduces them."""

import json

import numpy as np
import pytest

from goldenlib import store
from goldenlib.cases import IMAGE_CASES, TINY, TOWERS, two_frame_input
from goldenlib.image_goldens import run_reference
from goldenlib.tolerances import GOLDEN_FLOAT64_REPRODUCE_BOUND
from goldenlib.tower_goldens import run_tower


def test_manifest_lists_exactly_the_files_with_their_sha256():
    manifest = store.load_manifest()
    on_disk = sorted(p.name for p in store.GOLDEN_DIR.glob("*.safetensors"))
    assert sorted(manifest["files"]) == on_disk
    for name in on_disk:
        store.verify_file(store.GOLDEN_DIR / name, manifest)


def test_golden_size_is_small():
    total = sum(p.stat().st_size for p in store.GOLDEN_DIR.iterdir() if p.is_file())
    assert total < 40e6, f"golden/ is {total / 1e6:.1f} MB"


def test_metadata_names_versions_and_crosscheck():
    _, meta = store.read_case(IMAGE_CASES[0].name)
    assert {"numpy", "pillow", "transformers"} <= set(meta["versions"])
    assert "Qwen2VLImageProcessorPil" in meta["hf_crosscheck"]
    assert meta["params"]["max_pixels"] == 12845056


@pytest.mark.parametrize("case", IMAGE_CASES, ids=lambda c: c.name)
def test_reference_reproduces_image_stages(case):
    stored, meta = store.read_case(case.name)
    _, tensors = run_reference(case)
    for stage in meta["stages"]:
        keys = [k for k in tensors if k == stage or k.startswith(stage + ".")]
        assert keys, stage
        for key in keys:
            assert stored[key].dtype == tensors[key].dtype, key
            np.testing.assert_array_equal(stored[key], tensors[key], err_msg=f"{case.name}: {key}")


@pytest.mark.parametrize("config", TINY)
def test_reference_reproduces_tiny_towers(config):
    weights, meta = store.read_case(f"weights_{config}")
    fresh = TOWERS[config].weights()
    assert sorted(weights) == sorted(fresh)
    for key in weights:
        np.testing.assert_array_equal(weights[key], fresh[key])
    cases = [case.name for case in IMAGE_CASES[::4]] + ["two_frames"]
    for name in cases:
        stored, _ = store.read_case(name)
        trace = run_tower(TOWERS[config].config, weights, stored["pixel_values"], stored["image_grid_thw"])
        for stage, value in trace.items():
            expected = stored[f"{config}.{stage}"]
            np.testing.assert_allclose(value, expected, rtol=0, atol=GOLDEN_FLOAT64_REPRODUCE_BOUND * max(1.0, np.abs(expected).max()),
                                       err_msg=f"{name}: {config}.{stage}")


def test_two_frame_input_is_the_stored_one():
    pixel_values, grid = two_frame_input()
    stored, _ = store.read_case("two_frames")
    np.testing.assert_array_equal(stored["pixel_values"], pixel_values)
    assert stored["image_grid_thw"].tolist() == grid.tolist() and grid[0, 0] == 2


def test_tampered_golden_is_named(tmp_path):
    import shutil

    folder = tmp_path / "golden"
    shutil.copytree(store.GOLDEN_DIR, folder)
    path = folder / "noise.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(store.GoldenIntegrityError, match="noise.safetensors"):
        store.read_case("noise", folder)
    manifest = json.loads((folder / store.MANIFEST).read_text())
    assert "noise.safetensors" in manifest["files"]
