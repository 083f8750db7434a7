"""Chats with images and videos for Qwen2.5-VL fine-tuning, in the layouts Qwen2.5-VL data comes in.

Each row is read in whichever layout it has (``_chat_rows``: ShareGPT / LLaMA-Factory with
``images`` / ``videos`` lists and ``<image>`` / ``<video>`` tags, HF chat messages with content
parts, torchtune's single-image ShareGPT), any number of images and videos per row, text-only
rows too; files are read as HF reads them (``_media``: EXIF orientation, PyAV video decoding, HF's
frame sampling). An LLaMA-Factory row::

    {"messages": [{"role": "user", "content": "<image><image>What differs?"},
                  {"role": "assistant", "content": "The colour."}],
     "images": ["a.jpg", "b.jpg"]}

Each sample goes through ``Qwen2_5_VLTransform`` (the recipe's ``tokenizer``): ``tokens``,
``mask``, ``labels``, ``encoder_input`` (pixel values + grids per modality) and the mRoPE
``input_pos``, what HF's processor and chat template give for the same messages; the user and
system turns are masked from the loss. ``torch_port.padded_collate_qwen2_5_vl`` batches them.

Bad rows are named, never trained on silently: a missing or undecodable file, a tag count that
does not match the files, a row that does not fit the transform's ``max_seq_len`` without cutting
a vision run: ``ds[i]`` raises ``DataRowError`` naming the data file, the row and the media file.

``pack=True`` (config: ``dataset.pack=True``) packs the samples up to the transform's
``max_seq_len`` (``Qwen2_5_VLPackedDataset``: each sample's own positions, no attention across
samples). ``packed=True`` is refused: torchtune's recipes read that key and swap the configured
collate for their text-only one, which would drop the images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

import torch

from ._chat_rows import Media, row_to_messages
from ._media import MediaError
from ._packing import Qwen2_5_VLPackedDataset

__all__ = ["DataRowError", "Qwen2_5_VLChatDataset", "qwen2_5_vl_chat_dataset"]


class DataRowError(ValueError):
    """A dataset row that cannot become a correct sample; the message names the file, row and media."""


class Qwen2_5_VLChatDataset(torch.utils.data.Dataset):
    """Map-style dataset: ``ds[i]`` is ``model_transform``'s output for row ``i`` of ``rows``.

    Args:
        rows: indexable rows (a ``datasets.Dataset`` or a list of dicts).
        model_transform (Qwen2_5_VLTransform): turns the messages into model inputs.
        media_dir (str | Path): folder the rows' files are relative to.
        column_map, new_system_prompt, image_tag: see ``_chat_rows.row_to_messages``.
        name (str): how errors name the data (the data file).
    """

    def __init__(self, rows, model_transform, *, media_dir, column_map: Optional[Dict[str, str]] = None,
                 new_system_prompt: Optional[str] = None, image_tag: Optional[str] = None, name: str = "data"):
        self._rows = rows
        self._model_transform = model_transform
        self._options = dict(media_dir=Path(media_dir), video_transform=model_transform.video_transform,
                             column_map=column_map, new_system_prompt=new_system_prompt, image_tag=image_tag)
        self._name = name

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        where = f"{self._name} row {index}"
        media: List[Media] = []
        try:
            messages, media = row_to_messages(self._rows[index], **self._options)
            sample = self._model_transform({"messages": messages})
        except MediaError as error:
            raise DataRowError(f"{where}: {error}") from error
        except (ValueError, TypeError, KeyError) as error:
            files = f" (its media: {media})" if media else ""
            raise DataRowError(f"{where}{files}: {error}") from error
        self._check_whole(sample, media, where)
        return sample

    def _check_whole(self, sample: Mapping[str, Any], media: List[Media], where: str) -> None:
        """The transform's truncation drops a vision run that does not fit, with all after it; that
        would train on a sample other than the row: refuse it, naming the first file dropped."""
        kept = sum(len(sample["encoder_input"][kind]["grid_thw"]) for kind in ("image", "video")
                   if kind in sample["encoder_input"])
        if kept < len(media):
            raise DataRowError(
                f"{where}: does not fit max_seq_len={self._model_transform.max_seq_len} without cutting the vision "
                f"run of {media[kept]} ({kept} of its {len(media)} images / videos fit); raise max_seq_len, lower "
                "max_pixels (or the video's frames), or shorten the row")


def qwen2_5_vl_chat_dataset(
    model_transform,
    *,
    data_files: str,
    image_dir: Optional[str] = None,
    source: str = "json",
    column_map: Optional[Dict[str, str]] = None,
    new_system_prompt: Optional[str] = None,
    image_tag: Optional[str] = None,
    filter_fn: Optional[Callable] = None,
    split: str = "train",
    packed: bool = False,
    pack: bool = False,
    **load_dataset_kwargs: Dict[str, Any],
):
    """Chats with any number of images and videos per row, for ``Qwen2_5_VLTransform``.

    Args:
        model_transform (Qwen2_5_VLTransform): the recipe's tokenizer (the config's ``tokenizer``).
        data_files (str): the local JSON (or other ``source``) file.
        image_dir (str | None): folder the rows' image and video files are relative to (absolute
            paths are taken as they are); None: the data file's folder.
        source (str): ``datasets.load_dataset`` type of the file ("json").
        column_map (dict | None): this dataset's column names -> the file's (``messages``,
            ``conversations``, ``image``, ``images``, ``videos``).
        new_system_prompt (str | None): replaces every row's system turns (masked).
        image_tag (str | None): torchtune's single-image layout only: where its one image goes in the
            first user text (None: before it).
        filter_fn (Callable | None): ``datasets`` filter applied to the rows first (row numbers in
            errors count the rows left).
        split (str): the ``datasets`` split.
        packed (bool): must be False: torchtune's recipes swap in their text-only collate when
            ``dataset.packed`` is true. Use ``pack``.
        pack (bool): pack samples up to ``model_transform.max_seq_len`` tokens
            (``Qwen2_5_VLPackedDataset``; the collate builds the block-causal mask).
        **load_dataset_kwargs: more ``datasets.load_dataset`` arguments.

    Returns:
        Qwen2_5_VLChatDataset: ``ds[i]`` -> ``{"tokens": [s], "mask": [s], "labels": [s],
        "encoder_input": {"image": {"pixel_values", "grid_thw" [n, 3]}, "video": {...}}, "input_pos":
        [3, s]}`` (modalities without media absent; ``{}`` for a text-only row); with ``pack=True`` a
        ``Qwen2_5_VLPackedDataset`` of such samples.

    Raises:
        FileNotFoundError: ``data_files`` or ``image_dir`` does not exist.
        ValueError: ``packed=True``, a transform that is not a Qwen2.5-VL one, or ``pack=True`` with a
            transform whose ``max_seq_len`` is None. Bad rows raise
            ``DataRowError`` when read (``ds[i]``), naming the row and the file.
    """
    from datasets import load_dataset

    if packed:
        raise ValueError("dataset.packed=True is not supported: torchtune's recipes then replace the collate with "
                         "their text-only padded_collate_packed, which drops the images and videos. Set "
                         "dataset.pack=True (and dataset.packed=False) to pack Qwen2.5-VL samples.")
    if not hasattr(model_transform, "image_token_id") or not hasattr(model_transform, "video_transform"):
        raise ValueError(f"model_transform must be a Qwen2_5_VLTransform, got {type(model_transform).__name__}")
    if pack and model_transform.max_seq_len is None:
        raise ValueError("dataset.pack=True packs up to the tokenizer's max_seq_len, which is None: set "
                         "tokenizer.max_seq_len")
    if not Path(data_files).is_file():
        raise FileNotFoundError(f"data_files {data_files} not found")
    media_dir = Path(data_files).parent if image_dir is None else Path(image_dir)
    if not media_dir.is_dir():
        raise FileNotFoundError(f"image_dir {media_dir} is not a folder")
    rows = load_dataset(source, data_files=str(data_files), split=split, **load_dataset_kwargs)
    if filter_fn is not None:
        rows = rows.filter(filter_fn)
    dataset = Qwen2_5_VLChatDataset(rows, model_transform, media_dir=media_dir, column_map=column_map,
                                    new_system_prompt=new_system_prompt, image_tag=image_tag,
                                    name=Path(data_files).name)
    return Qwen2_5_VLPackedDataset(dataset, max_seq_len=model_transform.max_seq_len) if pack else dataset
