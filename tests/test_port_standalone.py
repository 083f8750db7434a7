"""``torch_port/`` stands alone: it drops into a torchtune checkout as ``models/qwen2_5_vision/``.

* no module of the project (``reference``, ``goldenlib``, ``parity``, ``hfcheck``) is imported by
  any of its files, and its only third-party imports are torch, numpy, Pillow and safetensors,
  plus the optional torchtune (the whole model) and torchvision (one image backend): at module
  level only in the modules ``__init__`` imports once torchtune is found, elsewhere only inside
  functions;
* without torchtune, ``import torch_port`` and ``from torch_port import *`` work and a whole-model
  name raises one ImportError naming the ``torchtune`` extra; with it, every whole-model name is
  there from the start;
* the helpers it keeps for itself (smart_resize, the normalize table, Pillow's pass order, the
  config rules) equal the reference's, which are checked against HF elsewhere;
* copied alone into a temporary folder under another package name, it imports, loads a
  checkpoint folder and runs the encoder and the transform, with nothing of the project on the
  path, and gives the same results as in place (slow: a fresh interpreter importing torch).
"""

import ast
import importlib
import importlib.abc
import json
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import PIL.Image
import pytest
import torch

import torch_port
from reference import VisionConfig
from torch_port import _smart_resize, _transform
from torch_port._hf_config import vision_encoder_kwargs, vision_fields as encoder_kwargs

from checkpoint_folder import VISION_CONFIG_JSON, write_checkpoint

# modules, not the functions of the same name that the reference package exports
ref_bicubic = importlib.import_module("reference.bicubic")
ref_preprocess = importlib.import_module("reference.preprocess")
ref_smart_resize = importlib.import_module("reference.smart_resize")

PORT_DIR = Path(torch_port.__file__).resolve().parent
PROJECT_PACKAGES = {"reference", "goldenlib", "parity", "hfcheck", "torch_port", "tests", "benchmarks"}
THIRD_PARTY = {"torch", "numpy", "PIL", "safetensors"}


# the whole model's (the torchtune extra: torchtune brings datasets; av decodes the dataset's video files)
OPTIONAL = {"torchtune", "torchvision", "datasets", "av"}


