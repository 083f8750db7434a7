"""2-process data-parallel training on CPU (gloo) equals the single-process run (tiny model, 2 steps).

The tiny HF folder and dataset of tests/recipe_fixtures.py (4 samples, samples 2, 3 repeat 0, 1;
global batch 2, so step 2 sees step 1's batch again after one AdamW step):

* ``torchrun --nproc_per_node 2 -m tune_recipes.fsdp2_cpu``: the model loaded through the project's
  checkpointer, sharded with FSDP2 ``fully_shard`` (torchtune's ``shard_model``: every decoder
  layer, every vision block, the root), torchtune's ``CEWithChunkedOutputLoss``, one sample per rank:
  both ranks log the same losses, equal to ``train_steps`` in this process (one process, batch 2,
  no sharding) within DISTRIBUTED_LOSS_VS_SINGLE_BOUND, and the loss falls on the repeated batch;
* torchtune's stock ``full_finetune_distributed`` (``tune run --nproc_per_node 2
  tune_recipes/full_finetune_distributed_cpu.py``, the tune executable, the 7B full config with the tiny
  overrides and ``batch_size=1`` per rank) after the runtime CPU workaround of
  tune_recipes/_cpu_workarounds.py, on a dataset mixing image and text-only chats (rank 1's batches have
  no image): its logged losses equal the stock ``full_finetune_single_device`` run (batch 2) on the same data.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import recipe_fixtures as rf
from goldenlib.tolerances import DISTRIBUTED_LOSS_VS_SINGLE_BOUND

pytestmark = pytest.mark.slow


def _free_port() -> int:
    """A port for torchrun's rendezvous (its default 29500 may be taken by another run)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args: list[str], log: Path) -> None:
    """Run a launcher from the project root; on failure show the end of its output."""
    env = {**os.environ, "PYTHONPATH": str(rf.ROOT)}
    env.pop("WORLD_SIZE", None)
    with open(log, "w") as out:
        proc = subprocess.run([sys.executable, *args], cwd=rf.ROOT, env=env, stdout=out,
                              stderr=subprocess.STDOUT, timeout=400)
    assert proc.returncode == 0, f"{args[:6]} exited {proc.returncode}:\n" + log.read_text()[-6000:]


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return rf.shared_recipe_folder(tmp_path_factory)


def test_fsdp2_two_cpu_processes_match_one(tiny, tmp_path):
    from tune_recipes.fsdp2_cpu import train_steps

    folder, data_json, data_dir = tiny
    out = tmp_path / "fsdp2"
    _run(["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
          "-m", "tune_recipes.fsdp2_cpu", "--model-dir", str(folder), "--data-files", str(data_json),
          "--image-dir", str(data_dir), "--out", str(out), "--steps", "2", "--batch-size", "2"],
         tmp_path / "torchrun.log")
    ranks = [json.loads((out / f"losses_rank{r}.json").read_text()) for r in (0, 1)]
    single_stats = {}
    single = train_steps(folder, str(data_json), str(data_dir), steps=2, batch_size=2, lr=2e-3, stats=single_stats)
    print(f"FSDP2 rank 0 {ranks[0]['losses']}, rank 1 {ranks[1]['losses']}, one process {single}")
    assert all(r["world_size"] == 2 for r in ranks)
    # really sharded: 2 decoder layers + 2 vision blocks + the root, each rank holding part of the weights
    assert [r["fsdp_modules"] for r in ranks] == [5, 5]
    assert all(r["full_numel"] == single_stats["full_numel"] for r in ranks)
    assert sum(r["local_numel"] for r in ranks) == single_stats["full_numel"]
    assert all(r["local_numel"] < r["full_numel"] for r in ranks)
    assert ranks[0]["losses"] == ranks[1]["losses"]  # the all-reduced loss: the ranks must agree exactly
    for step, (dist_loss, one_loss) in enumerate(zip(ranks[0]["losses"], single), 1):
        print(f"step {step}: FSDP2 vs one process, loss rel diff {_rel(dist_loss, one_loss):.3g}")
        assert _rel(dist_loss, one_loss) <= DISTRIBUTED_LOSS_VS_SINGLE_BOUND
    assert ranks[0]["losses"][1] < ranks[0]["losses"][0]  # the same batch again after one AdamW step


def _stock_distributed_losses(tiny, tmp_path, data_json, *, launcher: str) -> list[float]:
    """``tune run --nproc_per_node 2 tune_recipes/full_finetune_distributed_cpu.py`` on the 7B full config
    with the tiny overrides, 1 sample per rank; the logged losses. ``launcher``: "tune" (the executable)
    or "python -m tune_recipes" (the older spelling, the same CLI)."""
    folder, _, data_dir = tiny
    dist_out = tmp_path / "dist"
    overrides = rf.recipe_overrides(folder, data_json, data_dir, dist_out,
                                    model_component="torch_port.qwen2_5_vl_from_hf_config")
    overrides = [o for o in overrides if not o.startswith("batch_size=")] + ["batch_size=1"]  # per rank
    args = ["--nproc_per_node", "2", "--master_port", str(_free_port()), "tune_recipes/full_finetune_distributed_cpu.py",
            "--config", "configs/qwen2_5_vl_7b_full.yaml", *overrides]
    if launcher == "tune":
        rf.tune_run(args, tmp_path / "tune_run.log", timeout=400)
    else:
        _run(["-m", "tune_recipes", "run", *args], tmp_path / "tune_run.log")
    return rf.logged_losses(dist_out / "logs")


def test_stock_full_finetune_distributed_on_cpu_with_workaround(tiny, tmp_path, tmp_path_factory):
    """On the mixed dataset (image chat, text-only chat, repeated): with 1 sample per rank, rank 1's batch has
    no image at either step. Its tower runs the zero-weight dummy pass, so both ranks gather and reduce the
    tower's FSDP shards alike (without it gloo aborts at step 1 on the collective mismatch; NCCL would hang):
    the run ends (tune_run's timeout bounds a hang) and the losses equal the single-process run on the same
    data (image + text-only in one batch of 2). Both ranks having images is the fsdp2_cpu test above."""
    folder, _, data_dir = tiny
    # the single-process reference: the stock single-device recipe, batch 2, same data and steps
    _, _, single = rf.full_single_device_run(tmp_path_factory, rf.MIXED_JSON)
    samples = rf.recipe_samples(folder, data_dir / rf.MIXED_JSON, data_dir)
    assert "image" in samples[0]["encoder_input"] and not samples[1]["encoder_input"]  # rank 1: text only
    dist_out = tmp_path / "dist"
    dist = _stock_distributed_losses(tiny, tmp_path, data_dir / rf.MIXED_JSON, launcher="tune")
    print(f"stock full_finetune_distributed (2 CPU ranks, rank 1 text only) {dist}, full_finetune_single_device {single}")
    assert len(dist) == len(single) == 2
    for step, (dist_loss, one_loss) in enumerate(zip(dist, single), 1):
        print(f"step {step}: stock distributed vs single device, loss rel diff {_rel(dist_loss, one_loss):.3g}")
        assert _rel(dist_loss, one_loss) <= DISTRIBUTED_LOSS_VS_SINGLE_BOUND
    assert dist[1] < dist[0]
    assert (dist_out / "epoch_0" / "model.safetensors.index.json").is_file()  # rank 0 gathered and saved
