"""Every transformers name the HF cross-check uses whose home or signature depends on the version.

The cross-check runs from transformers 4.57 to the newest 5.x (Qwen2.5-VL exists from 4.49; 4.49.0
runs the image and tower cases but not the positions ones: golden/README.md). Outside that range, or when a name this module expects is
missing, it raises :class:`UnsupportedVersion` (the generator turns it into exit code 2, "cannot check"), never a bare ImportError or TypeError.
"""

from __future__ import annotations

import importlib.metadata

from packaging.specifiers import SpecifierSet
from packaging.version import Version

SUPPORTED = ">=4.57,<6"  # run end to end: 4.57.6, 5.0.0, 5.24.0 (4.49.0: images and towers only; see golden/README.md)


class UnsupportedVersion(Exception):
    """The installed transformers cannot run the HF cross-check: outside ``SUPPORTED`` or an API break."""

    def __init__(self, installed: str, reason: str = ""):
        self.installed, self.supported, self.reason = installed, SUPPORTED, reason
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"transformers {installed} is installed, but the HF cross-check supports transformers {SUPPORTED}"
            f"{why}. Install a supported version (e.g. `uv pip install \"transformers{SUPPORTED}\"`) "
            "and run the check again; nothing was compared or written.")


def installed_version() -> str:
    """The installed transformers version string (raises UnsupportedVersion when it is not installed)."""
    try:
        return importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        raise UnsupportedVersion("(none)", "transformers is not installed") from None


def is_supported(version: str) -> bool:
    """Whether ``version`` (a version string such as "4.57.1" or "5.0.0rc2") is in ``SUPPORTED``."""
    return SpecifierSet(SUPPORTED).contains(Version(version), prereleases=True)


def check_version(version: str | None = None) -> Version:
    """The parsed ``version`` (default: the installed one); UnsupportedVersion when out of range."""
    version = installed_version() if version is None else version
    try:
        parsed = Version(version)
    except Exception:
        raise UnsupportedVersion(version, "not a version string") from None
    if not is_supported(version):
        raise UnsupportedVersion(version)
    return parsed


def _missing(what: str, error: Exception | None = None) -> UnsupportedVersion:
    detail = f": {error}" if error else ""
    return UnsupportedVersion(installed_version(), f"{what} is missing{detail}")


# ---- image processing --------------------------------------------------------------------------

def pil_image_processor_class():
    """HF's Qwen2-VL image processor on the PIL/NumPy path. 5.x (once the torchvision processor took the
    plain name): ``Qwen2VLImageProcessorPil``; before: ``Qwen2VLImageProcessor`` (``...Fast`` was torchvision)."""
    check_version()
    import transformers

    if hasattr(transformers, "Qwen2VLImageProcessorPil"):
        return transformers.Qwen2VLImageProcessorPil
    try:
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    except ImportError as error:
        raise _missing("Qwen2VLImageProcessor (PIL path)", error) from None
    return Qwen2VLImageProcessor


def smart_resize():
    """HF's ``smart_resize`` of the Qwen2-VL image processor (the PIL path's module)."""
    module = importlib.import_module(pil_image_processor_class().__module__)
    return module.smart_resize


def convert_to_rgb_numpy(image):
    """``transformers.image_transforms.convert_to_rgb`` of a PIL image as a uint8 [H, W, 3] array.
    Newer 5.x take ``return_numpy``; older releases return the PIL image, converted here."""
    import inspect

    import numpy as np
    from transformers.image_transforms import convert_to_rgb

    if "return_numpy" in inspect.signature(convert_to_rgb).parameters:
        return convert_to_rgb(image, return_numpy=True)
    return np.asarray(convert_to_rgb(image))


# ---- vision tower --------------------------------------------------------------------------------

def vision_config_class():
    """``Qwen2_5_VLVisionConfig`` (top-level export in every supported release)."""
    check_version()
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig

    return Qwen2_5_VLVisionConfig


def vision_tower_class():
    """``Qwen2_5_VisionTransformerPretrainedModel``, HF's vision tower."""
    check_version()
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    return Qwen2_5_VisionTransformerPretrainedModel


