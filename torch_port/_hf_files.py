"""The files of an HF Qwen2.5-VL folder: JSON configs, processor configs in HF's lookup order, weight shards.

The folder is what the hub holds: ``config.json``, the processor configs, the tokenizer files
(``vocab.json``, ``merges.txt``, ``tokenizer_config.json``, ``tokenizer.json`` when present) and
the weights as ``model.safetensors`` or ``model.safetensors.index.json`` + shards. Weights are read
from safetensors only: pickle files are refused, never unpickled. Every error names the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["TOKENIZER_FILES", "checkpoint_folder", "processor_config", "read_json", "read_tensors", "weight_files"]

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; a missing file, invalid JSON or a non-object is named."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path.name} not found in checkpoint folder {path.parent}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def checkpoint_folder(path) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist or is not a directory")
    return folder


def processor_config(folder: Path, kind: str) -> tuple[dict, str]:
    """(the ``kind`` ("image" / "video") processor's dict, where it came from), read as HF 5.24's
    ``AutoImageProcessor`` / ``AutoVideoProcessor`` read them: ``processor_config.json``'s nested
    ``"<kind>_processor"`` dict, else ``preprocessor_config.json`` (video: first
    ``video_preprocessor_config.json``; released folders have no video file, so the image file's
    pixel bounds bound the video frames too)."""
    nested = folder / "processor_config.json"
    if nested.is_file():
        data = read_json(nested)
        if isinstance(data.get(f"{kind}_processor"), dict):
            return data[f"{kind}_processor"], f"{nested.name}['{kind}_processor']"
    names = ("preprocessor_config.json",) if kind == "image" else (
        "video_preprocessor_config.json", "preprocessor_config.json")
    for name in names:
        if (folder / name).is_file():
            return read_json(folder / name), name
    if kind == "image":
        raise FileNotFoundError(f"preprocessor_config.json not found in checkpoint folder {folder}")
    raise FileNotFoundError(f"no video_preprocessor_config.json or preprocessor_config.json in {folder} "
                            "(HF's AutoVideoProcessor needs one of them)")


def weight_files(folder: Path, *, keep=None, what: str = "weights", any_name: bool = False) -> list[Path]:
    """The safetensors files of a checkpoint folder: the shards its ``model.safetensors.index.json``
    names (only those holding a key ``keep`` accepts), else ``model.safetensors``, else (with
    ``any_name``) every ``*.safetensors``. A folder of pickle files only is refused."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"{index} has no 'weight_map' (tensor name -> shard file)")
        names = sorted({name for key, name in weight_map.items() if keep is None or keep(key)})
        if not names:
            raise ValueError(f"{index} lists no {what}")
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(f"shards listed in {index.name} are missing from {folder}: {missing}")
        return [folder / n for n in names]
    if (folder / "model.safetensors").is_file():
        return [folder / "model.safetensors"]
    others = sorted(folder.glob("*.safetensors")) if any_name else []
    if others:
        return others
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(
            f"{folder} holds only pickle checkpoint files {pickles}; they are refused (unpickling can run "
            "arbitrary code). Convert the checkpoint to safetensors (model.safetensors or "
            "model.safetensors.index.json + shards)."
        )
    raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {folder}")


def read_tensors(files: list[Path], *, keep=None) -> dict[str, torch.Tensor]:
    """Every tensor (whose key ``keep`` accepts) of the safetensors ``files``; a key in two files,
    or a file safetensors cannot read, is a ValueError naming the file."""
    from safetensors import safe_open

    tensors: dict[str, torch.Tensor] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                for key in f.keys():
                    if keep is not None and not keep(key):
                        continue
                    if key in tensors:
                        raise ValueError(f"tensor {key!r} appears in two shards (the second: {path.name})")
                    tensors[key] = f.get_tensor(key)
        except ValueError:
            raise
        except Exception as e:  # safetensors raises its own SafetensorError (header, offsets, dtype)
            raise ValueError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})") from None
    return tensors
