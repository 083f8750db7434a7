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
"""

from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

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
        packed (bool): must be False (torchtune packs no multimodal dataset).
        **load_dataset_kwargs: more ``datasets.load_dataset`` arguments.

    Returns:
        SFTDataset: ``ds[i]`` -> ``{"tokens": [s], "mask": [s], "labels": [s], "encoder_input":
        {"image": {"pixel_values": [N, 3*2*14*14], "grid_thw": [1, 3]}}, "input_pos": [3, s]}``
        (``encoder_input`` ``{}`` for a text-only sample).

    Raises:
        FileNotFoundError: ``data_files`` or ``image_dir`` does not exist.
        ValueError: ``packed=True``, or a transform that is not a Qwen2.5-VL one.
    """
    from torchtune.data import ShareGPTToMessages
    from torchtune.datasets import SFTDataset

    if packed:
        raise ValueError("packed=True is not supported: torchtune packs no multimodal dataset")
    if not hasattr(model_transform, "image_token_id"):
        raise ValueError(f"model_transform must be a Qwen2_5_VLTransform, got {type(model_transform).__name__}")
    if not Path(data_files).is_file():
        raise FileNotFoundError(f"data_files {data_files} not found")
    if not Path(image_dir).is_dir():
        raise FileNotFoundError(f"image_dir {image_dir} is not a folder")
    # what multimodal_chat_dataset builds, with text-only rows let through
    messages = ShareGPTToMessages(train_on_input=False, column_map=column_map, new_system_prompt=new_system_prompt,
                                  image_dir=Path(image_dir), image_tag=image_tag)
    image_column = (column_map or {}).get("image", "image")
    return SFTDataset(source=source, message_transform=_TextOrImageMessages(messages, image_column),
                      model_transform=model_transform, filter_fn=filter_fn, split=split,
                      data_files=str(data_files), **load_dataset_kwargs)