def no_init_weights():
    """The context manager that skips random init: ``transformers.initialization`` from 5.0,
    ``transformers.modeling_utils`` in 4.x."""
    try:
        from transformers.initialization import no_init_weights as found
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights as found
        except ImportError as error:
            raise _missing("no_init_weights", error) from None
    return found()


def _vision_utils():
    try:
        return importlib.import_module("transformers.vision_utils")
    except ImportError:
        return None


def has_vision_utils() -> bool:
    """Whether the tower's index helpers are free functions (``transformers.vision_utils``, late 5.x)."""
    return _vision_utils() is not None and hasattr(_vision_utils(), "get_vision_window_index")


def vision_window_index(model, grid_thw):
    """(window_index [n_units] int64, cu_window_seqlens int64) exactly as the tower's forward uses them.
    Late 5.x: ``transformers.vision_utils.get_vision_window_index``; before: the tower's
    ``get_window_index`` method, whose list the forward turns into a tensor and dedupes."""
    import torch

    cfg = model.config
    if has_vision_utils():
        window_index, cu = _vision_utils().get_vision_window_index(
            grid_thw, spatial_merge_size=cfg.spatial_merge_size, window_size=cfg.window_size,
            patch_size=cfg.patch_size)
        return window_index.long(), cu.long()
    if not hasattr(model, "get_window_index"):
        raise _missing("get_vision_window_index / get_window_index")
    window_index, cu = model.get_window_index(grid_thw)
    return window_index.long(), torch.unique_consecutive(torch.as_tensor(cu, dtype=torch.long))


def vision_cu_seqlens(grid_thw):
    """Full-attention cu_seqlens [n_images * t + 1], int64. Late 5.x: ``get_vision_cu_seqlens``; older
    releases compute it inline in the forward (cumulative h*w per frame, from 0), as done here."""
    import torch

    if has_vision_utils():
        return _vision_utils().get_vision_cu_seqlens(grid_thw).long()
    grid = torch.as_tensor(grid_thw, dtype=torch.long)
    frames = torch.repeat_interleave(grid[:, 1] * grid[:, 2], grid[:, 0])
    return torch.nn.functional.pad(frames.cumsum(0), (1, 0)).long()


def tower_output(out):
    """The merged tokens of the tower's forward: 5.x returns a ``BaseModelOutputWithPooling``
    (``pooler_output``), 4.x the tensor itself."""
    return out.pooler_output if hasattr(out, "pooler_output") else out


# ---- positions -----------------------------------------------------------------------------------

def rope_index_takes_token_types() -> bool:
    """Whether ``Qwen2_5_VLModel.get_rope_index`` takes ``mm_token_type_ids`` (5.x, required) or finds
    the vision tokens from ``input_ids`` itself (4.x and early 5.x)."""
    import inspect

    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel

    return "mm_token_type_ids" in inspect.signature(Qwen2_5_VLModel.get_rope_index).parameters


def get_rope_index(model, input_ids, mm_token_type_ids, **kwargs):
    """``model.get_rope_index`` with the inputs the installed release takes: ``mm_token_type_ids`` is
    passed where it is a parameter, otherwise dropped (those releases derive it from ``input_ids``)."""
    if rope_index_takes_token_types():
        return model.get_rope_index(input_ids, mm_token_type_ids, **kwargs)
    return model.get_rope_index(input_ids, **kwargs)


def text_rope_config(theta: float, mrope_section) -> dict:
    """The text config's rotary settings: 5.x ``rope_parameters``; 4.x ``rope_theta`` + ``rope_scaling``."""
    section = [int(s) for s in mrope_section]
    if "rope_parameters" in _init_parameters("Qwen2_5_VLTextConfig"):
        return {"rope_parameters": {"rope_type": "default", "rope_theta": float(theta), "mrope_section": section}}
    return {"rope_theta": float(theta), "rope_scaling": {"type": "mrope", "mrope_section": section}}


