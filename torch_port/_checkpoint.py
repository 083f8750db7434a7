"""Load HF Qwen2.5-VL vision weights into the port.

* :func:`load_hf_vision` - an HF vision config (dict) + an HF state dict -> encoder.
* :func:`load_hf_checkpoint` - a released-layout checkpoint folder -> (encoder, image transform), the
  transform on the backend HF's AutoImageProcessor would pick (or the one asked for).

A vision config must give the five sizes of the tower (``depth``, ``hidden_size``, ``num_heads``,
``intermediate_size``, ``out_hidden_size``): HF would fill missing ones with its class defaults
(``hidden_size`` 3584, not the released 1280), this loader refuses them, naming them (see
``_config.py``, the reference's rules). Other fields take HF's class defaults.
Only safetensors files are read; pickle checkpoints (``.bin``/``.pt``) are refused.
"""

import importlib.util
import json
from pathlib import Path

import torch

from ._component_builders import qwen2_5_vision_encoder
from ._config import encoder_kwargs
from ._convert_weights import _TO_HF, _hf_to_tune, _map_key, is_hf_vision_key
from ._encoder import Qwen2_5_VisionEncoder

__all__ = ["default_backend", "load_hf_checkpoint", "load_hf_vision"]

# HF Qwen2VLImageProcessor class defaults, for fields a preprocessor_config.json leaves out
_HF_PROCESSOR_DEFAULTS = {
    "min_pixels": 56 * 56,
    "max_pixels": 28 * 28 * 1280,
    "patch_size": 14,
    "merge_size": 2,
    "temporal_patch_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
}
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _hf_name(tune_key: str) -> str:
    """The HF name (no prefix) of a port parameter, for error messages."""
    return _map_key(tune_key, _TO_HF) or tune_key


def _build(config, state_dict: dict, *, dtype: torch.dtype, device, copy: bool) -> Qwen2_5_VisionEncoder:
    kwargs = encoder_kwargs(config)
    with torch.device("meta"):  # no memory, no init: every parameter comes from the state dict
        encoder = qwen2_5_vision_encoder(**kwargs)

    converted, origin, problems = _hf_to_tune(state_dict)
    load_checked(encoder, converted, origin, problems, hf_name=_hf_name, what="HF vision state dict",
                 dtype=dtype, device=device, copy=copy)
    return encoder.eval()


def load_checked(module, converted: dict, origin: dict, problems: list, *, hf_name, what: str,
                 dtype: torch.dtype, device, copy: bool) -> None:
    """Load ``converted`` (port keys -> tensors) into ``module`` (built on meta) after checking it.

    Every missing, misshaped and unexpected key (plus the caller's ``problems``) goes into one
    ValueError, non-finite tensors into another (:func:`check_finite`), each named by the key it
    came from (``origin``: port key -> source key; ``hf_name``: port key -> HF name, for missing
    ones). Parameters are cast to ``dtype`` on ``device`` and assigned.
    """
    expected = module.state_dict()
    for key, value in expected.items():
        if key not in converted:
            problems.append(f"missing key {key!r} (HF {hf_name(key)!r})")
        elif tuple(converted[key].shape) != tuple(value.shape):
            problems.append(f"shape mismatch for {origin[key]!r}: got {tuple(converted[key].shape)}, "
                            f"expected {tuple(value.shape)} (as {key!r})")
    problems += [f"unexpected key {origin[k]!r} (as {k!r})" for k in converted if k not in expected]
    if problems:
        raise ValueError(f"{what} does not fit the config ({len(problems)} problems):\n  " + "\n  ".join(problems))
    check_finite({origin[k]: v for k, v in converted.items()})
    params = {k: v.detach().to(device=device, dtype=dtype, copy=copy) for k, v in converted.items()}
    module.load_state_dict(params, strict=True, assign=True)


