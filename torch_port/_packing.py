"""Sample packing for Qwen2.5-VL: several transformed samples in one sequence, each as it is alone.

torchtune 0.6.1's ``PackedDataset`` packs text only (``tokens``, ``labels``, 1-D ``input_pos``,
``seq_lens``) and its stock recipes then swap the configured collate for ``padded_collate_packed``,
which drops ``encoder_input``. A pack here keeps everything a Qwen2.5-VL sample has:

* ``tokens`` and ``labels``: the samples' own, concatenated; each sample's first label is ignored,
  so the last token of one sample never learns to predict the first token of the next (alone,
  a sample's first label is never predicted: the recipe shifts labels left by one);
* ``input_pos`` ``[3, L]``: each sample's own 3-D mRoPE positions (computed by the transform from its
  own grids and ``second_per_grid_ts``, restarting at 0), concatenated: exactly the positions the
  sample has alone. (``qwen2_5_vl_rope_index`` over the packed sequence, LLaMA-Factory #7754, would
  shift each later sample's three axes by one constant, which the relative rotary hides only up to
  rounding and only behind the block mask; 1-D positions, NeMo Automodel #2172, change the logits.)
* ``seq_lens`` ``[n]``: the samples' lengths, from which ``padded_collate_qwen2_5_vl`` builds the
  block-causal mask (no attention across samples);
* ``encoder_input``: per modality, the samples' ``pixel_values`` and ``grid_thw`` concatenated in
  sample order, which is placeholder order; the vision tower keeps images apart by their grids.

So every sample's logits inside a pack are its logits alone, and the loss over a batch of packs is
the loss over the same samples unpacked (tests/test_packing.py).

Packs are formed best-fit in dataset order: each sample goes into the fullest pack that still has
room for it, else it opens a new pack; packs keep the order of their first samples, samples keep
dataset order inside a pack. A sample is never split (that would cut a vision run and restart its
positions). torchtune's ``PackedDataset`` closes a pack at the first sample that does not fit; on
mixed-length data that leaves about 17 % of the slots empty where best-fit leaves about 2 %
(benchmarks/packing.py). The lengths come from one pass over the dataset when the packed dataset is
built; a pack's samples are transformed again when it is read, so images are not held in memory
between epochs.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from torch.utils.data import Dataset
from torchtune.data import CROSS_ENTROPY_IGNORE_IDX

__all__ = ["Qwen2_5_VLPackedDataset", "best_fit_packs", "pack_samples"]

MODALITIES = ("image", "video")


def pack_samples(samples: Sequence[Mapping[str, Any]], ignore_idx: int = CROSS_ENTROPY_IGNORE_IDX) -> Dict[str, Any]:
    """Concatenate ``Qwen2_5_VLTransform`` samples into one pack (see the module doc).

    Args:
        samples (Sequence[Mapping]): samples with ``tokens``, ``labels`` (length s_i), ``input_pos``
            ``[3, s_i]`` and ``encoder_input``; other keys are not kept.
        ignore_idx (int): label of each sample's first token.

    Returns:
        dict: ``tokens`` int64 ``[L]``, ``labels`` int64 ``[L]``, ``input_pos`` int64 ``[3, L]``,
        ``seq_lens`` int64 ``[n]`` (``L = sum(seq_lens)``), ``encoder_input`` (a modality only when
        some sample has it).

    Raises:
        ValueError: no samples, an empty sample, or a sample whose ``tokens``, ``labels`` and
            ``input_pos`` lengths differ.
    """
    if not samples:
        raise ValueError("cannot pack an empty list of samples")
    tokens, labels, positions = [], [], []
    for k, sample in enumerate(samples):
        ids = torch.as_tensor(sample["tokens"], dtype=torch.int64)
        lab = torch.as_tensor(sample["labels"], dtype=torch.int64).clone()
        pos = torch.as_tensor(sample["input_pos"], dtype=torch.int64)
        if ids.ndim != 1 or ids.shape[0] == 0 or lab.shape != ids.shape or pos.shape != (3, ids.shape[0]):
            raise ValueError(f"samples[{k}]: tokens {list(ids.shape)}, labels {list(lab.shape)} and input_pos "
                             f"{list(pos.shape)} must be [s], [s] and [3, s] for one s > 0")
        lab[0] = ignore_idx  # predicted by the previous sample's last token: no loss across the boundary
        tokens.append(ids)
        labels.append(lab)
        positions.append(pos)
    encoder_input = {}
    for modality in MODALITIES:
        parts = [s["encoder_input"][modality] for s in samples if modality in (s.get("encoder_input") or {})]
        if parts:
            encoder_input[modality] = {
                "pixel_values": torch.cat([p["pixel_values"] for p in parts]),
                "grid_thw": torch.cat([torch.as_tensor(p["grid_thw"]).view(-1, 3) for p in parts]),
            }
    return {
        "tokens": torch.cat(tokens),
        "labels": torch.cat(labels),
        "input_pos": torch.cat(positions, dim=1),
        "seq_lens": torch.tensor([t.shape[0] for t in tokens], dtype=torch.int64),
        "encoder_input": encoder_input,
    }


def best_fit_packs(lengths: Sequence[int], max_seq_len: int) -> List[List[int]]:
    """Indices of ``lengths`` grouped into packs of at most ``max_seq_len`` tokens, best-fit in order
    (see the module doc): O(n log n) searches.

    Raises:
        ValueError: a length above ``max_seq_len`` (naming its index) or below 1.
    """
    packs: List[List[int]] = []
    room: List[tuple] = []  # (free tokens, pack index) of the packs not yet full, sorted
    for index, length in enumerate(lengths):
        if not 1 <= length <= max_seq_len:
            raise ValueError(f"sample {index} has {length} tokens; a pack holds 1 to max_seq_len = {max_seq_len}")
        k = bisect_left(room, (length, -1))  # the least free space that still fits
        if k < len(room):
            free, target = room.pop(k)
        else:
            free, target = max_seq_len, len(packs)
            packs.append([])
        packs[target].append(index)
        if free > length:
            insort(room, (free - length, target))
    return packs


class Qwen2_5_VLPackedDataset(Dataset):
    """A dataset of ``Qwen2_5_VLTransform`` samples, packed up to ``max_seq_len`` tokens per item.

    ``qwen2_5_vl_chat_dataset(..., pack=True)`` (config: ``dataset.pack=True``) builds it with the
    transform's ``max_seq_len``; ``padded_collate_qwen2_5_vl`` batches its packs. It is not a
    torchtune ``PackedDataset``, on purpose: torchtune's recipes would then swap in the text-only
    collate.

    Args:
        ds (Dataset): map-style dataset of transformed samples (``tokens``, ``labels``,
            ``input_pos``, ``encoder_input``).
        max_seq_len (int): most tokens in one pack.
        max_packs (int | None): keep only the first packs.

    Raises:
        ValueError: ``max_seq_len`` not a positive int, or a sample longer than it.
    """

    def __init__(self, ds: Dataset, *, max_seq_len: int, max_packs: Optional[int] = None) -> None:
        if not isinstance(max_seq_len, int) or max_seq_len < 1:
            raise ValueError(f"max_seq_len must be a positive int to pack samples, got {max_seq_len!r}")
        self.ds = ds
        self.max_seq_len = max_seq_len
        # every sample transformed once, as torchtune's PackedDataset does
        lengths = [len(self.ds[i]["tokens"]) for i in range(len(self.ds))]
        self.packs = best_fit_packs(lengths, max_seq_len)[:max_packs]
        self.lengths = [sum(lengths[i] for i in pack) for pack in self.packs]

    def __len__(self) -> int:
        return len(self.packs)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        return pack_samples([self.ds[i] for i in self.packs[index]])
