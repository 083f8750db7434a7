"""Every transformers name the HF cross-check uses whose home or signature depends on the version.

The cross-check runs from transformers 4.49 (the first release with Qwen2.5-VL) to the newest 5.x
(what each version runs and where HF's behaviour differs: golden/README.md). Outside that range, or when a name
this module expects is missing, it raises :class:`UnsupportedVersion` (the generator turns it into exit code 2, "cannot check"), never a bare ImportError or TypeError.
"""

from __future__ import annotations

import importlib.metadata

from packaging.specifiers import SpecifierSet
from packaging.version import Version

SUPPORTED = ">=4.49,<6"  # --check run under 4.49.0, 4.53.3, 4.57.6, 5.0.0, 5.24.0 (golden/README.md)


class UnsupportedVersion(Exception):
    """The installed transformers cannot run the HF cross-check: outside ``SUPPORTED`` or an API break."""

    def __init__(self, installed: str, reason: str = ""):
        self.installed, self.supported, self.reason = installed, SUPPORTED, reason
        why = f" ({reason})" if reason else ""
        if reason and _in_range(installed):  # a name only some releases of the range have: this check cannot run
            super().__init__(f"transformers {installed} (inside the supported range {SUPPORTED}) cannot run this "
                             f"check{why}; a release that has it can. Nothing was compared or written for it.")
            return
        super().__init__(
            f"transformers {installed} is installed, but the HF cross-check supports transformers {SUPPORTED}"
            f"{why}. Install a supported version (e.g. `uv pip install \"transformers{SUPPORTED}\"`) "
            "and run the check again; nothing was compared or written.")


def _in_range(version: str) -> bool:
    try:
        return is_supported(version)
    except Exception:  # noqa: BLE001 - not a version string
        return False


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


def torchvision_image_processor_class():
    """HF's Qwen2-VL image processor on the torchvision path: ``Qwen2VLImageProcessor`` in 5.x releases that
    have ``Qwen2VLImageProcessorPil``; before (4.x, 5.0): ``Qwen2VLImageProcessorFast``."""
    check_version()
    import transformers

    if hasattr(transformers, "Qwen2VLImageProcessorPil"):
        return transformers.Qwen2VLImageProcessor
    try:
        from transformers.models.qwen2_vl.image_processing_qwen2_vl_fast import Qwen2VLImageProcessorFast
    except ImportError as error:
        raise _missing("Qwen2VLImageProcessorFast (torchvision path)", error) from None
    return Qwen2VLImageProcessorFast


def size_bounds(processor) -> tuple:
    """(min_pixels, max_pixels) the processor's smart resize uses: 4.49's processors read their
    ``min_pixels`` / ``max_pixels`` attributes (the torchvision one leaves ``size`` at its default);
    later ones read ``size`` (a SizeDict in late 5.x, a dict before)."""
    import inspect

    preprocess = getattr(type(processor), "_preprocess", None)
    if preprocess is not None and "self.min_pixels" in inspect.getsource(preprocess):
        return processor.min_pixels, processor.max_pixels
    size = processor.size
    if isinstance(size, dict):
        return size["shortest_edge"], size["longest_edge"]
    return size.shortest_edge, size.longest_edge


