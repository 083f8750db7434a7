"""The stored goldens: the manifest matches the files, and the reference reproduces them."""

import json

import numpy as np
import pytest

from goldenlib.stage_vocabulary import is_image_stage
from goldenlib import store
from goldenlib.cases import IMAGE_CASES, POSITION_CASES, TINY, TOWERS, TV_IMAGE_CASES, VIDEO_CASES, two_frame_input
from goldenlib.image_goldens import run_reference
from goldenlib import position_goldens
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
    # 39.3 MB before the whole-model cases (issue 29), which add 1.1 MB: lm_two_images 0.46, lm_video 0.30,
    # lm_one_image 0.21, lm_text 0.13
    assert total < 41e6, f"golden/ is {total / 1e6:.1f} MB"


def test_metadata_names_versions_and_crosscheck():
    _, meta = store.read_case(IMAGE_CASES[0].name)
    assert {"numpy", "pillow", "transformers"} <= set(meta["versions"])
    assert "Qwen2VLImageProcessorPil" in meta["hf_crosscheck"]
    assert meta["params"]["max_pixels"] == 12845056


@pytest.mark.parametrize("case", IMAGE_CASES + TV_IMAGE_CASES, ids=lambda c: c.name)
def test_reference_reproduces_image_stages(case):
    stored, meta = store.read_case(case.name)
    _, tensors = run_reference(case)
    for stage in filter(is_image_stage, meta["stages"]):  # the image stages of every stage listed
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
    cases = [case.name for case in IMAGE_CASES[::4]] + ["two_frames"] + [case.name for case in VIDEO_CASES]
    for name in cases:
        stored, _ = store.read_case(name)
        video = "pixel_values_videos" in stored  # the towers ran on the video grid
        trace = run_tower(TOWERS[config].config, weights, stored["pixel_values_videos" if video else "pixel_values"],
                          stored["video_grid_thw" if video else "image_grid_thw"])
        for stage, value in trace.items():
            expected = stored[f"{config}.{stage}"]
            np.testing.assert_allclose(value, expected, rtol=0, atol=GOLDEN_FLOAT64_REPRODUCE_BOUND * max(1.0, np.abs(expected).max()),
                                       err_msg=f"{name}: {config}.{stage}")


# ------------------------------------------------------------------ torchvision backend and video


def test_torchvision_and_video_cases_cover_the_required_inputs():
    """Four photos, an upscale, a one-axis resize and an extreme ratio through the torchvision
    backend; video: 1 frame padded to 2, 5 frames -> grid_t 3, frames that differ, fps sampling."""
    tv = {case.name: store.read_case(case.name)[0] for case in TV_IMAGE_CASES}
    assert {f"tv_photo_{p}" for p in ("astronaut", "chelsea", "coffee", "rocket")} <= set(tv)
    sizes = [(t["rgb"].shape[:2], t["resized"].shape[:2]) for t in tv.values()]
    assert any(r[0] > i[0] and r[1] > i[1] for i, r in sizes)  # an upscale
    assert any((i[0] == r[0]) != (i[1] == r[1]) for i, r in sizes)  # one axis only
    assert any(max(i) >= 100 * min(i) for i, _ in sizes)  # an extreme ratio
    video = {case.name: store.read_case(case.name)[0] for case in VIDEO_CASES}
    frames = {name: (t["input"].shape[0], t["sampled"].shape[0], t["padded"].shape[0], t["video_grid_thw"][0, 0])
              for name, t in video.items()}
    assert (1, 1, 2, 1) in frames.values() and (5, 5, 6, 3) in frames.values()
    assert any(n_in == 30 and n_sampled < n_in for n_in, n_sampled, _, _ in frames.values())
    assert any(all(not np.array_equal(t["input"][0], f) for f in t["input"][1:]) for t in video.values())


@pytest.mark.parametrize("case", TV_IMAGE_CASES + VIDEO_CASES, ids=lambda c: c.name)
def test_torchvision_metadata_records_the_version_and_hf_class(case):
    _, meta = store.read_case(case.name)
    assert "torchvision" in meta["versions"]
    assert ("Qwen2VLVideoProcessor" if case.kind == "video" else "Qwen2VLImageProcessor ") in meta["hf_crosscheck"]


@pytest.mark.parametrize("case", VIDEO_CASES, ids=lambda c: c.name)
def test_reference_reproduces_video_stages(case):
    from goldenlib import video_goldens

    stored, meta = store.read_case(case.name)
    _, tensors = video_goldens.run_reference(case)
    assert sorted(k for k in stored if "." not in k) == sorted(filter(is_image_stage, meta["stages"]))
    for key, value in tensors.items():
        assert stored[key].dtype == value.dtype, key
        np.testing.assert_array_equal(stored[key], value, err_msg=f"{case.name}: {key}")


