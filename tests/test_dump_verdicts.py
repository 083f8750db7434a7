"""Issue 28: what a dump's verdicts name and what the goldens tell a porter (beyond the walkthrough's
planted mistakes, tests/test_porting_walkthrough.py): geometry, the metadata a processor is configured
from, the float32 copy for readers without float64, one stage vocabulary."""

import ast
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open

import generate_golden
from goldenlib import store
from goldenlib.cases import TOWERS
from goldenlib.drift import stage_order
from goldenlib.stage_vocabulary import pipeline_order
from goldenlib.tolerances import PARITY_TOLERANCES
from parity import compare_dump

ROOT = Path(__file__).resolve().parents[1]
CASES = [name for name in store.case_names() if not name.startswith("weights_")]


def test_goldenlib_and_the_generator_import_nothing_of_parity():
    for path in sorted((ROOT / "goldenlib").glob("*.py")) + [ROOT / "generate_golden.py"]:
        tree = ast.parse(path.read_text())
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and not node.level}
        assert not {n for n in names if n.split(".")[0] == "parity"}, path.name


@pytest.mark.parametrize("name", CASES)
def test_metadata_lists_every_stage_in_the_vocabulary_order(name):
    tensors, meta = store.read_case(name)
    assert meta["format_version"] == 2
    assert sorted(meta["stages"]) == sorted(tensors)
    assert meta["stages"] == stage_order(name, tensors)  # the drift report's order is the vocabulary's
    towers = {tower: spec.config.depth for tower, spec in TOWERS.items() if any(k.startswith(f"{tower}.") for k in tensors)}
    if meta["kind"] == "model":  # a whole model's towers: the images' and the videos' runs of its vision config
        towers = {t: meta["config"]["vision"]["depth"] for t in ("visual", "visual_video") if f"{t}.output" in tensors}
    assert meta["stages"] == pipeline_order(list(tensors), towers)


@pytest.mark.parametrize("name", ["photo_astronaut", "tv_photo_chelsea", "video_fps_sampling"])
def test_processor_settings_are_hfs(name):
    """A porter configures their processor from the golden alone: the settings are HF's processor's."""
    from transformers import Qwen2VLImageProcessorPil, Qwen2VLVideoProcessor

    _, meta = store.read_case(name)
    settings = meta["processor"]
    hf = Qwen2VLVideoProcessor() if name.startswith("video") else Qwen2VLImageProcessorPil()
    for key in ("patch_size", "merge_size", "temporal_patch_size", "rescale_factor"):
        assert settings[key] == getattr(hf, key), key
    assert settings["image_mean"] == list(hf.image_mean) and settings["image_std"] == list(hf.image_std)
    assert settings["backend"] == meta.get("params", {}).get("backend", "torchvision" if "video" in name else "pil")
    assert "bicubic" in settings["resample"]
    for key, value in meta.get("params", {}).items():
        assert settings[key] == value


@pytest.mark.parametrize("name", ["photo_astronaut", "pos_image_video"])
def test_hf_float32_errors_cover_the_float_stages(name):
    tensors, meta = store.read_case(name)
    errors = meta["hf_float32_error"]
    floats = {k for k, v in tensors.items() if v.dtype.kind == "f" and (".blocks." in k or k.endswith(
        ("patch_embed", "output", "ln_q", "rotary_cos", "rotary_sin", "mrope_cos", "mrope_sin")))}
    assert floats <= set(errors) and all(0 <= errors[k] < 1e-5 for k in floats)


def test_float32_copy_for_readers_without_float64(tmp_path):
    out = tmp_path / "astronaut_f32.safetensors"
    assert generate_golden.main(["--float32-copy", "photo_astronaut", "--out", str(out)]) == 0
    tensors, _ = store.read_case("photo_astronaut")
    with safe_open(str(out), framework="numpy") as handle:
        meta = handle.metadata()
        copy = {key: handle.get_tensor(key) for key in handle.keys()}
    assert set(copy) == set(tensors)
    assert {str(v.dtype) for v in copy.values()} <= {"float32", "int32", "uint8"}
    for key, value in tensors.items():
        expected = value.astype(np.float32) if value.dtype == np.float64 else value
        np.testing.assert_array_equal(copy[key], expected.astype(copy[key].dtype))
    assert meta["case"] == "photo_astronaut" and "sha256" in meta["converted_from"]
    with pytest.raises(SystemExit):
        generate_golden.main(["--float32-copy", "no_such_case", "--out", str(out)])


def test_another_size_is_geometry():
    """llama.cpp's size rule (max(28, round(h / 28) * 28) before the min_pixels test) on a 3x450 image:
    28x448 where HF's smart_resize gives 28x700."""
    tensors, _ = store.read_case("aspect_1_150")
    resized = np.array(Image.fromarray(tensors["input"]).resize((448, 28), Image.BICUBIC))
    report = compare_dump("aspect_1_150", {"resized": resized, "tiny_a.output": tensors["tiny_a.output"]})
    assert report.exit_code == 1 and report.first_failure.stage == "resized"
    assert report.attribution.kind == "geometry"
    assert "28x448" in report.attribution.line and "28x700" in report.attribution.line
    assert report[-1].ok  # the stage after it is still judged


def test_padding_one_side_is_geometry_not_filter():
    tensors, _ = store.read_case("photo_coffee")
    resized = tensors["resized"].copy()
    resized[-10:] = 114  # a constant band at the bottom (a port padding to its own buffer size)
    report = compare_dump("photo_coffee", {"resized": resized})
    assert report.attribution.kind == "geometry" and "10 rows bottom (value 114)" in report.attribution.line


def test_float16_rotary_tolerance_not_tighter_than_float32():
    for kind in ("rotary",):
        assert PARITY_TOLERANCES[("float16", kind)].accumulated >= PARITY_TOLERANCES[("float32", kind)].accumulated


def test_center_crop_is_geometry():
    """CLIP-style preprocessing: resize to cover, then center-crop (Pillow's own resize, not the reference's)."""
    tensors, _ = store.read_case("photo_chelsea")
    rgb, (height, width) = tensors["rgb"], tensors["resized"].shape[:2]
    scale = max(height / rgb.shape[0], width / rgb.shape[1])
    rh, rw = max(height, round(rgb.shape[0] * scale)), max(width, round(rgb.shape[1] * scale))
    covered = np.array(Image.fromarray(rgb).resize((rw, rh), Image.BICUBIC))
    top, left = (rh - height) // 2, (rw - width) // 2
    report = compare_dump("photo_chelsea", {"resized": covered[top:top + height, left:left + width]})
    assert report.attribution.kind == "geometry" and "center-cropped" in report.attribution.line
