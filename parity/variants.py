"""Interpolation variants: other ways to turn a case's ``input`` image into ``pixel_values``.

Each variant produces the image stages (``rgb``, ``resized``, then ``rescaled`` + ``normalized``
or the torchvision backend's fused ``rescaled_normalized``, ``pixel_values``) from the input (the
accumulated path), and each stage again from the GOLDEN previous stage (the local path), so the
report can say which step differs:

* ``exact``: the port's transform (``torch_port.Qwen2_5_VLImageTransform``) on the golden's own
  backend: Pillow BICUBIC on a PIL golden, torchvision's uint8 resize on a torchvision golden
  (``tv_*``); rescale + normalize fused in one lookup table. Expected: 0.0 everywhere.
* ``torchvision``: HF's default ``Qwen2VLImageProcessor`` path built here from torchvision:
  ``transforms.v2.functional.resize`` on the uint8 tensor (BICUBIC, antialias=True), then HF's fused
  float32 ``(x - 255*mean) / (255*std)``. Exact against a torchvision golden; against a PIL golden
  its difference is the BACKEND difference (``BACKEND``), not an interpolation error.
* ``pil``: the port's PIL-backend transform (Pillow BICUBIC, HF's PIL rescale/normalize), whatever
  the golden: exact against a PIL golden, the backend difference against a torchvision one.
* ``float``: the image to float in [0, 1] first, ``F.interpolate(mode="bicubic", antialias=True,
  align_corners=False)``, normalize with CLIP mean/std; no clamping, no rounding (a known port
  did this). Its ``resized`` stage is the float image times 255, compared with the uint8 golden.
* ``bilinear``: Pillow BILINEAR on the uint8 image instead of BICUBIC, then as the PIL backend.

The target size is always ``smart_resize``'s (the same for every variant).
"""

from __future__ import annotations

import numpy as np

from reference.preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from reference.preprocess import patchify as _patchify
from reference.preprocess import rescale as _rescale
from reference.smart_resize import smart_resize

from goldenlib.stage_vocabulary import IMAGE_STAGES

from .cases import stage_key

VARIANTS = ("exact", "torchvision", "pil", "float", "bilinear")
# The image backend a variant stands for (exact: the golden's own); float and bilinear are no backend.
BACKEND = {"torchvision": "torchvision", "pil": "pil"}
MEAN32 = np.asarray(OPENAI_CLIP_MEAN, np.float32)[:, None, None]
STD32 = np.asarray(OPENAI_CLIP_STD, np.float32)[:, None, None]


def torchvision_available():
    try:
        import torchvision.transforms.v2.functional  # noqa: F401
    except ImportError:
        return False
    return True


def variant_backend(name, case):
    """The backend variant ``name`` runs on ``case`` ("pil", "torchvision"), or None (float, bilinear)."""
    return case.backend if name == "exact" else BACKEND.get(name)


def _transform(params, backend="pil"):
    from torch_port import Qwen2_5_VLImageTransform

    return Qwen2_5_VLImageTransform(backend=backend,
                                    **{k: v for k, v in params.items() if k in ("min_pixels", "max_pixels")})


def _rgb(image):
    """The port's RGB conversion (HF's convert_to_rgb): uint8 [H, W, 3]."""
    from torch_port._transform import _convert_rgb, _to_pil

    return np.asarray(_convert_rgb(_to_pil(image)))


def _target(rgb, params):
    from reference.smart_resize import MAX_PIXELS, MIN_PIXELS

    return smart_resize(rgb.shape[0], rgb.shape[1], 28, params.get("min_pixels", MIN_PIXELS),
                        params.get("max_pixels", MAX_PIXELS))


def _normalize32(rescaled):  # float32 [3, h, w] -> float32 [3, h, w], (x - mean) / std in float32
    return (np.asarray(rescaled, np.float32) - MEAN32) / STD32


def _pil_resize(rgb, height, width, method):
    import PIL.Image

    return np.asarray(PIL.Image.fromarray(np.ascontiguousarray(rgb)).resize((width, height), method))


