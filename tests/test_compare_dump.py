"""parity.compare_dump and parity_report.py --dump (issue 23): a stage dump from any implementation.

Dumps here are written the way an outside port would: from HF's own tower with hooks
(``goldenlib.hf_vision``: float32, bfloat16, and with planted order mistakes), from the goldens'
own tensors in other dtypes, and as safetensors files read back by the command. Expected verdicts
come from HF (its float32 tower must pass; its bfloat16 one must pass the bfloat16 tolerances) or
from what the planted mistake is.
"""

import io
from contextlib import redirect_stdout

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import parity_report
from goldenlib import store
from goldenlib.hf_vision import build_hf_vision, hf_vision_trace
from helpers import case_of
from parity import compare_dump
from parity.dump_file import DumpError, bfloat16_bits_to_float64, read_dump
from reference.vision import patch_rows

INDEX = ("window_index", "cu_seqlens", "cu_window_seqlens")
ROTARY = ("rotary_cos", "rotary_sin")


def as_dump(trace, tower, dtype=torch.float32, keep_float32=()):
    """A hooked HF trace (float64 NumPy holding the model's values) as the dump a port writes: index
    stages as integers, the rest in ``dtype`` (``keep_float32``: stages HF keeps in float32)."""
    out = {}
    for name, value in trace.items():
        if name in INDEX:
            out[f"{tower}.{name}"] = torch.from_numpy(value)
        else:
            out[f"{tower}.{name}"] = torch.from_numpy(value).to(torch.float32 if name in keep_float32 else dtype)
    return out


@pytest.fixture(scope="module")
def hf_models():
    """HF float32 towers, and bfloat16 ones as from_pretrained(dtype=bfloat16) leaves them (the rotary
    inv_freq buffer stays float32), per tiny config."""
    models = {}
    case = case_of("photo_astronaut")
    for name, tower in case.towers.items():
        f32 = build_hf_vision(tower.config, tower.weights())
        bf16 = build_hf_vision(tower.config, tower.weights()).to(torch.bfloat16)
        bf16.rotary_pos_emb.inv_freq = f32.rotary_pos_emb.inv_freq.clone()
        models[name] = f32, bf16
    return models


def trace_of(model, name):
    case = case_of(name)
    return hf_vision_trace(model, case.pixel_values, case.grid_thw)


@pytest.mark.parametrize("name", ["photo_rocket", "two_images", "aspect_1_150"])  # rocket: HF patch_embed 1.9e-6
@pytest.mark.parametrize("tower", ["tiny_a", "tiny_b"])
def test_hf_float32_dump_passes(hf_models, name, tower):
    report = compare_dump(name, as_dump(trace_of(hf_models[tower][0], name), tower))
    assert report.exit_code == 0, report.attribution.line
    assert report.first_failure is None and report.attribution.kind == "none"
    assert {row.stage for row in report} == {k for k in store.read_case(name)[0] if k.startswith(f"{tower}.")}


@pytest.mark.parametrize("name", ["photo_astronaut", "checkerboard"])
@pytest.mark.parametrize("tower", ["tiny_a", "tiny_b"])
def test_hf_bfloat16_dump_passes_the_bfloat16_tolerances(hf_models, name, tower):
    report = compare_dump(name, as_dump(trace_of(hf_models[tower][1], name), tower, torch.bfloat16, ROTARY))
    assert report.exit_code == 0, report.attribution.line
    judged = {row.judged_as for row in report if row.kind not in ("index", "rotary")}
    assert judged == {"bfloat16"}
    # the same values claimed as float32 are a precision mistake, first at patch_embed
    claimed = compare_dump(name, {k: v.float() for k, v in
                                  as_dump(trace_of(hf_models[tower][1], name), tower, torch.bfloat16, ROTARY).items()})
    assert claimed.exit_code == 1 and claimed.first_failure.stage == f"{tower}.patch_embed"
    assert claimed.attribution.kind == "precision" and "bfloat16" in claimed.attribution.line


