"""Qwen2.5-VL's model transform for torchtune: chat messages with images -> tokens, loss mask, encoder input, positions.

Text goes through torchtune's ``Qwen2_5Tokenizer`` (byte-level BPE from ``vocab.json`` +
``merges.txt``) with Qwen's chat format, each message ``<|im_start|>role\\n ... <|im_end|>\\n``.
An image content part becomes ``<|vision_start|>`` + ``<|image_pad|>`` x n + ``<|vision_end|>``
with ``n = grid_thw.prod() // merge_size**2``, the number of embeddings the vision encoder returns
for it, as HF's ``Qwen2_5_VLProcessor`` expands the chat template's single placeholder. A video
part ``{"type": "video", "content": frames, "video_fps": optional, "total_num_frames": optional}`` (frames as
:class:`Qwen2_5_VLVideoTransform` takes them) becomes the same run with ``<|video_pad|>``.

Choices where torchtune and HF differ, or where neither says:

* Default system prompt: HF's released Qwen2.5-VL chat template starts every conversation whose
  first message is not ``system`` with ``<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n``.
  The transform does the same (``system_prompt``, None to turn it off); that message is masked.
* End of a conversation: torchtune's convention. The last assistant message gets no
  ``<|im_end|>\\n`` footer; ``add_eos`` appends ``<|im_end|>`` (the eos). HF's template writes
  ``<|im_end|>\\n``, so a finished conversation here is HF's tokens without the last ``\\n``.
  A prompt for generation ends with an empty assistant message and ``add_eos=False``: exactly
  HF's ``add_generation_prompt=True``.
* Text parts are encoded one by one (as torchtune does), so text that begins with whitespace may
  split at the part boundary differently from HF's one-string encoding.
* Truncation (``max_seq_len``) never cuts a vision run: a run that would not fit whole is dropped
  with everything after it, and so is its image, so tokens and encoder input always agree; then
  torchtune's rule applies (with ``add_eos`` the last kept token becomes the eos, masked).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import PIL.Image
import torch
from torchtune.data import CROSS_ENTROPY_IGNORE_IDX, Message, truncate
from torchtune.data._prompt_templates import _get_prompt_template
from torchtune.models.qwen2_5._tokenizer import QWEN2_5_SPECIAL_TOKENS, Qwen2_5Tokenizer
from torchtune.modules.transforms import Transform
from torchtune.modules.transforms.tokenizers import ModelTokenizer, parse_hf_tokenizer_json

from ._rope_index import qwen2_5_vl_rope_index
from ._transform import Qwen2_5_VLImageTransform
from ._video_transform import Qwen2_5_VLVideoTransform

__all__ = ["DEFAULT_SYSTEM_PROMPT", "Qwen2_5_VLTransform"]

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
IMAGE_PAD, VIDEO_PAD, VISION_PAD = "<|image_pad|>", "<|video_pad|>", "<|vision_pad|>"
# tokens the transform writes itself; a text part holding one would break the placeholder count
_VISION_TOKENS = (VISION_START, VISION_END, VISION_PAD, IMAGE_PAD, VIDEO_PAD)
# what torchtune's Qwen2_5Tokenizer and this transform look up by name
_REQUIRED_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>") + _VISION_TOKENS
_IMAGE_TYPES = (PIL.Image.Image, np.ndarray, torch.Tensor)
# keys of a content part by type; a video part may carry the clip's frame rate and, for frames
# already sampled, the clip's frame count (see Qwen2_5_VLVideoTransform)
_PART_KEYS = {"text": {"type", "content"}, "image": {"type", "content"},
              "video": {"type", "content", "video_fps", "total_num_frames"}}


# the image transform's options, also taken as keywords of the model transform (its older spelling)
IMAGE_OPTIONS = ("min_pixels", "max_pixels", "patch_size", "merge_size", "temporal_patch_size", "image_mean",
                 "image_std", "backend", "do_resize", "do_rescale", "rescale_factor", "do_normalize",
                 "do_convert_rgb")


def _image_options(options: Optional[Mapping[str, Any]], keywords: Mapping[str, Any]) -> Dict[str, Any]:
    """``image_options`` merged with the same options given as keywords; other names, a name given
    both ways, or an option the image transform does not take are refused by name."""
    unknown = sorted(set(keywords) - set(IMAGE_OPTIONS))
    if unknown:
        raise TypeError(f"Qwen2_5_VLTransform() got unexpected keyword argument(s) {unknown}; image options "
                        f"are {list(IMAGE_OPTIONS)}")
    options = dict(options or {})
    unknown = sorted(set(options) - set(IMAGE_OPTIONS))
    if unknown:
        raise ValueError(f"image_options holds {unknown}, which are not image transform options "
                         f"{list(IMAGE_OPTIONS)} (dtype is a keyword of its own)")
    twice = sorted(set(options) & set(keywords))
    if twice:
        raise ValueError(f"{twice} given both in image_options and as keywords; give each once")
    return {**options, **keywords}


class Qwen2_5_VLTransform(ModelTokenizer, Transform):
    """Tokenizer and image transform of Qwen2.5-VL: ``sample["messages"]`` -> model inputs.

    Args:
        path (str): ``vocab.json``.
        merges_file (str): ``merges.txt``.
        special_tokens_path (str | None): an HF ``tokenizer.json`` whose ``added_tokens`` are the
            special tokens; None uses torchtune's ``QWEN2_5_SPECIAL_TOKENS`` (the released ids,
            which include the vision tokens 151652-151656).
        max_seq_len (int | None): truncate each sample to this many tokens (see the module note).
        image_options (Mapping | None): keyword arguments of :class:`Qwen2_5_VLImageTransform` (the
            image processor's settings, HF's meaning and defaults): ``min_pixels``, ``max_pixels``,
            ``patch_size``, ``merge_size``, ``temporal_patch_size``, ``image_mean``, ``image_std``,
            ``backend`` ("pil" or "torchvision"), ``do_resize``, ``do_rescale``, ``rescale_factor``,
            ``do_normalize``, ``do_convert_rgb``. Each may also be given as a keyword of its own
            (the older spelling), but not both ways.
        video_options (Mapping | None): keyword arguments of :class:`Qwen2_5_VLVideoTransform`
            (its own pixel bounds, frame sampling); patching, mean and std default to the image ones.
        dtype (torch.dtype | None): dtype of the image and video pixel values (None: float32).
        tokens_per_second (int | float): the vision config's temporal positions per second (videos).
        system_prompt (str | None): system message inserted when the first message is not one,
            as HF's chat template does; None inserts nothing.
        prompt_template: torchtune prompt template (object, dotted path or role -> tags dict).

    ``transform(sample)`` returns a new dict: ``sample``'s keys except ``messages``, plus

    * ``tokens`` (list[int], length s), ``mask`` (list[bool]: True = no loss, torchtune's
      convention), ``labels`` (list[int]: the token, or ``CROSS_ENTROPY_IGNORE_IDX`` where masked);
    * ``encoder_input``: ``{"image": {"pixel_values" [N, 3*tp*p*p], "grid_thw" [n, 3]}}`` for the
      images in order (and ``"video"`` likewise); modalities without content are absent;
      the videos' ``second_per_grid_ts`` go into the positions (the encoder does not take them);
    * ``input_pos``: int64 ``[3, s]`` mRoPE positions (``qwen2_5_vl_rope_index``).
    """

    def __init__(
        self,
        path: str,
        merges_file: str,
        special_tokens_path: Optional[str] = None,
        max_seq_len: Optional[int] = None,
        *,
        image_options: Optional[Mapping[str, Any]] = None,
        video_options: Optional[Mapping[str, Any]] = None,
        dtype: Optional[torch.dtype] = None,
        tokens_per_second=2,
        system_prompt: Optional[str] = DEFAULT_SYSTEM_PROMPT,
        prompt_template=None,
        **image_keywords: Any,
    ):
        if max_seq_len is not None and (not isinstance(max_seq_len, int) or max_seq_len < 1):
            raise ValueError(f"max_seq_len must be a positive int or None, got {max_seq_len!r}")
        image_options = _image_options(image_options, image_keywords)
        if special_tokens_path is None:
            special_tokens = dict(QWEN2_5_SPECIAL_TOKENS)
        else:
            special_tokens = parse_hf_tokenizer_json(special_tokens_path)
        missing = [name for name in _REQUIRED_TOKENS if name not in special_tokens]
        if missing:
            where = special_tokens_path or "QWEN2_5_SPECIAL_TOKENS"
            raise ValueError(f"special tokens from {where} lack {missing}, which Qwen2.5-VL needs")
        if prompt_template is not None:
            prompt_template = _get_prompt_template(prompt_template)
        self.tokenizer = Qwen2_5Tokenizer(
            path, merges_file, special_tokens=special_tokens, max_seq_len=None, prompt_template=None
        )
        self.image_transform = Qwen2_5_VLImageTransform(dtype=dtype, **image_options)
        merge_size = self.image_transform.merge_size
        shared = ("patch_size", "merge_size", "temporal_patch_size", "image_mean", "image_std")
        self.video_transform = Qwen2_5_VLVideoTransform(**{
            **{name: image_options[name] for name in shared if name in image_options}, **(video_options or {}),
        })
        if self.video_transform.merge_size != merge_size:
            raise ValueError(f"video_options merge_size {self.video_transform.merge_size} differs from "
                             f"merge_size {merge_size}: one vision tower serves both")
        self.dtype = dtype
        self.special_tokens = special_tokens
        self.max_seq_len = max_seq_len
        self.merge_size = merge_size
        self.tokens_per_second = tokens_per_second
        self.system_prompt = system_prompt
        self.prompt_template = prompt_template
        self.eos_id = self.tokenizer.eos_id
        self.pad_id = self.tokenizer.pad_id
        self.stop_tokens = self.tokenizer.stop_tokens
        self.vision_start_id = special_tokens[VISION_START]
        self.vision_end_id = special_tokens[VISION_END]
        self.image_token_id = special_tokens[IMAGE_PAD]
        self.video_token_id = special_tokens[VIDEO_PAD]
        self._vision_ids = {special_tokens[name] for name in _VISION_TOKENS}

    def encode(self, text: str, add_bos: bool = True, add_eos: bool = True) -> List[int]:
        """Text -> token ids (special tokens in the text are recognised), as ``Qwen2_5Tokenizer``."""
        return self.tokenizer.encode(text, add_bos=add_bos, add_eos=add_eos)

    def decode(self, token_ids: List[int], skip_special_tokens: bool = False) -> str:
        """Token ids -> text, as ``Qwen2_5Tokenizer``."""
        return self.tokenizer.decode(token_ids, skip_special_tokens=skip_special_tokens)

    def tokenize_messages(self, messages: List[Message], add_eos: bool = True) -> Tuple[List[int], List[bool]]:
        """Messages -> ``(tokens, mask)``, vision runs expanded (images are transformed to count them).

        Raises:
            ValueError: no messages, an unknown content type, an image part without an image, or
                a text part holding a vision special token.
        """
        tokens, mask, _, _ = self._tokenize(messages, add_eos=add_eos, inference=False)
        return tokens, mask

    def __call__(self, sample: Mapping[str, Any], inference: bool = False) -> Dict[str, Any]:
        """``{"messages": [Message, ...], ...}`` -> the sample with model inputs (see the class doc).

        Args:
            sample (Mapping): holds ``messages``; other keys are passed through.
            inference (bool): a prompt for generation: no eos is appended (end the messages with an
                empty assistant message to get HF's ``add_generation_prompt=True`` tokens).
        """
        if "messages" not in sample:
            raise KeyError(f"sample has no 'messages' (keys: {sorted(sample)})")
        tokens, mask, images, videos = self._tokenize(sample["messages"], add_eos=not inference, inference=inference)
        encoder_input: Dict[str, Dict[str, torch.Tensor]] = {}
        grids = {}
        if images:
            grids["image"] = torch.cat([out["image_grid_thw"] for out in images])
            encoder_input["image"] = {
                "pixel_values": torch.cat([out["pixel_values"] for out in images]),
                "grid_thw": grids["image"],
            }
        seconds = None
        if videos:
            grids["video"] = torch.cat([out["video_grid_thw"] for out in videos])
            encoder_input["video"] = {
                "pixel_values": torch.cat([out["pixel_values_videos"] for out in videos]),
                "grid_thw": grids["video"],
            }
            seconds = torch.cat([torch.as_tensor(out["second_per_grid_ts"]).reshape(-1) for out in videos])
        ids = torch.tensor(tokens, dtype=torch.int64).view(1, -1)
        types = torch.zeros_like(ids)
        types[ids == self.image_token_id] = 1
        types[ids == self.video_token_id] = 2
        positions, _ = qwen2_5_vl_rope_index(
            ids, types, grids.get("image"), grids.get("video"), seconds,
            spatial_merge_size=self.merge_size, tokens_per_second=self.tokens_per_second,
        )
        out = {key: value for key, value in sample.items() if key != "messages"}
        out["tokens"] = tokens
        out["mask"] = mask
        out["labels"] = [CROSS_ENTROPY_IGNORE_IDX if m else t for t, m in zip(tokens, mask)]
        out["encoder_input"] = encoder_input
        out["input_pos"] = positions[:, 0]  # [3, s]
        return out

    # -- internals ---------------------------------------------------------------------------

    def _messages(self, messages: List[Message]) -> Tuple[List[Message], int]:
        """-> the messages to tokenize (system prompt inserted, template applied), how many were inserted."""
        if not isinstance(messages, (list, tuple)) or not messages:
            raise ValueError(f"messages must be a non-empty list of torchtune Messages, got {messages!r}")
        for k, message in enumerate(messages):
            if not isinstance(message, Message):
                raise ValueError(f"messages[{k}] must be a torchtune Message, got {type(message).__name__}")
        messages, inserted = list(messages), 0
        if self.system_prompt is not None and messages[0].role != "system":
            messages.insert(0, Message(role="system", content=self.system_prompt, masked=True))
            inserted = 1
        return (self.prompt_template(messages) if self.prompt_template is not None else messages), inserted

    def _tokenize(self, messages, *, add_eos: bool, inference: bool):
        """-> tokens, mask, image transform outputs, video transform outputs (those kept)."""
        messages, inserted = self._messages(messages)
        tokens: List[int] = []
        mask: List[bool] = []
        runs: List[Tuple[int, str]] = []  # (start of the run's <|vision_start|>, "image" | "video")
        images: List[dict] = []
        videos: List[dict] = []
        for i, message in enumerate(messages):
            part_tokens = self.tokenizer._tokenize_header(messages, i)
            for j, item in enumerate(message.content):
                kind = item.get("type") if isinstance(item, Mapping) else None
                # errors name the caller's message index (or the inserted system prompt)
                where = f"messages[{i - inserted}] ({message.role}) content[{j}]" if i >= inserted else "system_prompt"
                extra = sorted(set(item) - _PART_KEYS.get(kind, set(item))) if isinstance(item, Mapping) else []
                if extra:
                    raise ValueError(f"{where}: unexpected keys {extra} in a {kind!r} part "
                                     f"(expected {sorted(_PART_KEYS[kind])})")
                if kind == "text":
                    part_tokens += self._text(item.get("content"), where)
                elif kind in ("image", "video"):
                    out, n = self._image(item, where, inference) if kind == "image" else self._video(item, where)
                    (images if kind == "image" else videos).append(out)
                    runs.append((len(tokens) + len(part_tokens), kind))
                    pad = self.image_token_id if kind == "image" else self.video_token_id
                    part_tokens += [self.vision_start_id] + [pad] * n + [self.vision_end_id]
                else:
                    raise ValueError(f"{where}: unsupported content type {kind!r}; expected 'text', 'image' or 'video'")
            part_tokens += self.tokenizer._tokenize_footer(messages, i)
            tokens += part_tokens
            mask += [message.masked] * len(part_tokens)
            if self.max_seq_len and len(tokens) >= self.max_seq_len:
                break  # later messages cannot fit (torchtune stops here too)
        if add_eos:
            tokens.append(self.eos_id)
            mask.append(mask[-1])
        if self.max_seq_len and len(tokens) > self.max_seq_len:
            tokens, mask, kept = self._truncate(tokens, mask, runs, add_eos)
            images = images[: sum(kind == "image" for _, kind in runs[:kept])]
            videos = videos[: sum(kind == "video" for _, kind in runs[:kept])]
        return tokens, mask, images, videos

    def _truncate(self, tokens, mask, runs, add_eos: bool):
        """torchtune's truncation, moved back to the start of a vision run it would cut.

        -> tokens, mask, number of runs kept (all of them whole)."""
        limit = self.max_seq_len
        # with add_eos the last kept slot becomes the eos, so a run must end before it
        room = limit - 1 if add_eos else limit
        kept = len(runs)
        for k, (start, kind) in enumerate(runs):
            end = start + 1  # one past the run's <|vision_end|>
            while tokens[end - 1] != self.vision_end_id:
                end += 1
            if end > room:
                kept = k
                limit = start + 1 if add_eos else start  # the eos takes <|vision_start|>'s slot
                break
        tokens = truncate(tokens, limit, self.eos_id if add_eos else None)
        mask = truncate(mask, limit, True if add_eos else None)
        return tokens, mask, kept

    def _text(self, text, where: str) -> List[int]:
        if not isinstance(text, str):
            raise ValueError(f"{where}: a text part's 'content' must be a str, got {type(text).__name__}")
        ids = self.tokenizer.encode(text, add_bos=False, add_eos=False)
        found = sorted({self.tokenizer._special_tokens_reversed[t] for t in ids if t in self._vision_ids})
        if found:
            raise ValueError(
                f"{where}: the text holds vision special tokens {found}; put each image (video) in the "
                "message as its own {'type': 'image', 'content': ...} part and the transform writes them"
            )
        return ids

    def _image(self, item: Mapping, where: str, inference: bool) -> Tuple[dict, int]:
        image = item.get("content")
        if not isinstance(image, _IMAGE_TYPES):
            raise ValueError(
                f"{where}: an image part's 'content' must be a PIL image, uint8 numpy array or uint8 "
                f"tensor, got {type(image).__name__}"
            )
        out = self.image_transform({"image": image}, inference=inference)
        return out, int(out["image_grid_thw"].prod()) // self.merge_size**2

    def _video(self, item: Mapping, where: str) -> Tuple[dict, int]:
        frames = item.get("content")
        if frames is None:
            raise ValueError(f"{where}: a video part needs its frames in 'content' (a uint8 [T, H, W, 3] "
                             "tensor or array, or a list of frames)")
        video_sample = {"video": frames}
        for key in ("video_fps", "total_num_frames"):  # the clip's own frame rate and length
            if item.get(key) is not None:
                video_sample[key] = item[key]
        try:
            out = self.video_transform(video_sample)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from err
        if self.dtype is not None:
            out["pixel_values_videos"] = out["pixel_values_videos"].to(self.dtype)
        return out, int(out["video_grid_thw"].prod()) // self.merge_size**2