def load_hf_vision(
    config,
    state_dict: dict[str, torch.Tensor],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Qwen2_5_VisionEncoder:
    """Build the encoder from an HF vision config and load HF vision weights into it.

    Args:
        config (dict): HF vision config, e.g. ``Qwen2_5_VLVisionConfig(...).to_dict()`` or a
            checkpoint's ``vision_config`` (an HF config object works too). Unused fields are
            ignored; the five sizes are required (a missing one is an error, see the module
            docstring), other missing fields take HF's class defaults; ``fullatt_block_indexes``
            are coerced to int.
        state_dict (dict[str, torch.Tensor]): HF keys with or without ``visual.`` /
            ``model.visual.``; non-vision keys are ignored.
        dtype (torch.dtype): parameter dtype of the returned encoder - float32 by default,
            whatever the state dict's dtype; the parameters are copies (the caller's tensors are
            never shared).
        device: where the parameters go (CPU by default).

    Returns:
        Qwen2_5_VisionEncoder: in eval mode.

    Raises:
        ValueError: one error listing every missing, unexpected and misshaped key.
    """
    return _build(config, state_dict, dtype=dtype, device=device, copy=True)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path.name} not found in checkpoint folder {path.parent}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def weight_files(folder: Path, *, keep=None, what: str = "weights", any_name: bool = False) -> list[Path]:
    """The safetensors files of a checkpoint folder: the shards its ``model.safetensors.index.json``
    names (only those holding a key ``keep`` accepts), else ``model.safetensors``, else (with
    ``any_name``) every ``*.safetensors``. A folder of pickle files only is refused."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
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


def _read_vision_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """The vision tensors of a checkpoint folder, read from just the shards that hold them."""
    files = weight_files(folder, keep=is_hf_vision_key, any_name=True,
                         what="vision weights (keys under 'visual.' or 'model.visual.')")
    return read_tensors(files, keep=is_hf_vision_key)


def check_finite(state_dict: dict[str, torch.Tensor]) -> None:
    """Refuse weights holding NaN or Inf, naming every such tensor (they would poison every output)."""
    bad = []
    for key, value in state_dict.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            nan, inf = int(torch.isnan(value).sum()), int(torch.isinf(value).sum())
            bad.append(f"{key!r} ({nan} NaN, {inf} Inf)")
    if bad:
        raise ValueError(f"non-finite values in {len(bad)} weight tensor(s): " + ", ".join(bad))


# preprocessor_config.json fields passed to the transform as they are (HF's meaning, HF's defaults)
_HF_FLAGS = {"do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
             "do_convert_rgb": True}
# fields that name things and change no number
_METADATA = {"image_processor_type", "processor_class", "feature_extractor_type"}
_PIL_BICUBIC = 3  # PIL.Image.Resampling.BICUBIC, the only resample the transform has
# names AutoImageProcessor maps to the Qwen2-VL processor pair (the legacy "...Fast" included)
_QWEN2_VL_TYPES = (None, "Qwen2VLImageProcessor", "Qwen2VLImageProcessorPil", "Qwen2VLImageProcessorFast")


def default_backend() -> str:
    """What ``AutoImageProcessor.from_pretrained(folder)`` picks without a ``backend``: "torchvision"
    when torchvision is installed, else "pil" (HF 5.24's ``_resolve_backend``), whatever the folder's
    ``image_processor_type`` says: ``"Qwen2VLImageProcessorPil"`` and the legacy
    ``"Qwen2VLImageProcessorFast"`` name the same backend pair and get the default backend too.
    Looked up, not imported (as HF's ``is_torchvision_available``)."""
    try:
        found = importlib.util.find_spec("torchvision") is not None
    except (ImportError, ValueError):  # a blocked or broken install counts as absent
        found = False
    return "torchvision" if found else "pil"


def _transform_kwargs(processor: dict) -> dict:
    """``Qwen2_5_VLImageTransform`` kwargs from a ``preprocessor_config.json``.

    Every field HF's ``Qwen2VLImageProcessor`` reads is honoured (HF precedence: top-level
    ``min_pixels``/``max_pixels`` override ``size``), or refused with its value: ``resample`` other
    than 3 (BICUBIC), unknown fields, an ``image_processor_type`` that is not one of Qwen2-VL's.
    The type does not pick the backend (HF's AutoImageProcessor does not let it: see
    :func:`default_backend`).
    """
    known = set(_HF_PROCESSOR_DEFAULTS) | set(_HF_FLAGS) | _METADATA | {"size", "resample"}
    unknown = sorted(set(processor) - known)
    if unknown:
        raise ValueError(f"preprocessor_config.json has fields the port does not implement: "
                         f"{ {k: processor[k] for k in unknown} }; known fields: {sorted(known)}")
    kind = processor.get("image_processor_type")
    if kind not in _QWEN2_VL_TYPES:
        raise ValueError(f"preprocessor_config.json: image_processor_type {kind!r} is not one of Qwen2-VL's "
                         f"{[t for t in _QWEN2_VL_TYPES if t]} (HF would build another processor)")
    resample = processor.get("resample", _PIL_BICUBIC)
    if resample != _PIL_BICUBIC:
        raise ValueError(f"preprocessor_config.json: resample={resample!r} is not supported; only "
                         f"{_PIL_BICUBIC} (BICUBIC, what Qwen2.5-VL uses) is")
    size = processor.get("size") or {}
    if not isinstance(size, dict) or set(size) - {"shortest_edge", "longest_edge", "min_pixels", "max_pixels"}:
        raise ValueError(f"preprocessor_config.json: size must be a dict with 'shortest_edge' and 'longest_edge', "
                         f"got {size!r}")
    kwargs = {k: processor.get(k, v) for k, v in _HF_PROCESSOR_DEFAULTS.items()}
    for name, size_name in (("min_pixels", "shortest_edge"), ("max_pixels", "longest_edge")):
        value = processor.get(name)
        if value is None:
            value = size.get(size_name, size.get(name, _HF_PROCESSOR_DEFAULTS[name]))
        kwargs[name] = int(value)
    for name in ("patch_size", "merge_size", "temporal_patch_size"):
        kwargs[name] = int(kwargs[name])
    for name in ("image_mean", "image_std"):
        value = kwargs[name]
        kwargs[name] = float(value) if isinstance(value, (int, float)) else [float(v) for v in value]
    for name, default in _HF_FLAGS.items():
        value = processor.get(name, default)
        if name != "rescale_factor" and not isinstance(value, bool):
            raise ValueError(f"preprocessor_config.json: {name} must be true or false, got {value!r}")
        kwargs[name] = value
    return kwargs


def load_hf_checkpoint(
    path: str | Path,
    dtype: torch.dtype = torch.bfloat16,
    device: torch.device | str = "cpu",
    backend: str | None = None,
):
    """Read an HF Qwen2.5-VL checkpoint folder: its vision tower and its image transform.

    Reads ``config.json`` (its ``vision_config``; a bare vision config works too),
    ``preprocessor_config.json`` and ``model.safetensors`` or ``model.safetensors.index.json`` +
    shards (only the shards and tensors of the vision tower are read).

    Args:
        path: the checkpoint folder.
        dtype (torch.dtype): parameter dtype (the released weights are bfloat16).
        device: parameter device.
        backend (str | None): the transform's backend. None: what HF's
            ``AutoImageProcessor.from_pretrained(path)`` picks, "torchvision" when torchvision is
            installed, else "pil" (:func:`default_backend`; the folder's ``image_processor_type``
            does not change it, as in HF). "pil" / "torchvision": that backend.

    Returns:
        tuple: ``(Qwen2_5_VisionEncoder, Qwen2_5_VLImageTransform)``.

    Raises:
        FileNotFoundError: missing folder, config or weight files.
        ValueError: pickle-only checkpoints, inconsistent configs, weights that do not fit.
    """
    from ._transform import BACKENDS, Qwen2_5_VLImageTransform

    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"load_hf_checkpoint: backend must be None or one of {BACKENDS}, got {backend!r}")
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist or is not a directory")
    config = _read_json(folder / "config.json")
    vision_config = config.get("vision_config")
    if vision_config is None:
        if config.get("model_type") != "qwen2_5_vl_vision":
            raise ValueError(
                f"{folder / 'config.json'} has no 'vision_config' (model_type {config.get('model_type')!r})"
            )
        vision_config = config
    transform_kwargs = _transform_kwargs(_read_json(folder / "preprocessor_config.json"))
    tower = encoder_kwargs(vision_config)
    mismatched = [
        f"{t}={transform_kwargs[t]} vs vision_config {e}={tower[e]}"
        for t, e in (
            ("patch_size", "patch_size"),
            ("merge_size", "spatial_merge_size"),
            ("temporal_patch_size", "temporal_patch_size"),
        )
        if transform_kwargs[t] != tower[e]
    ]
    if mismatched:
        raise ValueError(f"preprocessor_config.json disagrees with config.json: {mismatched}")
    if transform_kwargs["min_pixels"] > transform_kwargs["max_pixels"]:
        raise ValueError(f"min_pixels {transform_kwargs['min_pixels']} > max_pixels {transform_kwargs['max_pixels']}")
    encoder = _build(vision_config, _read_vision_tensors(folder), dtype=dtype, device=device, copy=False)
    return encoder, Qwen2_5_VLImageTransform(backend=backend or default_backend(), **transform_kwargs)
