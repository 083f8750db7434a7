"""One dataset row -> torchtune Messages with its images and videos loaded, whichever layout the row has.

Three layouts, told apart row by row (a file may mix them when ``datasets`` can give its columns
one type each):

(a) ShareGPT / LLaMA-Factory: ``conversations`` (``{"from": "human" | "gpt" | "system", "value"}``)
    or ``messages`` whose contents are strings (``{"role", "content"}``), with ``images`` / ``videos``
    lists; each ``<image>`` / ``<video>`` tag in the text stands for the next file of its list
    (the counts must match, as LLaMA-Factory requires); an optional ``system`` column;
(b) HF chat messages: ``messages`` whose contents are lists of parts ``{"type": "text", "text"}``,
    ``{"type": "image", "image" | "url" | "path": file}``, ``{"type": "video", "video" | "url" |
    "path": file, or a list of frame files}``, the keys HF's ``apply_chat_template`` reads;
(c) torchtune's single-image ShareGPT: ``conversations`` with at most one ``image`` (a file, or
    None / "" for a text-only row), put before the first user text (``image_tag`` None) or at
    ``image_tag`` in it, as torchtune's ``ShareGPTToMessages``.

Files are relative to the dataset's media folder unless absolute; images are read as HF reads them
(EXIF orientation applied), videos decoded as HF's ``load_video`` (see ``_media``). User and system
turns are masked from the loss, assistant turns trained on (torchtune's ``train_on_input=False``).
Every problem raises ``ValueError`` (``MediaError`` for files) naming what is wrong; the dataset
adds the row.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ._media import load_frames, load_image, load_video

__all__ = ["Media", "row_layout", "row_to_messages"]

IMAGE_TAG, VIDEO_TAG = "<image>", "<video>"  # LLaMA-Factory's placeholders
_TAGS = re.compile(f"({re.escape(IMAGE_TAG)}|{re.escape(VIDEO_TAG)})")
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "system": "system"}
_HF_ROLES = ("system", "user", "assistant")
_HF_SOURCE_KEYS = {"image": ("image", "url", "path"), "video": ("video", "url", "path")}


class Media:
    """A media file of a row, in the order its vision run appears: ``kind`` ("image" / "video")
    and ``name`` (the file, or the first and last frame files)."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name = kind, name

    def __repr__(self) -> str:
        return f"{self.kind} {self.name}"


def _present(value) -> bool:
    """A column a row really has: ``datasets`` fills other rows' columns with None."""
    return value is not None and not (isinstance(value, (str, list, tuple)) and len(value) == 0)


def row_layout(row: Mapping[str, Any], column_map: Mapping[str, str]) -> str:
    """"sharegpt" (a), "hf" (b) or "single" (c) for a row; ValueError when it has none of their columns."""
    messages = row.get(column_map.get("messages", "messages"))
    if _present(messages):
        if not isinstance(messages, (list, tuple)):
            raise ValueError(f"'messages' must be a list of messages, got {type(messages).__name__}")
        if any(isinstance(m, Mapping) and isinstance(m.get("content"), (list, tuple)) for m in messages):
            return "hf"
        return "sharegpt"
    if _present(row.get(column_map.get("conversations", "conversations"))):
        lists = [column_map.get(name, name) for name in ("images", "videos")]
        return "sharegpt" if any(_present(row.get(name)) for name in lists) else "single"
    raise ValueError(f"the row has no 'messages' or 'conversations' (columns: {sorted(row)}); see "
                     "torch_port/_chat_rows.py for the layouts read")


