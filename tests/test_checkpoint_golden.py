"""`generate_golden.py --model`: a golden to the logits of a checkpoint folder and input (goldenlib.checkpoint_golden),
on a tiny folder written in bfloat16 shards, and every refusal (nothing written)."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import generate_golden
from goldenlib import checkpoint_golden as cg
from goldenlib import store
from goldenlib.model_folders import write_model_folder

PHOTO = "data/photos/chelsea.png"


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """lm_untied's folder with its weights in two bfloat16 shards and an index (as released checkpoints)."""
    folder = write_model_folder("lm_untied", tmp_path_factory.mktemp("ckpt") / "lm_untied")
    state = {k: v.to(torch.bfloat16) for k, v in load_file(str(folder / "model.safetensors")).items()}
    (folder / "model.safetensors").unlink()
    names = sorted(state)
    weight_map = {}
    for shard, part in enumerate((names[: len(names) // 2], names[len(names) // 2:])):
        file = f"model-{shard + 1:05d}-of-00002.safetensors"
        save_file({k: state[k] for k in part}, str(folder / file), metadata={"format": "pt"})
        weight_map.update({k: file for k in part})
    total = sum(v.numel() * 2 for v in state.values())
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                   "weight_map": weight_map}))
    return folder


@pytest.fixture(scope="module")
def written(sharded, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "mine.safetensors"
    code = generate_golden.main(["--model", str(sharded), "--image", PHOTO, "--prompt", "What is in this image?",
                                 "--out", str(out), "--layers", "0,2"])
    assert code == 0
    return store.read_case(out.stem, out.parent, verify=False)


def test_writes_every_stage_of_the_chosen_layers(written):
    tensors, meta = written
    assert {"input_ids", "mm_token_type_ids", "position_ids", "mrope_cos", "mrope_sin", "pixel_values",
            "visual.output", "lm.inputs_embeds", "lm.norm", "lm.logits"} <= set(tensors)
    assert {k for k in tensors if k.startswith("lm.layers.")} == {
        f"lm.layers.{i}.{s}" for i in (0, 2) for s in ("attn_residual", "output")}
    assert meta["stored_layers"] == [0, 2] and meta["kind"] == "model"
    assert max(meta["hf_float32_error"].values()) <= cg.CHECKPOINT_VS_HF_FLOAT32_BOUND
    assert tensors["lm.logits"].shape == (1, tensors["input_ids"].shape[1], 288)
    assert tensors["lm.logits"].dtype == np.float64


def test_bfloat16_shards_are_read_as_stored(sharded, written):
    """The reference ran on the shards' bfloat16 values: the embedded text rows are those rows exactly."""
    tensors, _ = written
    embed = load_file(str(sharded / "model-00001-of-00002.safetensors")) | load_file(
        str(sharded / "model-00002-of-00002.safetensors"))
    table = embed["model.embed_tokens.weight"].double().numpy()
    text = tensors["mm_token_type_ids"][0] == 0
    np.testing.assert_array_equal(tensors["lm.inputs_embeds"][0][text], table[tensors["input_ids"][0][text]])


def _run(tmp_path, folder, *extra, prompt="Describe."):
    out = tmp_path / "g.safetensors"
    code = generate_golden.main(["--model", str(folder), "--prompt", prompt, "--out", str(out), *extra])
    return code, out


def test_refusals_name_the_problem_and_write_nothing(sharded, tmp_path, capsys):
    other = tmp_path / "llava"
    shutil.copytree(sharded, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "llava"}))
    code, out = _run(tmp_path, other, "--image", PHOTO)
    assert code == 2 and not out.exists() and "model_type 'llava'" in capsys.readouterr().err

    missing = tmp_path / "missing"
    shutil.copytree(sharded, missing)
    (missing / "model-00002-of-00002.safetensors").unlink()
    code, out = _run(tmp_path, missing, "--image", PHOTO)
    assert code == 2 and not out.exists() and "model-00002-of-00002.safetensors" in capsys.readouterr().err

    code, out = _run(tmp_path, sharded, "--image", PHOTO, "--image", PHOTO,
                     prompt="<|vision_start|><|image_pad|><|vision_end|> one image only")
    err = capsys.readouterr().err
    assert code == 2 and not out.exists() and "1 <|image_pad|>" in err and "2 image(s)" in err

    code, out = _run(tmp_path, sharded, "--image", str(tmp_path / "nope.png"))
    assert code == 2 and not out.exists() and "nope.png" in capsys.readouterr().err