def test_model_cast_with_to_bfloat16_rounds_the_rotary_buffer():
    cast = build_hf_vision(case_of("photo_astronaut").towers["tiny_a"].config,
                           case_of("photo_astronaut").towers["tiny_a"].weights()).to(torch.bfloat16)
    assert cast.rotary_pos_emb.inv_freq.dtype == torch.bfloat16  # what the attribution below names
    report = compare_dump("photo_astronaut", as_dump(trace_of(cast, "photo_astronaut"), "tiny_a", torch.bfloat16,
                                                     ROTARY))
    assert report.exit_code == 1 and report.first_failure.stage == "tiny_a.rotary_cos"
    assert report.attribution.kind == "precision" and "inv_freq rounded to bfloat16" in report.attribution.line


@pytest.mark.parametrize("tower", ["tiny_a", "tiny_b"])
def test_window_order_not_undone_is_an_order_mistake(hf_models, tower):
    """HF's hidden states (block outputs, rotary tables) dumped in window order, as HF keeps them."""
    trace = trace_of(hf_models[tower][0], "photo_chelsea")
    rows = patch_rows(trace["window_index"], 4)
    windowed = {k: (v[rows] if k.startswith(("blocks.", "rotary_", "merger.")) else v) for k, v in trace.items()}
    report = compare_dump("photo_chelsea", as_dump(windowed, tower))
    assert report.exit_code == 1 and report.first_failure.stage == f"{tower}.rotary_cos"
    assert report.attribution.kind == "order" and "window order" in report.attribution.line
    assert all(not row.ok and row.order for row in report if row.stage.split(".", 1)[1].startswith("blocks."))
    # only the output, its merged rows left in window order
    out = compare_dump("photo_chelsea", {f"{tower}.output": torch.from_numpy(trace["output"][trace["window_index"]])
                                         .float()})
    assert out.exit_code == 1 and out.attribution.kind == "order" and "not undone" in out.attribution.line
    # the same in bfloat16: still named an order mistake
    _, bf16 = hf_models[tower]
    trace = trace_of(bf16, "photo_chelsea")
    windowed = {k: (v[rows] if k.startswith(("blocks.", "merger.")) else v) for k, v in trace.items()}
    report = compare_dump("photo_chelsea", as_dump(windowed, tower, torch.bfloat16, ROTARY))
    assert report.first_failure.stage == f"{tower}.blocks.0.attn_residual" and report.attribution.kind == "order"