def _imports(path: Path, module_level: bool = False) -> set[str]:
    """Top-level names of the absolute imports in a file (relative imports stay inside the folder);
    ``module_level``: only those run when the file is imported (not inside functions)."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if module_level else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_project_imports():
    files = sorted(PORT_DIR.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "_encoder.py", "_transform.py", "_hf_folder.py"}
    by_file = {f.name: _imports(f) for f in files}
    project = {name: sorted(found & PROJECT_PACKAGES) for name, found in by_file.items() if found & PROJECT_PACKAGES}
    assert not project, f"torch_port imports project modules: {project}"
    outside = set().union(*by_file.values()) - set(sys.stdlib_module_names)
    assert outside - OPTIONAL == THIRD_PARTY, f"third-party imports of torch_port: {sorted(outside)}"
    # what `import torch_port` loads without torchtune: __init__'s own module-level imports (not
    # those under its `if`) and, transitively, the module-level relative imports of those files
    eager, todo = set(), ["__init__.py"]
    while todo:
        name = todo.pop()
        if name in eager:
            continue
        eager.add(name)
        todo += [f"{module}.py" for module in _relative_imports(PORT_DIR / name)]
    found = {f: sorted(_imports(PORT_DIR / f, module_level=True) & OPTIONAL) for f in sorted(eager)}
    assert not {f: names for f, names in found.items() if names}, (
        f"torchtune/torchvision imported at module level by what `import torch_port` always loads: {found}")
    assert {"_encoder.py", "_transform.py", "_video_transform.py", "_hf_folder.py", "_component_builders.py"} <= eager


def _relative_imports(path: Path) -> set[str]:
    """Modules of the folder a file imports when it is imported (top-level ``from .x import``;
    ``__init__``'s imports under ``if torchtune is there`` are not top-level)."""
    names = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_whole_model_names_without_torchtune():
    """torchtune unimportable: ``import torch_port`` and ``from torch_port import *`` work, the tower
    and transform build, a whole-model name raises one ImportError that names the extra."""
    class NoTorchtune(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torchtune", "torchao"):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")

    with mock.patch.dict(sys.modules), mock.patch.object(sys, "meta_path", [NoTorchtune(), *sys.meta_path]):
        for name in [m for m in sys.modules if m.split(".")[0] in ("torch_port", "torchtune", "torchao")]:
            del sys.modules[name]
        fresh = importlib.import_module("torch_port")
        assert fresh is not torch_port
        namespace = {}
        exec("from torch_port import *", namespace)
        assert {"qwen2_5_vision_encoder", "Qwen2_5_VLImageTransform", "load_hf_checkpoint"} <= set(namespace)
        assert not set(namespace) & set(fresh._TORCHTUNE_NAMES)
        fresh.qwen2_5_vision_encoder(embed_dim=32, num_layers=1, num_heads=2, intermediate_dim=40, out_dim=24,
                                     patch_size=14, temporal_patch_size=2, spatial_merge_size=2, window_size=112,
                                     fullatt_block_indexes=[0], in_channels=3)
        fresh.Qwen2_5_VLImageTransform()
        for name in ("qwen2_5_vl_3b", "Qwen2_5_VLHFCheckpointer", "qlora_qwen2_5_vl_7b", "load_hf_model"):
            with pytest.raises(ImportError, match=rf"torch_port\.{name} .*needs torchtune.*`torchtune` extra"):
                getattr(fresh, name)
        with pytest.raises(AttributeError, match="no attribute 'Bogus'"):
            fresh.Bogus  # noqa: B018
        assert not any(m.split(".")[0] in ("torchtune", "torchao") for m in sys.modules)


def test_whole_model_names_with_torchtune():
    """torchtune installed: every whole-model name is an attribute from the start (no first-use
    import), ``from torch_port import *`` gives them all, and ``__all__`` names only what exists."""
    assert set(torch_port._TORCHTUNE_NAMES) <= set(vars(torch_port)) and set(torch_port._TORCHTUNE_NAMES) <= set(
        torch_port.__all__)
    namespace = {}
    exec("from torch_port import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(torch_port.__all__)
    assert len(torch_port.__all__) == len(set(torch_port.__all__))
    assert torch_port.Qwen2_5_VLHFCheckpointer.__module__ == "torch_port._checkpointer"


# ------------------------------------------------ the port's own helpers == the reference's
SIZES = [(1, 1), (10, 10), (28, 28), (70, 70), (480, 640), (1500, 2000), (3024, 4032), (13, 2599), (2601, 13),
         (56, 11200), (50000, 3), (7, 5000), (100, 1), (224, 224)]


@pytest.mark.parametrize("min_pixels,max_pixels", [(56 * 56, 16384 * 28 * 28), (3136, 28 * 28 * 1280), (3136, 3136 * 4)])
def test_smart_resize_equals_reference(min_pixels, max_pixels):
    assert (_smart_resize.MIN_PIXELS, _smart_resize.MAX_PIXELS) == (ref_smart_resize.MIN_PIXELS, ref_smart_resize.MAX_PIXELS)
    for h, w in SIZES + [(0, 5), (-3, 10), (5.0, 10), (True, 10), (np.int64(300), np.int32(200))]:
        try:
            expected = ref_smart_resize.smart_resize(h, w, 28, min_pixels, max_pixels)
        except ValueError as e:
            with pytest.raises(ValueError) as info:
                _smart_resize.smart_resize(h, w, 28, min_pixels, max_pixels)
            assert str(info.value) == str(e)
        else:
            assert _smart_resize.smart_resize(h, w, 28, min_pixels, max_pixels) == expected, (h, w)


@pytest.mark.parametrize(
    "mean,std",
    [(_transform.OPENAI_CLIP_MEAN, _transform.OPENAI_CLIP_STD), ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
     ((0.1, 0.5, 0.9), (0.2, 0.3, 0.7)), ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))],
)
def test_normalize_table_equals_reference(mean, std):
    ours = _transform.normalize_table(mean, std)
    assert ours.dtype == torch.float32 and ours.shape == (3, 256)
    np.testing.assert_array_equal(ours.numpy(), ref_preprocess.normalize_table(mean, std))


