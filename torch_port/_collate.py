"""Batch collation of :class:`Qwen2_5_VLTransform` samples for torchtune's recipes.

torchtune's training step pops ``labels`` from the batch and calls ``model(**batch)``, so every
other key is a keyword of the model's forward: the grids reach the vision encoder inside
``encoder_input`` and the mRoPE positions arrive as ``input_pos``; without them the model would
fall back to nothing (the grids) or to 1-D positions.

Positions of padded slots are 0 on all three axes: what HF's ``get_rope_index`` returns for a padded
batch with its attention mask (it positions the unpadded tokens of each row on their own and leaves
the rest at 0). Each row's positions depend on that row alone, so padding the samples' own
``input_pos`` with zeros gives exactly the batch's positions.

Packs (``Qwen2_5_VLPackedDataset`` items, which carry ``seq_lens``) are padded the same way, and the
batch then gets a block-causal ``mask``: no attention across the samples of a pack (nor between a
pack and its padding). The mask comes from torchtune's ``packed_block_causal_mask``, as its own
packed batches do: a flex-attention ``BlockMask`` where torchtune uses flex attention (CUDA, compute
capability 7.5 and up), a dense ``[b, s, s]`` boolean mask elsewhere. A sample without ``seq_lens``
in such a batch is a pack of one.
"""

from __future__ import annotations

from typing import Any, Dict, List

import torch
import torch.nn.functional as F
from torchtune.data import CROSS_ENTROPY_IGNORE_IDX
from torchtune.generation import get_causal_mask_from_padding_mask
from torchtune.modules.attention_utils import packed_block_causal_mask

__all__ = ["padded_collate_qwen2_5_vl"]

PAD_ID = 151643  # <|endoftext|>, the pad token of Qwen's tokenizers
MODALITIES = ("image", "video")


def _pad(rows: List[torch.Tensor], width: int, value: int, left: bool) -> torch.Tensor:
    """[..., s_i] tensors -> [b, ..., width], padded with ``value`` on the right or the left."""
    return torch.stack([F.pad(row, (width - row.shape[-1], 0) if left else (0, width - row.shape[-1]), value=value)
                        for row in rows])


