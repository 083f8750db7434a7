"""Data-parallel training of Qwen2.5-VL with torch's FSDP2 (``fully_shard``) on CPU processes (gloo).

The training step of torchtune's ``full_finetune_distributed`` recipe, without the recipe: the
model built from an HF folder's ``config.json`` and loaded through ``Qwen2_5_VLHFCheckpointer``,
sharded with ``torchtune.training.shard_model`` (``fully_shard`` on every decoder layer and vision
block, then the root; no tensor parallelism), torchtune's ``CEWithChunkedOutputLoss`` on chunked
output, AdamW, the dataset through ``StatefulDistributedSampler`` (rank r gets samples r, r + world,
...). Loss and gradients are normalised by the tokens of all ranks, as the recipe does, so
``world_size`` processes with ``batch_size / world_size`` samples each take the same steps as one
process with ``batch_size``. Launch::

    python -m torch.distributed.run --nproc_per_node 2 -m tune_recipes.fsdp2_cpu \\
        --model-dir <hf folder> --data-files train.json --image-dir <images root> --out <folder>

Each rank writes ``<out>/losses_rank<r>.json``: ``rank``, ``world_size``, ``losses`` (per step),
``fsdp_modules`` (modules ``fully_shard`` wrapped), ``local_numel`` / ``full_numel`` (parameter
elements this rank holds / in the whole model). Without
``torchrun`` (no ``WORLD_SIZE``) it is the single-process run: no process group, no sharding.
"""

import argparse
import json
import os
import tempfile
from functools import partial
from pathlib import Path

import torch

__all__ = ["train_steps"]


def _batches(model_dir: Path, data_files: str, image_dir: str, batch_size: int, rank: int, world_size: int,
             ignore_index: int):
    """The recipe's data path: transform, chat dataset, distributed sampler (no shuffle), padded collate."""
    from torchdata.stateful_dataloader import StatefulDataLoader
    from torchdata.stateful_dataloader.sampler import StatefulDistributedSampler

    import torch_port

    transform = torch_port.Qwen2_5_VLTransform(str(model_dir / "vocab.json"), str(model_dir / "merges.txt"),
                                               str(model_dir / "tokenizer.json"))
    ds = torch_port.qwen2_5_vl_chat_dataset(transform, data_files=data_files, image_dir=image_dir)
    sampler = StatefulDistributedSampler(ds, num_replicas=world_size, rank=rank, shuffle=False)
    collate = partial(torch_port.padded_collate_qwen2_5_vl, padding_idx=transform.pad_id, ignore_idx=ignore_index)
    return StatefulDataLoader(ds, batch_size=batch_size, sampler=sampler, collate_fn=collate, drop_last=True)


def _model(model_dir: Path, mesh):
    """The port built from ``config.json``, weights through the project's checkpointer; sharded if ``mesh``."""
    from torchtune import training

    import torch_port

    model = torch_port.qwen2_5_vl_from_hf_config(model_dir / "config.json")
    with tempfile.TemporaryDirectory() as out:  # the checkpointer wants an output folder; nothing is saved
        state = torch_port.Qwen2_5_VLHFCheckpointer(checkpoint_dir=str(model_dir), output_dir=out).load_checkpoint()
    model.load_state_dict(state["model"], strict=True)
    if mesh is not None:  # fully_shard on real tensors: each rank keeps its dim-0 shard of every parameter
        training.shard_model(model, [partial(training.get_shard_conditions, names_to_match=None)],
                             cpu_offload=False, reshard_after_forward=True, dp_mesh=mesh)
    return model


def _shard_stats(model) -> dict:
    """How the model is split: ``fully_shard``-wrapped modules, parameter elements held here / in all."""
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    params = list(model.parameters())
    return {"fsdp_modules": sum(isinstance(m, FSDPModule) for m in model.modules()),
            "local_numel": sum((p.to_local() if isinstance(p, DTensor) else p).numel() for p in params),
            "full_numel": sum(p.numel() for p in params)}


def train_steps(model_dir, data_files: str, image_dir: str, *, steps: int, batch_size: int, lr: float,
                seed: int = 0, stats: dict = None) -> list[float]:
    """Run ``steps`` optimizer steps; returns the loss of each step (all ranks' tokens).

    ``batch_size`` is the global batch: each of ``world_size`` ranks takes ``batch_size // world_size``.
    In a ``torchrun`` process (``WORLD_SIZE`` set) the gloo process group is started here and closed at
    the end; otherwise this is the single-process run. ``stats`` (a dict), when given, receives
    ``_shard_stats`` of the model.
    """
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torchtune import training
    from torchtune.modules.loss import CEWithChunkedOutputLoss

    model_dir = Path(model_dir)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} must be divisible by the world size {world_size}")
    if world_size > 1:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if world_size > 1 else 0
    try:
        training.set_seed(seed)
        mesh = init_device_mesh("cpu", (world_size,)) if world_size > 1 else None
        model = _model(model_dir, mesh)
        if stats is not None:
            stats.update(_shard_stats(model))
        loss_fn = CEWithChunkedOutputLoss()
        model.set_num_output_chunks(loss_fn.num_output_chunks)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, fused=False)
        per_rank = batch_size // world_size
        ignore = torch.full((per_rank, 1), loss_fn.ignore_index)
        losses = []
        for batch in _batches(model_dir, data_files, image_dir, per_rank, rank, world_size, loss_fn.ignore_index):
            num_tokens = (batch["labels"] != loss_fn.ignore_index).sum()
            labels = batch.pop("labels")
            logits = model(**batch)
            labels = torch.hstack((labels[..., 1:], ignore))  # next-token targets, as the recipe shifts
            loss = loss_fn(logits, labels) * num_tokens  # a sum over this rank's tokens
            loss.backward()
            loss = loss.detach()
            if world_size > 1:
                dist.all_reduce(num_tokens)
                dist.all_reduce(loss)
                # FSDP2 averages gradients over ranks: world_size / tokens turns that into a per-token mean
                training.scale_grads(model, world_size / num_tokens)
            else:
                training.scale_grads(model, 1 / num_tokens)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item() / num_tokens.item())
            if len(losses) == steps:
                break
        if len(losses) < steps:
            raise ValueError(f"the dataset gives only {len(losses)} batches of {batch_size}, {steps} steps asked")
        return losses
    finally:
        if world_size > 1:
            dist.destroy_process_group()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--data-files", required=True)
    parser.add_argument("--image-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=2, help="global batch (all ranks)")
    parser.add_argument("--lr", type=float, default=2e-3)
    args = parser.parse_args(argv)
    stats = {}
    losses = train_steps(args.model_dir, args.data_files, args.image_dir, steps=args.steps,
                         batch_size=args.batch_size, lr=args.lr, stats=stats)
    rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"losses_rank{rank}.json").write_text(json.dumps({"rank": rank, "world_size": world_size,
                                                              "losses": losses, **stats}))


if __name__ == "__main__":
    main()