def test_two_frame_input_is_the_stored_one():
    pixel_values, grid = two_frame_input()
    stored, _ = store.read_case("two_frames")
    np.testing.assert_array_equal(stored["pixel_values"], pixel_values)
    assert stored["image_grid_thw"].tolist() == grid.tolist() and grid[0, 0] == 2


@pytest.mark.parametrize("name", ["noise", "pos_left_padded"])
def test_tampered_golden_is_named(tmp_path, name):
    import shutil

    folder = tmp_path / "golden"
    shutil.copytree(store.GOLDEN_DIR, folder)
    path = folder / f"{name}.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(store.GoldenIntegrityError, match=f"{name}.safetensors"):
        store.read_case(name, folder)
    manifest = json.loads((folder / store.MANIFEST).read_text())
    assert f"{name}.safetensors" in manifest["files"]


# ------------------------------------------------------------------ positions goldens


def test_positions_cases_cover_the_required_layouts():
    kinds = {case.name: case.inputs() for case in POSITION_CASES}
    assert len(kinds) >= 5
    stored = {name: store.read_case(name)[0] for name in kinds}
    images = [t["image_grid_thw"] for t in stored.values() if "image_grid_thw" in t]
    assert any(len(g) >= 2 and len({tuple(r) for r in g.tolist()}) == len(g) for g in images)  # different grids
    assert any("image_grid_thw" in t and "video_grid_thw" in t and (t["second_per_grid_ts"] != 1).all()
               for t in stored.values())
    assert any("image_grid_thw" not in t and t.get("video_grid_thw", np.zeros((0, 3)))[:, 0].tolist() == [3]
               for t in stored.values())
    padded = [t for t in stored.values() if "attention_mask" in t]
    assert any(t["input_ids"].shape[0] == 2 and (t["attention_mask"][:, 0] == 0).any() for t in padded)


@pytest.mark.parametrize("case", POSITION_CASES, ids=lambda c: c.name)
def test_positions_inputs_are_the_stored_ones(case):
    stored, meta = store.read_case(case.name)
    assert meta["kind"] == "positions" and "get_rope_index" in meta["hf_crosscheck"]
    for name, value in case.inputs().arrays().items():
        assert stored[name].dtype == value.dtype, name
        np.testing.assert_array_equal(stored[name], value, err_msg=f"{case.name}: {name}")


@pytest.mark.parametrize("case", POSITION_CASES, ids=lambda c: c.name)
def test_reference_reproduces_positions(case):
    """Integers exactly; float64 cos/sin within the float64 reproduce bound: elementwise, no BLAS in
    the way, but NumPy's cos/sin differ in the last bit between CPUs (SIMD kernels vs libm)."""
    stored, meta = store.read_case(case.name)
    tensors = position_goldens.run_reference(case)
    assert sorted(tensors) == sorted(stored)
    for key, value in tensors.items():
        assert stored[key].dtype == value.dtype, key
        if key in position_goldens.ROTARY_STAGES:
            np.testing.assert_allclose(value, stored[key], rtol=0, atol=GOLDEN_FLOAT64_REPRODUCE_BOUND,
                                       err_msg=f"{case.name}: {key}")
        else:
            np.testing.assert_array_equal(stored[key], value, err_msg=f"{case.name}: {key}")
    assert stored["mrope_cos"].dtype == np.float64 and stored["position_ids"].dtype == np.int64


@pytest.mark.parametrize("case", POSITION_CASES, ids=lambda c: c.name)
def test_port_reproduces_positions(case):
    """The torch port's expansion and rope index give the stored integers exactly."""
    import torch

    from goldenlib.cases import IMAGE_PAD, POSITION_PARAMS, VIDEO_PAD
    from torch_port import expand_vision_tokens, qwen2_5_vl_rope_index

    stored, _ = store.read_case(case.name)
    t = {name: torch.from_numpy(value) for name, value in stored.items()}
    merge = POSITION_PARAMS["spatial_merge_size"]
    ids, types = expand_vision_tokens(t["input_ids"], t.get("image_grid_thw"), t.get("video_grid_thw"),
                                      image_token_id=IMAGE_PAD, video_token_id=VIDEO_PAD, merge_size=merge)
    position_ids, deltas = qwen2_5_vl_rope_index(ids, types, t.get("image_grid_thw"), t.get("video_grid_thw"),
                                                 t.get("second_per_grid_ts"), t.get("attention_mask"),
                                                 spatial_merge_size=merge,
                                                 tokens_per_second=POSITION_PARAMS["tokens_per_second"])
    for name, value in [("expanded_input_ids", ids), ("mm_token_type_ids", types), ("position_ids", position_ids),
                        ("deltas", deltas)]:
        assert value.dtype == torch.int64, name
        np.testing.assert_array_equal(value.numpy(), stored[name], err_msg=f"{case.name}: {name}")