# Each variant: resize(rgb, h, w) -> "resized" (uint8 [h, w, 3], or float in uint8 units for
# "float"); rescale(resized) -> float32 [3, h, w] in [0, 1]; run(rgb, h, w) -> (resized, rescaled)
# on the accumulated path (the float path's rescaled image is its own, not resized / 255).
class _Exact:
    """The port's transform on ``backend``, step by step: its resize, then its rescale+normalize table."""

    def __init__(self, params, backend="pil"):
        self.backend = backend
        self.transform = _transform(params, backend)

    def resize(self, rgb, height, width):
        import PIL.Image

        if self.backend == "torchvision":  # the port calls torchvision's resize itself
            return _Torchvision().resize(rgb, height, width)
        return np.asarray(self.transform.resize(PIL.Image.fromarray(np.ascontiguousarray(rgb))))

    def run(self, rgb, height, width):
        return self.resize(rgb, height, width), None  # no separate rescale stage: fused into the table

    def normalize_from_resized(self, resized):
        from torch_port._transform import _normalize_table

        # [3, 256] float32: the normalized value of each uint8 level, the port's rescale+normalize
        table = _normalize_table(self.transform.image_mean, self.transform.image_std, backend=self.backend)
        chw = np.asarray(resized).transpose(2, 0, 1)  # uint8 [3, h, w]
        return table[np.arange(3)[:, None, None], chw]

    def patchify_from_resized(self, resized):
        import torch

        return self.transform.patchify(torch.from_numpy(np.ascontiguousarray(resized))).numpy()


class _UInt8Resize:
    def run(self, rgb, height, width):
        resized = self.resize(rgb, height, width)
        return resized, self.rescale(resized)


class _Torchvision:
    """HF's ``Qwen2VLImageProcessor`` on CPU: torchvision's uint8 resize, then the fused float32 step."""

    def run(self, rgb, height, width):
        return self.resize(rgb, height, width), None  # no separate rescale stage: fused

    def normalize_from_resized(self, resized):
        # HF fuses the rescale into mean and std (float32 tensors times 1 / (1/255) = 255.0)
        chw = np.asarray(resized).transpose(2, 0, 1).astype(np.float32)
        return (chw - MEAN32 * np.float32(255.0)) / (STD32 * np.float32(255.0))

    def resize(self, rgb, height, width):
        import torch
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        chw = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
        out = TF.resize(chw, [height, width], interpolation=InterpolationMode.BICUBIC, antialias=True)
        return out.permute(1, 2, 0).numpy()


class _Bilinear(_UInt8Resize):
    def resize(self, rgb, height, width):
        import PIL.Image

        return _pil_resize(rgb, height, width, PIL.Image.Resampling.BILINEAR)

    def rescale(self, resized):
        return _rescale(np.asarray(resized).transpose(2, 0, 1))  # HF's: x * (1/255) in float64 -> float32


