"""docs/porting.md's walkthrough (issue 23): examples/plain_torch_port.py, a port written without
this project's code, writes a stage dump of photo_astronaut / tiny_a; the report's verdict for the
honest port and for each planted mistake is the one docs/porting.md states (its table is read here,
so the page cannot drift from what the report says)."""

import ast
import io
import re
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch

import parity_report
from goldenlib.tolerances import PLANTED_BUG_MIN_ERROR, rel_error
from parity import compare_dump

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "plain_torch_port.py"
sys.path.insert(0, str(SCRIPT.parent))
import plain_torch_port  # noqa: E402

PROJECT_PACKAGES = ("reference", "parity", "goldenlib", "torch_port", "tune_recipes", "benchmarks")
# | `--mistake window-order` | 1 | `tiny_a.blocks.0.attn_residual` | order | `tiny_a.blocks.0.attn_residual`, ... | ...
ROW = re.compile(r"^\| `(--mistake [\w,-]+(?: --case \w+)?|--dtype \w+)` \| (\d) \| `([\w.]+|none)` \| (\w+) \| "
                 r"([^|]+) \|")


def documented_verdicts():
    rows = [ROW.match(line) for line in (ROOT / "docs" / "porting.md").read_text().splitlines()]
    return [m.groups() for m in rows if m]


def test_the_page_lists_every_mistake():
    planted = {m for switch, *_ in documented_verdicts() if switch.startswith("--mistake")
               for m in switch.split()[1].split(",")}
    assert planted == set(plain_torch_port.MISTAKES)
    assert "--dtype bfloat16" in {switch for switch, *_ in documented_verdicts()}


@pytest.mark.parametrize("switch, code, stage, kind, local", documented_verdicts())
def test_documented_verdict(switch, code, stage, kind, local):
    words = switch.split()
    options = dict(zip(words[::2], words[1::2]))
    case = options.get("--case", "photo_astronaut")
    dump = plain_torch_port.run(case=case, mistake=options.get("--mistake", "none"),
                                dtype=options.get("--dtype", "float32"))
    report = compare_dump(case, dump)
    first = report.first_failure
    assert report.exit_code == int(code), report.attribution.line
    assert (first.stage if first else "none") == stage
    assert report.attribution.kind == kind, report.attribution.line
    if first is not None:  # the report names the stage where the spec's table says the mistake first shows
        assert first.stage.split(".")[0] in ("resized", "pixel_values", "tiny_a"), first.stage
    documented = re.findall(r"`([\w.]+)`", local)
    named = [row.stage for row in report.local_differences]
    if local.strip().endswith("..."):  # the first ones of a longer list
        assert named[:len(documented)] == documented, named
    else:
        assert named == documented, named


def test_script_uses_none_of_the_project():
    tree = ast.parse(SCRIPT.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & set(PROJECT_PACKAGES), imported


def test_script_file_through_the_command(tmp_path):
    out = tmp_path / "bad.safetensors"
    with redirect_stdout(io.StringIO()):
        plain_torch_port.main(["--mistake", "merge-order", "--out", str(out)])
    text = io.StringIO()
    with redirect_stdout(text):
        code = parity_report.main(["--dump", str(out), "--out", "", "--plot", ""])  # case from the metadata
    assert code == 1
    assert "first stage out of tolerance: pixel_values" in text.getvalue()
    assert "attribution: order:" in text.getvalue()
    assert "\nlocal differences: none\n" in text.getvalue()


def test_local_differences_line_through_the_command(tmp_path):
    """llama.cpp's float16 patch embedding and a tanh GELU in the merger: both named, each at its stage,
    although every stage after patch_embed is off by float16 amounts."""
    out = tmp_path / "two.safetensors"
    with redirect_stdout(io.StringIO()):
        plain_torch_port.main(["--mistake", "f16-patch-embed,tanh-gelu", "--out", str(out)])
    text = io.StringIO()
    with redirect_stdout(text):
        code = parity_report.main(["--dump", str(out), "--out", "", "--plot", ""])
    lines = text.getvalue().splitlines()
    assert code == 1
    assert "local differences: tiny_a.patch_embed, tiny_a.output" in lines
    assert any(line.startswith("- `tiny_a.patch_embed`") and "precision: its inputs and weights rounded to float16"
               in line for line in lines)
    assert any(line.startswith("- `tiny_a.output`") and "formula: the activation is GELU's tanh approximation"
               in line for line in lines)


# ------------------------------------------------------------------ the page's HF pitfalls, on the installed HF


def test_pitfall_without_mm_token_type_ids_positions_are_1d():
    """Qwen2_5_VLForConditionalGeneration without mm_token_type_ids: no mRoPE positions, no warning."""
    from hf_tiny_vl import hf_model, pixel_values, text_ids, token_types, vision_run

    model = hf_model("tied_gqa")
    generator = torch.Generator().manual_seed(0)
    grid = torch.tensor([[1, 4, 6]])
    ids = torch.tensor([text_ids(3, generator) + vision_run((1, 4, 6)) + text_ids(4, generator)])
    inputs = dict(input_ids=ids, pixel_values=pixel_values(grid, generator), image_grid_thw=grid)
    common = dict(image_grid_thw=grid, video_grid_thw=None, inputs_embeds=None, attention_mask=None, cache=None)
    model.model.rope_deltas = None
    assert model.model.compute_3d_position_ids(input_ids=ids, **common) is None  # falls back to 1-D
    model.model.rope_deltas = None
    assert model.model.compute_3d_position_ids(input_ids=ids, mm_token_type_ids=token_types(ids), **common) is not None
    with torch.no_grad():
        model.model.rope_deltas = None
        right = model(**inputs, mm_token_type_ids=token_types(ids)).logits
        model.model.rope_deltas = None
        silent = model(**inputs).logits
    assert rel_error(silent, right) > PLANTED_BUG_MIN_ERROR  # a real difference, not rounding


def test_pitfall_auto_image_processor_picks_torchvision_for_a_pil_folder(tmp_path):
    from transformers import AutoImageProcessor, Qwen2VLImageProcessor, Qwen2VLImageProcessorPil

    Qwen2VLImageProcessorPil().save_pretrained(tmp_path)
    assert '"image_processor_type": "Qwen2VLImageProcessor"' in (tmp_path / "preprocessor_config.json").read_text()
    assert type(AutoImageProcessor.from_pretrained(tmp_path)) is Qwen2VLImageProcessor  # torchvision backend
    assert type(AutoImageProcessor.from_pretrained(tmp_path, backend="pil")) is Qwen2VLImageProcessorPil