def test_raster_patch_order_is_an_order_mistake(hf_models):
    """pixel_values patchified row by row (numpy reshape of the golden's normalized image), through HF."""
    case = case_of("photo_astronaut")
    normalized = store.read_case("photo_astronaut")[0]["normalized"]
    _, h, w = normalized.shape
    raster = normalized.reshape(3, h // 14, 14, w // 14, 14).transpose(1, 3, 0, 2, 4)[:, :, :, None]
    raster = np.broadcast_to(raster, raster.shape[:3] + (2, 14, 14)).reshape(-1, 1176)
    trace = hf_vision_trace(hf_models["tiny_a"][0], raster, case.grid_thw)
    dump = {"pixel_values": torch.from_numpy(raster.copy()), **as_dump(trace, "tiny_a")}
    report = compare_dump("photo_astronaut", dump)
    assert report.first_failure.stage == "pixel_values"
    assert report.attribution.kind == "order" and "raster order" in report.attribution.line
    without = compare_dump("photo_astronaut", as_dump(trace, "tiny_a"))  # tower stages only
    assert without.first_failure.stage == "tiny_a.patch_embed" and without.attribution.kind == "order"


@pytest.mark.parametrize("name", ["photo_astronaut", "two_images", "tv_photo_chelsea", "video_5_frames",
                                  "pos_image_video", "full_size_3b", "two_frames"])
def test_the_golden_itself_in_other_dtypes_passes(name):
    tensors, _ = store.read_case(name)
    assert compare_dump(name, tensors).exit_code == 0
    as_float32 = {k: (v.astype(np.float32) if v.dtype.kind in "fu" else v) for k, v in tensors.items()}
    report = compare_dump(name, as_float32)  # uint8 stages as floats compare exactly
    assert report.exit_code == 0, report.attribution.line
    assert len(report) == len(tensors)


def test_image_stages_in_bfloat16_are_exact_against_the_rounded_golden():
    tensors, _ = store.read_case("photo_astronaut")
    dump = {k: torch.from_numpy(tensors[k]).to(torch.bfloat16) for k in ("resized", "normalized", "pixel_values")}
    report = compare_dump("photo_astronaut", dump)
    assert report.exit_code == 0 and all("rounded to bfloat16" in r.note for r in report if r.stage != "resized")
    dump["pixel_values"] = dump["pixel_values"] + 2.0**-5  # off by a few bfloat16 steps
    assert compare_dump("photo_astronaut", dump).first_failure.stage == "pixel_values"


def test_other_backend_resize_is_the_named_backend_difference():
    theirs, _ = store.read_case("tv_photo_chelsea")
    report = compare_dump("photo_chelsea", {k: theirs[k] for k in ("rgb", "resized", "pixel_values")})
    assert report.exit_code == 1 and report.first_failure.stage == "resized"
    assert report.attribution.kind == "backend" and "tv_photo_chelsea" in report.attribution.line


def test_a_resize_difference_is_interpolation():
    tensors, _ = store.read_case("photo_coffee")
    resized = tensors["resized"].astype(np.int64)
    resized[3, 5, 1] += 1  # one uint8 step
    dump = {"resized": resized.astype(np.uint8), "pixel_values": tensors["pixel_values"]}
    report = compare_dump("photo_coffee", dump)
    assert report.first_failure.stage == "resized" and report.attribution.kind == "interpolation"


def test_positions_after_a_video_name_the_4x_trap():
    tensors, _ = store.read_case("pos_image_video")
    positions = tensors["position_ids"].copy()
    video = np.flatnonzero(tensors["mm_token_type_ids"][0] == 2)
    positions[:, 0, video[-1] + 1:] += 3  # text after the video starts later, as 4.x counts the temporal extent
    report = compare_dump("pos_image_video", {"position_ids": positions, "mrope_cos": tensors["mrope_cos"]})
    assert report.exit_code == 1 and report.first_failure.stage == "position_ids"
    assert report.attribution.kind == "positions" and "4.x" in report.attribution.line
    cos32 = compare_dump("pos_image_video", {"mrope_cos": tensors["mrope_cos"].astype(np.float32)})
    assert cos32.exit_code == 0


def test_dumps_that_cannot_be_compared_exit_2():
    tensors, _ = store.read_case("photo_astronaut")
    nothing = compare_dump("photo_astronaut", {"foo": np.zeros(3, np.float32)})
    assert nothing.exit_code == 2 and "foo: not a stage of photo_astronaut" in nothing.ignored[0]
    # one stage that cannot be compared is a row with its reason; every other stage is still judged: exit 1
    shape = compare_dump("photo_astronaut", {"tiny_a.output": np.zeros((5, 48), np.float32),
                                             "pixel_values": tensors["pixel_values"]})
    assert shape.exit_code == 1 and "tiny_a.output: shape [5, 48], the golden's is [25, 48]" in shape.problems[0]
    assert [row.ok for row in shape] == [True, False] and shape.attribution.kind == "cannot compare"
    alone = compare_dump("photo_astronaut", {"tiny_a.output": np.zeros((5, 48), np.float32)})
    assert alone.exit_code == 2  # no stage of the dump is comparable
    integer = compare_dump("photo_astronaut", {"tiny_a.output": tensors["tiny_a.output"].astype(np.int64)})
    assert integer.exit_code == 2 and "float stage needs a float dtype" in integer.problems[0]
    bare = compare_dump("photo_astronaut", {"output": tensors["tiny_a.output"]})
    assert bare.exit_code == 2 and "tiny_a.output" in bare.ignored[0]  # two towers: the name says which
    named = compare_dump("photo_astronaut", {"output": tensors["tiny_b.output"]}, config="tiny_b")
    assert named.exit_code == 0 and named[0].stage == "tiny_b.output"
    batch = compare_dump("photo_astronaut", {"tiny_a.output": tensors["tiny_a.output"][None]})
    assert batch.exit_code == 0 and "read [1, 25, 48] as [25, 48]" in batch[0].note
    with pytest.raises(ValueError, match="weights"):
        compare_dump("weights_tiny_a", {})
    with pytest.raises(ValueError, match="not 'tiny_c'"):
        compare_dump("photo_astronaut", {}, config="tiny_c")


def test_read_dump_bfloat16_and_bad_files(tmp_path):
    values = torch.randn(7, 5).to(torch.bfloat16)
    save_file({"x": values, "i": torch.arange(4)}, tmp_path / "d.safetensors")
    read = read_dump(tmp_path / "d.safetensors")
    assert read["x"].dtype == "bfloat16" and read["i"].dtype == "int64"
    np.testing.assert_array_equal(read["x"].values, values.double().numpy())
    np.testing.assert_array_equal(bfloat16_bits_to_float64(np.array([0x3F80, 0xC000], np.uint16)), [1.0, -2.0])
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(DumpError, match="not a safetensors file"):
        read_dump(tmp_path / "bad.safetensors")


def run_command(argv):
    out = io.StringIO()
    with redirect_stdout(out):
        try:
            code = parity_report.main(argv)
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue()


def test_command_dump_exit_codes_and_lines(tmp_path, hf_models):
    trace = trace_of(hf_models["tiny_a"][0], "photo_astronaut")
    good = tmp_path / "good.safetensors"
    save_file(as_dump(trace, "tiny_a"), good, metadata={"case": "photo_astronaut"})
    code, text = run_command(["--dump", str(good), "--out", str(tmp_path / "r.md"), "--plot", ""])
    assert code == 0 and "first stage out of tolerance: none" in text and "exit: 0" in text
    assert (tmp_path / "r.md").read_text().strip() == text.strip()

    rows = patch_rows(trace["window_index"], 4)
    bad = tmp_path / "bad.safetensors"
    save_file({k: (v[rows].contiguous() if k.startswith("tiny_a.blocks.") else v)
               for k, v in as_dump(trace, "tiny_a", torch.bfloat16, ROTARY).items()}, bad)
    code, text = run_command(["--case", "photo_astronaut", "--dump", str(bad), "--out", "", "--plot", ""])
    assert code == 1
    assert "first stage out of tolerance: tiny_a.blocks.0.attn_residual" in text
    assert "attribution: order:" in text

    empty = tmp_path / "empty.safetensors"
    save_file({"foo": torch.zeros(2)}, empty)
    code, text = run_command(["--case", "photo_astronaut", "--dump", str(empty), "--out", "", "--plot", ""])
    assert code == 2 and "not a stage of photo_astronaut" in text

    assert run_command(["--dump", str(good), "--impl", "reference"])[0] == 2
    assert run_command(["--dump", str(good), "--precision", "float32,bfloat16"])[0] == 2
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    assert run_command(["--case", "photo_astronaut", "--dump", str(tmp_path / "junk.safetensors"), "--out", ""])[0] == 2


def test_command_dump_precision_switch(tmp_path, hf_models):
    """--precision bfloat16: a bfloat16 computation stored as float32 is judged as bfloat16."""
    dump = {k: v.float() for k, v in as_dump(trace_of(hf_models["tiny_b"][1], "photo_astronaut"), "tiny_b",
                                              torch.bfloat16, ROTARY).items()}
    path = tmp_path / "stored32.safetensors"
    save_file(dump, path)
    assert run_command(["--case", "photo_astronaut", "--dump", str(path), "--out", "", "--plot", ""])[0] == 1
    code, text = run_command(["--case", "photo_astronaut", "--dump", str(path), "--precision", "bfloat16",
                              "--config", "tiny_b", "--out", "", "--plot", ""])
    assert code == 0 and "judged as bfloat16" in text