def _init_parameters(config_name):
    import inspect

    from transformers.models.qwen2_5_vl import configuration_qwen2_5_vl

    return inspect.signature(getattr(configuration_qwen2_5_vl, config_name).__init__).parameters


def mrope_cos_sin(model, position_ids):
    """The text rotary's (cos, sin) [b, s, head_dim] float32 for ``position_ids`` [3, b, s]. Late 5.x
    apply the mrope sections inside the rotary; before, the rotary returns [3, b, s, head_dim] and
    ``apply_multimodal_rotary_pos_emb`` picks the sections: it is run on unit vectors to read them out."""
    import torch
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as hf

    rotary = model.language_model.rotary_emb
    position_ids = torch.as_tensor(position_ids, dtype=torch.long)
    with torch.no_grad():
        cos, sin = rotary(torch.zeros(1, dtype=torch.float32), position_ids)
        if cos.dim() == 3:
            return cos, sin
        b, s, d = cos.shape[1:]
        half = d // 2
        e = torch.zeros(b, 1, s, d)  # rotate_half(e) is 1 on the second half: q' = [cos1, sin2]
        e[..., :half] = 1
        f = 1 - e  # rotate_half(f) is -1 on the first half: k' = [-sin1, cos2]
        section = mrope_section_of(model)
        q, k = hf.apply_multimodal_rotary_pos_emb(e, f, cos, sin, section)
        q, k = q[:, 0], k[:, 0]
        return (torch.cat([q[..., :half], k[..., half:]], -1), torch.cat([-k[..., :half], q[..., half:]], -1))


def processor_class():
    """``Qwen2_5_VLProcessor``, whose placeholder expansion the positions goldens check."""
    check_version()
    from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor

    return Qwen2_5_VLProcessor


def expand_by_call(processor, text, image_grid_thw, video_grid_thw, tokenize):
    """Placeholder expansion where the processor has no ``get_text_with_replacements`` (4.x, early 5.x):
    its own ``__call__`` runs with stand-ins for the image/video processors (returning the given grids)
    and the tokenizer (``tokenize(str) -> ids``). Returns the expanded id rows."""
    from types import SimpleNamespace

    merge_size = processor.image_processor.merge_size

    class _Tokenizer:
        init_kwargs: dict = {}

        def __call__(self, texts, **kwargs):
            return {"input_ids": [tokenize(t) for t in texts]}

    processor.tokenizer = _Tokenizer()
    class _Grids(SimpleNamespace):  # stands in for the image/video processor: returns the given grids
        def __call__(self, images=None, videos=None, **kwargs):
            out = {self.key: self.grid}
            if videos is not None:  # 5.0-5.x pop it to compute second_per_grid_ts, unused for the ids
                out["video_metadata"] = [SimpleNamespace(sampled_fps=2.0) for _ in videos]
            return out

    processor.image_processor = _Grids(merge_size=merge_size, key="image_grid_thw", grid=image_grid_thw)
    processor.video_processor = _Grids(merge_size=merge_size, temporal_patch_size=2, key="video_grid_thw",
                                       grid=video_grid_thw)
    n_images, n_videos = len(image_grid_thw), len(video_grid_thw)
    out = processor(text=list(text), images=[None] * n_images if n_images else None,
                    videos=[None] * n_videos if n_videos else None)
    return [list(map(int, row)) for row in out["input_ids"]]


def mrope_section_of(model):
    """The text rotary's mrope_section: an attribute of the rotary in late 5.x, else in the text config
    (``rope_parameters`` in 5.x, ``rope_scaling`` in 4.x)."""
    rotary = model.language_model.rotary_emb
    if hasattr(rotary, "mrope_section"):
        return list(rotary.mrope_section)
    text = model.config.text_config
    rope = getattr(text, "rope_parameters", None) or getattr(text, "rope_scaling", None) or {}
    return list(rope["mrope_section"])


def dtype_kwarg(dtype) -> dict:
    """``_from_config``'s dtype keyword: ``dtype`` in 5.x, ``torch_dtype`` in 4.x."""
    major = check_version().major
    return {"dtype": dtype} if major >= 5 else {"torch_dtype": dtype}