def torchvision_resize(processor, images):
    """The torchvision processor's smart resize of uint8 images [..., 3, H, W]. Where its ``resize`` takes
    ``factor`` (late 5.x) it is called as the processor does; before, the processor ran ``smart_resize``
    and a plain resize to that size with the interpolation mapped from ``resample``, as done here."""
    import inspect

    factor = processor.patch_size * processor.merge_size
    if "factor" in inspect.signature(processor.resize).parameters:
        return processor.resize(images=images, size=processor.size, resample=processor.resample, factor=factor)
    from transformers.image_utils import SizeDict, pil_torch_interpolation_mapping

    min_pixels, max_pixels = size_bounds(processor)
    height, width = smart_resize()(*images.shape[-2:], factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    return processor.resize(images, size=SizeDict(height=height, width=width),
                            interpolation=pil_torch_interpolation_mapping[processor.resample])


def torchvision_rescale_normalize(processor, images):
    """The torchvision processor's fused rescale + normalize of uint8 images, with the mean/std its own
    ``_preprocess`` receives: tuples where ``_fuse_mean_std_and_rescale_factor`` fuses them (it is cached:
    lists are unhashable there); in 4.49 already fused by the caller (tensors divided by the rescale factor)."""
    factor, mean, std = processor.rescale_factor, processor.image_mean, processor.image_std
    if hasattr(type(processor), "_fuse_mean_std_and_rescale_factor"):
        mean, std = tuple(mean), tuple(std)
    else:
        import torch

        mean, std = torch.tensor(mean) * (1.0 / factor), torch.tensor(std) * (1.0 / factor)
    return processor.rescale_and_normalize(images, True, factor, True, mean, std)


def video_processor_class():
    """``Qwen2VLVideoProcessor``, for the video cross-check, which drives it through
    ``Qwen2_5_VLProcessor._process_videos`` (late 5.x); releases without that raise UnsupportedVersion,
    so the video cases read "cannot check on this version"."""
    check_version()
    from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor

    if not hasattr(Qwen2_5_VLProcessor, "_process_videos"):
        raise _missing("Qwen2_5_VLProcessor._process_videos (the video cross-check's entry point)")
    from transformers import Qwen2VLVideoProcessor

    return Qwen2VLVideoProcessor


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

def rope_index_class():
    """The class that owns ``get_rope_index``: ``Qwen2_5_VLModel`` (vision + text model) from 4.52; in 4.49-4.51
    ``Qwen2_5_VLModel`` is the text model alone and ``get_rope_index`` sits on ``Qwen2_5_VLForConditionalGeneration``."""
    check_version()
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl

    return rope_index_owner(modeling_qwen2_5_vl)


def rope_index_owner(modeling):
    """The first of ``Qwen2_5_VLModel``, ``Qwen2_5_VLForConditionalGeneration`` of module ``modeling`` that has
    ``get_rope_index`` (UnsupportedVersion when neither has)."""
    for name in ("Qwen2_5_VLModel", "Qwen2_5_VLForConditionalGeneration"):
        if hasattr(getattr(modeling, name, None), "get_rope_index"):
            return getattr(modeling, name)
    raise _missing("get_rope_index (on Qwen2_5_VLModel or Qwen2_5_VLForConditionalGeneration)")


def has_text_config() -> bool:
    """Whether the text settings have their own ``Qwen2_5_VLTextConfig`` (4.52 on); before, they are
    top-level fields of ``Qwen2_5_VLConfig``."""
    from transformers.models.qwen2_5_vl import configuration_qwen2_5_vl

    return hasattr(configuration_qwen2_5_vl, "Qwen2_5_VLTextConfig")


def tiny_rope_model(text: dict, vision: dict, token_ids: dict):
    """An uninitialised float32 model of ``rope_index_class()`` on ``Qwen2_5_VLConfig`` built from the text
    and vision keyword dicts, in the layout of the installed release (``text_config=`` or flat text fields).
    ``token_ids``: image_token_id, video_token_id, vision_start_token_id (4.49 has no defaults for them)."""
    from transformers import Qwen2_5_VLConfig

    config = (Qwen2_5_VLConfig(text_config=text, vision_config=vision, **token_ids) if has_text_config()
              else Qwen2_5_VLConfig(**text, vision_config=vision, **token_ids))
    with no_init_weights():
        model = rope_index_class()(config)
    return model.eval()


def text_rotary(model):
    """The text model's ``Qwen2_5_VLRotaryEmbedding``: ``model.language_model`` from 4.52, ``model.model`` before."""
    text = getattr(model, "language_model", None) or getattr(model, "model", None)
    if text is None or not hasattr(text, "rotary_emb"):
        raise _missing("the text model's rotary_emb (language_model / model)")
    return text.rotary_emb


def text_config_of(model):
    """The text settings: ``config.text_config`` where it exists, else the top-level config (4.49-4.51)."""
    return getattr(model.config, "text_config", None) or model.config


def rope_index_takes_token_types() -> bool:
    """Whether ``get_rope_index`` takes ``mm_token_type_ids`` (5.x, required) or finds the vision tokens from
    ``input_ids`` itself (4.x and early 5.x)."""
    import inspect

    return "mm_token_type_ids" in inspect.signature(rope_index_class().get_rope_index).parameters


def get_rope_index(model, input_ids, mm_token_type_ids, **kwargs):
    """``model.get_rope_index`` with the inputs the installed release takes: ``mm_token_type_ids`` is
    passed where it is a parameter, otherwise dropped (those releases derive it from ``input_ids``)."""
    if rope_index_takes_token_types():
        return model.get_rope_index(input_ids, mm_token_type_ids, **kwargs)
    return model.get_rope_index(input_ids, **kwargs)


def text_rope_config(theta: float, mrope_section) -> dict:
    """The text config's rotary settings: 5.x ``rope_parameters``; 4.x ``rope_theta`` + ``rope_scaling``."""
    section = [int(s) for s in mrope_section]
    if has_text_config() and "rope_parameters" in _init_parameters("Qwen2_5_VLTextConfig"):
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

    rotary = text_rotary(model)
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

    class _Grids(SimpleNamespace):  # stands in for the image/video processors: returns the given grids
        def __call__(self, images=None, videos=None, **kwargs):
            out = {}
            if images is not None:
                out["image_grid_thw"] = image_grid_thw
            if videos is not None:  # 4.49-4.51 ask the image processor for videos too
                out["video_grid_thw"] = video_grid_thw
                # 5.0-5.x pop it to compute second_per_grid_ts, unused for the ids
                out["video_metadata"] = [SimpleNamespace(sampled_fps=2.0) for _ in videos]
            return out

    processor.image_processor = processor.video_processor = _Grids(merge_size=merge_size, temporal_patch_size=2)
    n_images, n_videos = len(image_grid_thw), len(video_grid_thw)
    out = processor(text=list(text), images=[None] * n_images if n_images else None,
                    videos=[None] * n_videos if n_videos else None)
    return [list(map(int, row)) for row in out["input_ids"]]


def mrope_section_of(model):
    """The text rotary's mrope_section: an attribute of the rotary in late 5.x, else in the text config
    (``rope_parameters`` in 5.x, ``rope_scaling`` in 4.x)."""
    rotary = text_rotary(model)
    if hasattr(rotary, "mrope_section"):
        return list(rotary.mrope_section)
    text = text_config_of(model)
    rope = getattr(text, "rope_parameters", None) or getattr(text, "rope_scaling", None) or {}
    return list(rope["mrope_section"])


def dtype_kwarg(dtype) -> dict:
    """``_from_config``'s dtype keyword: ``dtype`` in 5.x, ``torch_dtype`` in 4.x."""
    major = check_version().major
    return {"dtype": dtype} if major >= 5 else {"torch_dtype": dtype}