class _Float:
    def _interpolate(self, x, height, width):  # float32 [3, H, W] -> [3, h, w]
        import torch.nn.functional as F

        if (height, width) == tuple(x.shape[1:]):
            return x
        return F.interpolate(x[None], size=(height, width), mode="bicubic", antialias=True, align_corners=False)[0]

    def run(self, rgb, height, width):
        import torch

        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float()  # [3, H, W] uint8 levels
        rescaled = self._interpolate(x / 255, height, width).numpy()  # the path itself: [0, 1] first, no clamp/round
        return self.resize(rgb, height, width), rescaled

    def resize(self, rgb, height, width):
        """The same float resize on the 0..255 levels: the "resized" stage in uint8 units (the resize
        is linear, so this is the path's image times 255 without the extra float32 rounding of x/255*255)."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float()
        return self._interpolate(x, height, width).numpy().transpose(1, 2, 0)

    def rescale(self, resized):
        return (np.asarray(resized, np.float32) / np.float32(255)).transpose(2, 0, 1)


def make_variant(name, params, backend="pil"):
    """Variant ``name`` for a golden on ``backend`` (only ``exact`` depends on it)."""
    if name in ("exact", "pil"):
        backend = BACKEND.get(name, backend)
        if backend == "torchvision" and not torchvision_available():
            raise RuntimeError("the port's torchvision backend needs torchvision")
        return _Exact(params, backend)
    if name == "torchvision":
        if not torchvision_available():
            raise RuntimeError("the torchvision variant needs torchvision")
        return _Torchvision()
    if name == "float":
        return _Float()
    if name == "bilinear":
        return _Bilinear()
    raise ValueError(f"unknown interpolation variant {name!r}; known: {', '.join(VARIANTS)}")


def _one_image(variant, image, params, golden):
    """(accumulated stages, local stages) of one image. ``golden``: that image's golden stages."""
    acc, local = {}, {}
    acc["rgb"] = _rgb(image)
    local["rgb"] = acc["rgb"]  # its input is the golden input itself
    height, width = _target(acc["rgb"], params)
    acc["resized"], rescaled = variant.run(acc["rgb"], height, width)
    if "rgb" in golden:
        local["resized"] = variant.resize(golden["rgb"], height, width)
    if isinstance(variant, (_Exact, _Torchvision)):
        # one fused step: named as the golden names it (rescaled_normalized on the torchvision backend)
        fused = "rescaled_normalized" if "rescaled_normalized" in golden else "normalized"
        acc[fused] = variant.normalize_from_resized(acc["resized"])
        if "resized" in golden:
            local[fused] = variant.normalize_from_resized(golden["resized"])
            if isinstance(variant, _Exact):
                local["pixel_values"] = variant.patchify_from_resized(golden["resized"])
        if fused in golden and isinstance(variant, _Torchvision):
            local["pixel_values"] = _patchify(np.asarray(golden[fused], np.float32))[0]
    else:
        acc["rescaled"] = rescaled
        acc["normalized"] = _normalize32(rescaled)
        if "resized" in golden:
            local["rescaled"] = variant.rescale(golden["resized"])
        if "rescaled" in golden:
            local["normalized"] = _normalize32(golden["rescaled"])
        if "normalized" in golden:
            local["pixel_values"] = _patchify(np.asarray(golden["normalized"], np.float32))[0]
    return acc, local


def run_variant(name, case):
    """Image stages of ``case``'s input through variant ``name``.

    Returns (accumulated, local, pixel_values, grid_thw): stage dicts keyed like the goldens
    (``resized`` or ``resized.{i}``), plus the variant's ``pixel_values``/``grid_thw`` for the tower.
    """
    if not case.images:
        raise ValueError(f"case {case.name} has no input image: interpolation variants need one")
    golden = case.expected_image_stages()
    n = len(case.images)
    accumulated, local, rows, local_rows, grids = {}, {}, [], [], []
    for index, image in enumerate(case.images):
        variant = make_variant(name, case.params, case.backend or "pil")
        mine = {stage: golden[stage_key(stage, index, n)] for stage in IMAGE_STAGES
                if stage_key(stage, index, n) in golden}
        acc, loc = _one_image(variant, image, case.params, mine)
        for stage, value in acc.items():
            accumulated[stage_key(stage, index, n)] = value
        for stage, value in loc.items():
            if stage != "pixel_values":
                local[stage_key(stage, index, n)] = value
        patches, gh, gw = _patchify(np.asarray(acc.get("normalized", acc.get("rescaled_normalized")), np.float32))
        rows.append(patches)
        grids.append([1, gh, gw])
        if "pixel_values" in loc:
            local_rows.append(loc["pixel_values"])
    pixel_values = np.ascontiguousarray(np.concatenate(rows), dtype=np.float32)
    grid_thw = np.asarray(grids, dtype=np.int64)
    if name in ("exact", "pil"):  # the port's whole transform, called as users call it
        pixel_values, grid_thw = _exact_pixel_values(case, variant_backend(name, case) or "pil")
    accumulated["pixel_values"] = pixel_values
    accumulated["image_grid_thw"] = grid_thw
    if len(local_rows) == n:
        local["pixel_values"] = np.concatenate(local_rows)
    local["image_grid_thw"] = grid_thw
    return accumulated, local, pixel_values, grid_thw


def _exact_pixel_values(case, backend="pil"):
    """pixel_values and grid of the port's transform called as users call it (one image per call)."""
    from torch_port._transform import _to_pil

    transform = _transform(case.params, backend)
    outs = [transform({"image": _to_pil(image)}) for image in case.images]  # what HF was given for the goldens
    pixel_values = np.concatenate([out["pixel_values"].numpy() for out in outs])
    grid_thw = np.concatenate([out["image_grid_thw"].numpy() for out in outs])
    return pixel_values, grid_thw