class _Loader:
    """Loads a row's files relative to ``media_dir`` and records them in order."""

    def __init__(self, media_dir: Path, video_transform) -> None:
        self.media_dir, self.video_transform = media_dir, video_transform
        self.media: List[Media] = []

    def _path(self, value, what: str) -> Path:
        if not isinstance(value, str) or not value:
            raise ValueError(f"{what} must be a file path (a non-empty string), got {value!r}")
        if value.startswith(("http://", "https://")):
            raise ValueError(f"{what} {value!r} is a URL; the dataset reads local files only")
        return self.media_dir / value

    def image(self, value) -> Dict[str, Any]:
        path = self._path(value, "an image")
        self.media.append(Media("image", str(path)))
        return {"type": "image", "content": load_image(path)}

    def video(self, value) -> Dict[str, Any]:
        if isinstance(value, (list, tuple)):  # frame files
            paths = [self._path(v, "a video frame") for v in value]
            self.media.append(Media("video", f"{paths[0]} ... {paths[-1]}" if paths else "(no frames)"))
            if self.video_transform.do_sample_frames:
                raise ValueError(f"video of frame files {paths[0]} ...: the video processor samples frames "
                                 "(do_sample_frames), which HF refuses for a list of images")
            return {"type": "video", "content": load_frames(paths)}
        path = self._path(value, "a video")
        self.media.append(Media("video", str(path)))
        frames, fps, total = load_video(path, self.video_transform)
        return {"type": "video", "content": frames, "video_fps": fps, "total_num_frames": total}


def _tagged_parts(text: str, files: Dict[str, list], loader: _Loader) -> List[Dict[str, Any]]:
    """Text with ``<image>`` / ``<video>`` tags -> content parts, each tag taking the next file."""
    parts = []
    for piece in _TAGS.split(text):
        if piece in (IMAGE_TAG, VIDEO_TAG):
            kind = "image" if piece == IMAGE_TAG else "video"
            parts.append(getattr(loader, kind)(files[kind].pop(0)))
        elif piece:
            parts.append({"type": "text", "content": piece})
    return parts


def _sharegpt(row, column_map, loader: _Loader, new_system_prompt) -> List[Tuple[str, Any]]:
    """(role, content) of a ShareGPT / LLaMA-Factory row, the tags replaced by the loaded files."""
    from_column = column_map.get("messages", "messages")
    if _present(row.get(from_column)):
        turns, role_key, text_key = row[from_column], "role", "content"
    else:
        turns, role_key, text_key = row[column_map.get("conversations", "conversations")], "from", "value"
    files = {kind: list(row.get(column_map.get(f"{kind}s", f"{kind}s")) or []) for kind in ("image", "video")}
    tags = {kind: sum(str(t.get(text_key) or "").count(f"<{kind}>") for t in turns if isinstance(t, Mapping))
            for kind in ("image", "video")}
    for kind in ("image", "video"):
        if tags[kind] != len(files[kind]):
            raise ValueError(f"{tags[kind]} <{kind}> tags in the text but {len(files[kind])} {kind}s listed "
                             f"{files[kind]}: each tag stands for one file, in order")
    out = []
    system = row.get("system")
    if new_system_prompt is None and _present(system):
        out.append(("system", [{"type": "text", "content": str(system)}]))
    for k, turn in enumerate(turns):
        if not isinstance(turn, Mapping) or role_key not in turn:
            raise ValueError(f"turn {k} must be a mapping with {role_key!r} and {text_key!r}, got {turn!r}")
        role = _SHAREGPT_ROLES.get(turn[role_key])
        if role is None:
            raise ValueError(f"turn {k}: role {turn[role_key]!r} is not one of {sorted(_SHAREGPT_ROLES)}")
        text = turn.get(text_key)
        if not isinstance(text, str):
            raise ValueError(f"turn {k}: {text_key!r} must be a string, got {type(text).__name__}")
        out.append((role, _tagged_parts(text, files, loader)))
    return out


def _single(row, column_map, loader: _Loader, image_tag: Optional[str]) -> List[Tuple[str, Any]]:
    """(role, content) of torchtune's single-image ShareGPT row (``ShareGPTToMessages``'s rules)."""
    image = row.get(column_map.get("image", "image"))
    out, placed = [], not _present(image)
    for k, turn in enumerate(row[column_map.get("conversations", "conversations")]):
        if not isinstance(turn, Mapping) or "from" not in turn:
            raise ValueError(f"turn {k} must be a mapping with 'from' and 'value', got {turn!r}")
        role = _SHAREGPT_ROLES.get(turn["from"])
        if role is None:
            raise ValueError(f"turn {k}: role {turn['from']!r} is not one of {sorted(_SHAREGPT_ROLES)}")
        text = turn.get("value")
        if not isinstance(text, str):
            raise ValueError(f"turn {k}: 'value' must be a string, got {type(text).__name__}")
        parts = [{"type": "text", "content": text}] if text else []
        if role == "user" and not placed:
            placed = True
            if image_tag is None:
                parts = [loader.image(image)] + parts
            else:
                if text.count(image_tag) != 1:
                    raise ValueError(f"turn {k}: {text.count(image_tag)} image tags {image_tag!r} in the first user "
                                     f"text, but the row has one image {image!r}")
                before, after = text.split(image_tag)
                parts = ([{"type": "text", "content": before}] if before else []) + [loader.image(image)] + (
                    [{"type": "text", "content": after}] if after else [])
        out.append((role, parts))
    if not placed:
        raise ValueError(f"the row has an image {image!r} but no user turn to put it in")
    return out