def padded_collate_qwen2_5_vl(
    batch: List[Dict[str, Any]],
    padding_idx: int = PAD_ID,
    ignore_idx: int = CROSS_ENTROPY_IGNORE_IDX,
    pad_direction: str = "right",
) -> Dict[str, Any]:
    """Pad tokens, labels and positions to the longest sample; concatenate pixel values and grids.

    Args:
        batch (list[dict]): samples of :class:`Qwen2_5_VLTransform`: ``tokens`` and ``labels``
            (length s_i), ``input_pos`` ``[3, s_i]``, ``encoder_input`` (may be empty); or packs of
            ``Qwen2_5_VLPackedDataset``, which also carry ``seq_lens`` (summing to s_i).
        padding_idx (int): token id of padded slots (the tokenizer's ``pad_id``).
        ignore_idx (int): label of padded slots (the loss's ignore index).
        pad_direction (str): ``"right"`` (training) or ``"left"`` (generation).

    Returns:
        dict: ``tokens`` int64 ``[b, s]``, ``labels`` int64 ``[b, s]``, ``input_pos`` int64 ``[3, b, s]``
        (0 in padded slots), ``encoder_input`` ``{"image": {"pixel_values" [sum N, D], "grid_thw"
        [n, 3]}, "video": {...}}`` (a modality only when some sample has it; images in batch order,
        the order in which the model fills the placeholders), and with left padding ``mask``
        ``[b, s, s]`` bool (causal, padded keys hidden). A batch holding packs gets the block-causal
        ``mask`` instead (a ``BlockMask`` or ``[b, s, s]`` bool, see the module doc). Other sample
        keys are not collated.

    Raises:
        ValueError: an empty batch, an unknown ``pad_direction``, a sample whose ``tokens``,
            ``labels`` and ``input_pos`` lengths differ (or that lacks one of them), ``seq_lens``
            that are not positive or do not sum to a pack's length, or an ``encoder_input`` key
            other than image and video.
    """
    if pad_direction not in ("right", "left"):
        raise ValueError(f"pad_direction must be 'right' or 'left', got {pad_direction!r}")
    if not batch:
        raise ValueError("batch is empty")
    tokens, labels, positions = [], [], []
    for k, sample in enumerate(batch):
        missing = [key for key in ("tokens", "labels", "input_pos") if key not in sample]
        if missing:
            raise ValueError(f"batch[{k}] lacks {missing} (keys: {sorted(sample)}); use Qwen2_5_VLTransform samples")
        ids = torch.as_tensor(sample["tokens"], dtype=torch.int64)
        lab = torch.as_tensor(sample["labels"], dtype=torch.int64)
        pos = torch.as_tensor(sample["input_pos"], dtype=torch.int64)
        if ids.ndim != 1 or lab.shape != ids.shape or pos.shape != (3, ids.shape[0]):
            raise ValueError(
                f"batch[{k}]: tokens {list(ids.shape)}, labels {list(lab.shape)} and input_pos {list(pos.shape)} "
                f"must be [s], [s] and [3, s] for one s"
            )
        unknown = sorted(set(sample.get("encoder_input") or {}) - set(MODALITIES))
        if unknown:
            raise ValueError(f"batch[{k}]['encoder_input'] has unknown keys {unknown}; expected {list(MODALITIES)}")
        if "seq_lens" in sample:
            lens = torch.as_tensor(sample["seq_lens"], dtype=torch.int64).view(-1)
            if int(lens.sum()) != ids.shape[0] or bool((lens < 1).any()):
                raise ValueError(f"batch[{k}]: seq_lens {lens.tolist()} must be positive and sum to the "
                                 f"pack's {ids.shape[0]} tokens")
        tokens.append(ids)
        labels.append(lab)
        positions.append(pos)
    width = max(t.shape[0] for t in tokens)
    left = pad_direction == "left"
    out: Dict[str, Any] = {
        "tokens": _pad(tokens, width, padding_idx, left),
        "labels": _pad(labels, width, ignore_idx, left),
        "input_pos": _pad(positions, width, 0, left).transpose(0, 1).contiguous(),  # [3, b, s]
    }
    encoder_input = {}
    for modality in MODALITIES:
        parts = [sample["encoder_input"][modality] for sample in batch
                 if modality in (sample.get("encoder_input") or {})]
        if parts:
            encoder_input[modality] = {
                "pixel_values": torch.cat([p["pixel_values"] for p in parts]),
                "grid_thw": torch.cat([torch.as_tensor(p["grid_thw"]).view(-1, 3) for p in parts]),
            }
    out["encoder_input"] = encoder_input
    if any("seq_lens" in sample for sample in batch):
        out["mask"] = packed_block_causal_mask(_blocks(batch, tokens, width, left))
    elif left:
        real = _pad([torch.ones_like(t) for t in tokens], width, 0, True).bool()  # [b, s]
        out["mask"] = get_causal_mask_from_padding_mask(real)
    return out


def _blocks(batch, tokens: List[torch.Tensor], width: int, left: bool) -> List[torch.Tensor]:
    """Per row, the lengths of its causal blocks in order: the samples of the pack (one block for a
    sample without ``seq_lens``) and the padding (its own block, so padded queries see only padding)."""
    rows = []
    for sample, ids in zip(batch, tokens):
        lens = torch.as_tensor(sample["seq_lens"], dtype=torch.int64).view(-1) if "seq_lens" in sample \
            else torch.tensor([ids.shape[0]])
        pad = torch.tensor([width - ids.shape[0]] if width > ids.shape[0] else [], dtype=torch.int64)
        rows.append(torch.cat([pad, lens] if left else [lens, pad]))
    return rows