@pytest.mark.parametrize("version", [None, (11, 3), (12, 1), (12, 2), (13, 0), (13, 1)])
def test_pillow_pass_order_equals_reference(version):
    for in_h, in_w in SIZES:
        for out_h, out_w in [(28, 28), (56, 84), (in_h, 28), (28, in_w), (2 * in_h, in_w // 2 + 1), (in_h // 3 + 1, in_w)]:
            assert _transform.vertical_first(in_h, in_w, out_h, out_w, version) == ref_bicubic.vertical_first(
                in_h, in_w, out_h, out_w, version
            ), (in_h, in_w, out_h, out_w, version)


CONFIG_CHANGES = [
    {},
    {"in_chans": 1, "in_channels": None},
    {"fullatt_block_indexes": ["2", 0]},
    {"fullatt_block_indexes": "2"},
    {"fullatt_block_indexes": 2},
    {"fullatt_block_indexes": [3]},  # past depth 3: a warning, the config runs (as in HF)
    {"fullatt_block_indexes": [2, 7, 15, 23, 31]},
    {"fullatt_block_indexes": [-1]},  # refused: HF never counts from the end
    {"fullatt_block_indexes": [None]},
    {"num_heads": 3},
    {"hidden_size": 40, "num_heads": 4},
    {"window_size": 100},
    {"window_size": 56},
    {"depth": 0},
    {"depth": True},
    {"depth": 3.0},
    {"patch_size": -14},
    {"hidden_act": "relu"},
    {"hidden_act": ["silu"]},
    {"hidden_act": "quick_gelu"},
    {"rope_theta": 100.0},
    {"rope_parameters": {"rope_type": "axial", "rope_theta": 500}},
    {"rope_parameters": {"rope_type": "default"}},
    {"rope_theta": -1.0},
    {"num_attention_heads": 4, "num_heads": None},
    {"num_hidden_layers": 4, "depth": None},
    {"out_hidden_size": None},
    {"hidden_size": None, "depth": None},
]


@pytest.mark.parametrize("change", CONFIG_CHANGES, ids=[json.dumps(c) for c in CONFIG_CHANGES])
def test_config_rules_equal_reference(change):
    """The port reads a vision config with the reference's rules: the same configs pass (with the
    same values) and the same fail, with the same message."""
    def subject_removed(message):  # "VisionConfig.depth must ..." and "vision config depth must ..."
        for subject in ("VisionConfig.", "VisionConfig ", "vision config "):
            message = message.replace(subject, "")
        return message

    config = {k: v for k, v in {**VISION_CONFIG_JSON, **change}.items() if v is not None}
    try:
        with warnings.catch_warnings(record=True) as expected_warnings:
            warnings.simplefilter("always")
            expected = VisionConfig.from_hf(config)
    except ValueError as e:
        with pytest.raises(ValueError) as info:
            encoder_kwargs(config)
        assert subject_removed(str(info.value)) == subject_removed(str(e))
        return
    with warnings.catch_warnings(record=True) as got_warnings:
        warnings.simplefilter("always")
        kwargs = encoder_kwargs(config)
    assert [(w.category, subject_removed(str(w.message))) for w in got_warnings] == \
        [(w.category, subject_removed(str(w.message))) for w in expected_warnings]
    got = {name: kwargs[name] for name in expected.to_dict() if name in kwargs}
    got["fullatt_block_indexes"] = list(got["fullatt_block_indexes"])
    got["rope_theta"] = kwargs["rope_base"]
    assert got == expected.to_dict()


# ------------------------------------------------------------------ the transform's interface
def test_transform_init_is_keyword_only_and_inference_changes_nothing():
    with pytest.raises(TypeError):
        torch_port.Qwen2_5_VLImageTransform(3136)  # noqa
    transform = torch_port.Qwen2_5_VLImageTransform(min_pixels=3136, max_pixels=3136 * 4)
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    sample = {"image": image, "label": 7}
    train, infer = transform(sample), transform(sample, inference=True)
    assert set(train) == set(infer) == {"image", "label", "pixel_values", "image_grid_thw"}
    assert torch.equal(train["pixel_values"], infer["pixel_values"])
    assert torch.equal(train["image_grid_thw"], infer["image_grid_thw"])
    assert set(sample) == {"image", "label"}  # the caller's sample is not modified


# ------------------------------------------------------------- the folder copied alone, run
_SCRIPT = """
import importlib.abc, json, sys

BLOCKED = {blocked!r}


class NoProject(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked module {{name!r}} imported")


sys.meta_path.insert(0, NoProject())
sys.path.insert(0, {folder!r})
import numpy as np
import PIL.Image
import torch

import qwen2_5_vision as port

torch.manual_seed(0)
encoder = port.qwen2_5_vision_encoder(embed_dim=32, num_layers=3, num_heads=2, intermediate_dim=40, out_dim=24,
                                      patch_size=14, temporal_patch_size=2, spatial_merge_size=2, window_size=112,
                                      fullatt_block_indexes=[2], in_channels=3).eval()
loaded, transform = port.load_hf_checkpoint({checkpoint!r}, dtype=torch.float32)
image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 150, 3), dtype=np.uint8))
sample = transform({{"image": image}}, inference=True)
with torch.no_grad():
    out = {{"pixel_values": sample["pixel_values"], "image_grid_thw": sample["image_grid_thw"],
           "random": encoder(sample["pixel_values"], sample["image_grid_thw"]),
           "loaded": loaded(sample["pixel_values"], sample["image_grid_thw"])}}
torch.save(out, {result!r})
print(json.dumps({{"path": sys.path, "modules": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)}}))
"""


@pytest.mark.slow
def test_copied_folder_runs_alone(tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(PORT_DIR, folder / "qwen2_5_vision", ignore=shutil.ignore_patterns("__pycache__"))
    torch.manual_seed(1)
    weights = torch_port.qwen2_5_vision_tune_to_hf(
        torch_port.qwen2_5_vision_encoder(**vision_encoder_kwargs(VISION_CONFIG_JSON)).state_dict()
    )
    write_checkpoint(tmp_path / "ckpt", weights, dtype=torch.float32)
    # the project, and the optional torchtune and torchvision, are unreachable: the encoder, the
    # checkpoint loader and the image transform need neither
    script = _SCRIPT.format(blocked=sorted(PROJECT_PACKAGES | OPTIONAL), folder=str(folder), checkpoint=str(tmp_path / "ckpt"),
                            result=str(tmp_path / "out.pt"))
    # -I: no PYTHONPATH, no user site, not the current or the script's folder on the path
    done = subprocess.run([sys.executable, "-I", "-c", textwrap.dedent(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    root = str(PORT_DIR.parent)
    assert not any(p and Path(p).resolve() == Path(root) for p in report["path"]), report["path"]
    assert report["modules"] == []

    # the same results as the port in place
    got = torch.load(tmp_path / "out.pt")
    transform = torch_port.Qwen2_5_VLImageTransform()
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 150, 3), dtype=np.uint8))
    sample = transform({"image": image})
    assert torch.equal(got["pixel_values"], sample["pixel_values"])
    assert torch.equal(got["image_grid_thw"], sample["image_grid_thw"])
    torch.manual_seed(0)
    encoder = torch_port.qwen2_5_vision_encoder(embed_dim=32, num_layers=3, num_heads=2, intermediate_dim=40,
                                                out_dim=24, patch_size=14, temporal_patch_size=2, spatial_merge_size=2,
                                                window_size=112, fullatt_block_indexes=[2], in_channels=3).eval()
    loaded, _ = torch_port.load_hf_checkpoint(tmp_path / "ckpt", dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(got["random"], encoder(sample["pixel_values"], sample["image_grid_thw"]))
        assert torch.equal(got["loaded"], loaded(sample["pixel_values"], sample["image_grid_thw"]))
    assert got["loaded"].shape == (sample["pixel_values"].shape[0] // 4, 24)