def test_refuses_to_write_when_hf_disagrees(sharded, tmp_path, monkeypatch, capsys):
    plain = cg.run_reference

    def off_by_a_bit(*args, **kwargs):
        trace = plain(*args, **kwargs)
        trace["lm.logits"] = trace["lm.logits"] * 1.001  # a planted difference at the last stage
        return trace

    monkeypatch.setattr(cg, "run_reference", off_by_a_bit)
    code, out = _run(tmp_path, sharded, "--image", PHOTO)
    assert code == 1 and not out.exists() and "lm.logits" in capsys.readouterr().err


def test_shard_weights_read_the_stored_values(sharded):
    """Whole tensors (layer by layer, the next one read ahead) and scattered rows are the shards' values."""
    from goldenlib.shard_weights import ShardWeights

    stored = load_file(str(sharded / "model-00001-of-00002.safetensors")) | load_file(
        str(sharded / "model-00002-of-00002.safetensors"))
    weights = ShardWeights(sharded)
    for name in sorted(weights, key=lambda n: (n.split(".")[:-3], n)):
        np.testing.assert_array_equal(np.asarray(weights[name]), stored[name].double().numpy(), err_msg=name)
    ids = np.array([[287, 3, 4, 3, 100], [5, 6, 7, 286, 0]])
    table = stored["model.embed_tokens.weight"].double().numpy()
    np.testing.assert_array_equal(weights["model.embed_tokens.weight"][ids], table[ids])


def test_a_video_with_its_frame_rate(sharded, tmp_path):
    """--video (a .npy clip) and --video-fps: second_per_grid_ts = temporal_patch_size / fps, equal to HF's."""
    clip = np.random.default_rng(0).integers(0, 256, (4, 50, 50, 3), dtype=np.uint8)
    np.save(tmp_path / "clip.npy", clip)
    code, out = _run(tmp_path, sharded, "--video", str(tmp_path / "clip.npy"), "--video-fps", "4", prompt="What?")
    assert code == 0
    tensors, _ = store.read_case(out.stem, out.parent, verify=False)
    assert tensors["second_per_grid_ts"].tolist() == [0.5]
    assert tensors["video_grid_thw"].tolist() == [[2, 4, 4]] and "visual_video.output" in tensors


def test_parity_report_judges_a_dump_against_the_own_golden(written, tmp_path, capsys):
    """parity_report.py --golden FILE --dump DUMP: as --case, with local verdicts from the golden's folder."""
    import parity_report

    tensors, meta = written
    golden = tmp_path / "mine.safetensors"
    store.write_case(tmp_path, "mine", tensors, meta)
    port = {k: torch.from_numpy(np.asarray(v, np.float32 if v.dtype.kind == "f" else v.dtype)) for k, v in
            tensors.items() if k.startswith(("lm.", "mrope", "position_ids"))}
    save_file(port, str(tmp_path / "good.safetensors"))
    port["lm.logits"] = port["lm.logits"] * (1 + 1e-3)  # a port whose head scales the logits
    save_file(port, str(tmp_path / "bad.safetensors"))
    args = ["--golden", str(golden), "--out", "", "--plot", "", "--dump"]
    assert parity_report.main(args + [str(tmp_path / "good.safetensors")]) == 0
    assert "local differences: none" in capsys.readouterr().out
    assert parity_report.main(args + [str(tmp_path / "bad.safetensors")]) == 1
    out = capsys.readouterr().out
    assert "first stage out of tolerance: lm.logits" in out and "local differences: lm.logits" in out
    assert "attribution: formula:" in out
    with pytest.raises(SystemExit):
        parity_report.main(["--golden", str(golden), "--case", "photo_astronaut", "--dump", str(golden)])