def _hf(row, column_map, loader: _Loader) -> List[Tuple[str, Any]]:
    """(role, content) of an HF chat-messages row."""
    for name in ("images", "videos", "image"):
        if _present(row.get(column_map.get(name, name))):
            raise ValueError(f"the row has content parts in 'messages' and a {name!r} column too; HF's layout names "
                             "each file in its part")
    out = []
    for k, message in enumerate(row[column_map.get("messages", "messages")]):
        if not isinstance(message, Mapping) or message.get("role") not in _HF_ROLES:
            role = message.get("role") if isinstance(message, Mapping) else message
            raise ValueError(f"messages[{k}]: role {role!r} is not one of {list(_HF_ROLES)}")
        content = message.get("content")
        if isinstance(content, str):
            out.append((message["role"], [{"type": "text", "content": content}] if content else []))
            continue
        parts = []
        for j, part in enumerate(content or []):
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise ValueError(f"messages[{k}] content[{j}]: a text part's 'text' must be a string, got {text!r}")
                if text:
                    parts.append({"type": "text", "content": text})
            elif kind in _HF_SOURCE_KEYS:
                sources = [part[key] for key in _HF_SOURCE_KEYS[kind] if part.get(key) is not None]
                if len(sources) != 1:
                    raise ValueError(f"messages[{k}] content[{j}]: an {kind} part needs one of "
                                     f"{list(_HF_SOURCE_KEYS[kind])} naming its file, got {dict(part)}")
                parts.append(getattr(loader, kind)(sources[0]))
            else:
                raise ValueError(f"messages[{k}] content[{j}]: part type {kind!r} is not 'text', 'image' or 'video'")
        out.append((message["role"], parts))
    return out


def row_to_messages(row: Mapping[str, Any], *, media_dir: Path, video_transform, column_map=None,
                    new_system_prompt: Optional[str] = None, image_tag: Optional[str] = None):
    """A dataset row -> (``list[Message]``, the row's ``Media`` in order).

    Args:
        row (Mapping): the row, in layout (a), (b) or (c) (see the module note).
        media_dir (Path): folder the files are relative to.
        video_transform (Qwen2_5_VLVideoTransform): the model transform's, whose sampling decides
            which frames of a video file are decoded.
        column_map (Mapping | None): this dataset's column name -> the row's (``messages``,
            ``conversations``, ``image``, ``images``, ``videos``).
        new_system_prompt (str | None): replaces the row's system turns (masked).
        image_tag (str | None): layout (c) only, as torchtune's ``image_tag``.

    Raises:
        ValueError: a layout it cannot read, a tag count that does not match the files, an unknown
            role or part; ``MediaError`` (a ValueError) for a missing or undecodable file.
    """
    from torchtune.data import Message

    column_map = dict(column_map or {})
    loader = _Loader(Path(media_dir), video_transform)
    layout = row_layout(row, column_map)
    if layout == "hf":
        turns = _hf(row, column_map, loader)
    elif layout == "sharegpt":
        turns = _sharegpt(row, column_map, loader, new_system_prompt)
    else:
        turns = _single(row, column_map, loader, image_tag)
    messages = []
    if new_system_prompt is not None:
        messages.append(Message(role="system", content=new_system_prompt, masked=True))
        turns = [(role, content) for role, content in turns if role != "system"]
    messages += [Message(role=role, content=content or [{"type": "text", "content": ""}], masked=role != "assistant")
                 for role, content in turns]
    if not any(m.role == "assistant" for m in messages):
        raise ValueError("the row has no assistant turn: nothing to train on")
    return messages, loader.media

