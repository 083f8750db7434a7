"""A chat-with-images dataset for Qwen2.5-VL fine-tuning: torchtune's ``multimodal_chat_dataset`` on local files.

The data is ShareGPT-style JSON (what ``multimodal_chat_dataset`` reads), at most one image per
sample, given by a path relative to ``image_dir``; a sample without ``"image"`` (or with
``"image": null``) is a text-only chat, as real datasets mix them::

    [{"conversations": [{"from": "human", "value": "What is in this image?"},
                        {"from": "gpt", "value": "A red square."}],
      "image": "images/0.png"},
     {"conversations": [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "Hi."}]}, ...]

(``datasets`` gives every row of a JSON file the same columns, so a text-only row there reads
``"image": None``; torchtune's ``ShareGPTToMessages`` would take any row with the column for an image
row, so rows whose image is None or empty reach it without the column.)

Each sample goes through ``Qwen2_5_VLTransform`` (the recipe's ``tokenizer``), which gives
``tokens``, ``labels``, ``encoder_input`` (pixel values + grids) and the mRoPE ``input_pos``;
``torch_port.padded_collate_qwen2_5_vl`` batches them (the recipe passes ``padding_idx`` and
``ignore_idx`` to it). The user turn is masked from the loss (torchtune masks the input of
multimodal samples).

``pack=True`` (config: ``dataset.pack=True``) packs the samples up to the transform's
``max_seq_len`` (``Qwen2_5_VLPackedDataset``: each sample's own positions, no attention across
samples). ``packed=True`` is refused: torchtune's recipes read that key and swap the configured
collate for their text-only one, which would drop the images.
"""

from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

from ._packing import Qwen2_5_VLPackedDataset

__all__ = ["qwen2_5_vl_chat_dataset"]


class _TextOrImageMessages:
    """ShareGPT rows to messages; a row whose image column is None / "" is passed on without it."""

    def __init__(self, messages, image_column: str) -> None:
        self._messages = messages
        self._image_column = image_column

    def __call__(self, sample: Mapping[str, Any]) -> Mapping[str, Any]:
        if self._image_column in sample and sample[self._image_column] in (None, ""):
            sample = {k: v for k, v in sample.items() if k != self._image_column}
        return self._messages(sample)


def qwen2_5_vl_chat_dataset(
    model_transform,
    *,
    data_files: str,
    image_dir: str,
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
    """torchtune ``SFTDataset`` of chats with images, for ``Qwen2_5_VLTransform``.

    Args:
        model_transform (Qwen2_5_VLTransform): the recipe's tokenizer (the config's ``tokenizer``).
        data_files (str): the local JSON (or other ``source``) file.
        image_dir (str): folder the samples' image paths are relative to.
        source (str): ``datasets.load_dataset`` type of the file ("json").
        column_map, new_system_prompt, image_tag, filter_fn, split: as torchtune's
            ``multimodal_chat_dataset`` (``image_tag`` None puts the image before the first user text).
        packed (bool): must be False: torchtune's recipes swap in their text-only collate when
            ``dataset.packed`` is true. Use ``pack``.
        pack (bool): pack samples up to ``model_transform.max_seq_len`` tokens
            (``Qwen2_5_VLPackedDataset``; the collate builds the block-causal mask).
        **load_dataset_kwargs: more ``datasets.load_dataset`` arguments.

    Returns:
        SFTDataset: ``ds[i]`` -> ``{"tokens": [s], "mask": [s], "labels": [s], "encoder_input":
        {"image": {"pixel_values": [N, 3*2*14*14], "grid_thw": [1, 3]}}, "input_pos": [3, s]}``
        (``encoder_input`` ``{}`` for a text-only sample); with ``pack=True`` a
        ``Qwen2_5_VLPackedDataset`` of such samples.

    Raises:
        FileNotFoundError: ``data_files`` or ``image_dir`` does not exist.
        ValueError: ``packed=True``, a transform that is not a Qwen2.5-VL one, or ``pack=True``
            with a transform whose ``max_seq_len`` is None.
    """
    from torchtune.data import ShareGPTToMessages
    from torchtune.datasets import SFTDataset

    if packed:
        raise ValueError("dataset.packed=True is not supported: torchtune's recipes then replace the collate with "
                         "their text-only padded_collate_packed, which drops the images and videos. Set "
                         "dataset.pack=True (and dataset.packed=False) to pack Qwen2.5-VL samples.")
    if not hasattr(model_transform, "image_token_id"):
        raise ValueError(f"model_transform must be a Qwen2_5_VLTransform, got {type(model_transform).__name__}")
    if pack and model_transform.max_seq_len is None:
        raise ValueError("dataset.pack=True packs up to the tokenizer's max_seq_len, which is None: set "
                         "tokenizer.max_seq_len")
    if not Path(data_files).is_file():
        raise FileNotFoundError(f"data_files {data_files} not found")
    if not Path(image_dir).is_dir():
        raise FileNotFoundError(f"image_dir {image_dir} is not a folder")
    # what multimodal_chat_dataset builds, with text-only rows let through
    messages = ShareGPTToMessages(train_on_input=False, column_map=column_map, new_system_prompt=new_system_prompt,
                                  image_dir=Path(image_dir), image_tag=image_tag)
    image_column = (column_map or {}).get("image", "image")
    ds = SFTDataset(source=source, message_transform=_TextOrImageMessages(messages, image_column),
                    model_transform=model_transform, filter_fn=filter_fn, split=split,
                    data_files=str(data_files), **load_dataset_kwargs)
    return Qwen2_5_VLPackedDataset(ds, max_seq_len=model_transform.max_seq_len) if pack else ds
