"""Qwen2.5-VL image transform for torch, bit-exact with HF's ``Qwen2VLImageProcessorPil``.

The resize is where ports drift: resizing a float image (or with torchvision's uint8
kernel) differs from HF by up to a few uint8 steps. Here the uint8 image is resized by
Pillow itself, exactly as HF does.

Rescale and normalize map each uint8 value ``v`` of channel ``c`` to
``float32((float32(v * (1/255) in float64) - mean[c]) / std[c])`` — a function of
``(c, v)`` only — so they are one lookup into a [3, 256] table, bit-equal to computing
them per pixel and much cheaper.

Speed (see ``benchmarks/run.py``), with more than one torch thread:

* Pillow's resize is two separable passes with a uint8 image in between: a horizontal pass
  (each output row from its own source row) and a vertical pass (each output column from its
  own source column), in an order fixed by the sizes. Done as two resizes that each change
  one side, in Pillow's order, the passes are the same; and each pass can be cut into bands
  (of rows for the horizontal pass, of columns for the vertical one) resized on a thread pool
  (Pillow releases the GIL while resampling): the same bytes as ``image.resize(size)``.
* The patches are gathered as uint8 and looked up two levels at a time in a [3, 65536] table of
  level pairs, written once into the output in its final layout (both time steps), a few rows
  of merge blocks at a time; each band of the last pass is patchified by the thread that
  resized it.
* Measured on 2 cores at 640x480 (one call about 5-7 ms): Pillow's two passes are about 4.5 ms
  of work, the patches about 1.6 ms; the two threads overlap them to about 60% efficiency.

The thread count follows ``torch.get_num_threads()`` (1 in DataLoader workers: all runs inline).
"""

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import PIL.Image
import torch

from ._smart_resize import MAX_PIXELS, MIN_PIXELS, smart_resize

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BACKENDS = ("pil", "torchvision")


def _torchvision():
    """torchvision.transforms.v2.functional, imported only when backend="torchvision" is used."""
    try:
        from torchvision.transforms.v2 import functional
    except ImportError as error:
        raise ImportError("Qwen2_5_VLImageTransform(backend='torchvision') needs torchvision (pip install "
                          f"torchvision); backend='pil' needs only Pillow. ({error})") from error
    return functional


def _uint8_chw(image: Any, do_convert_rgb: bool) -> torch.Tensor:
    """HF's torchvision ``process_image``: a PIL image (converted by Pillow), uint8 [H, W, C] array
    or uint8 [C, H, W] tensor -> uint8 [C, H, W]; arrays and tensors with 1 channel are repeated,
    with 4 blended over white in float32 as HF does (not Pillow's integer compositing)."""
    if isinstance(image, PIL.Image.Image):
        array = np.asarray(_convert_rgb(image) if do_convert_rgb else image)
        array = array[:, :, None] if array.ndim == 2 else array
        return torch.from_numpy(np.array(array)).permute(2, 0, 1)  # a writable copy
    if isinstance(image, torch.Tensor):
        chw = image.cpu()
        chw = chw[None] if chw.ndim == 2 else chw
    else:
        array = np.asarray(_to_pil(image))  # the same checks as the PIL path
        array = array[:, :, None] if array.ndim == 2 else array
        chw = torch.from_numpy(np.array(array)).permute(2, 0, 1)  # a writable copy
    _to_pil(chw)  # dtype and shape checks only
    if do_convert_rgb and chw.shape[0] == 1:
        chw = chw.expand(3, -1, -1)
    elif do_convert_rgb and chw.shape[0] == 4:
        x = chw.to(torch.float32).mul_(1.0 / 255)
        chw = (x[:3] * x[3:] + (1 - x[3:])).mul(255 + 1.0 - 1e-3).to(torch.uint8)
    return chw.contiguous()


def _to_pil(image: Any) -> PIL.Image.Image:
    """A PIL image, uint8 [H, W(, C)] array or uint8 [C, H, W] tensor -> PIL image."""
    if isinstance(image, PIL.Image.Image):
        return image
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8:
            raise ValueError(f"image tensor must be uint8 [C, H, W], got dtype {image.dtype}")
        if image.ndim == 3:
            if image.shape[0] not in (1, 3, 4):
                raise ValueError(f"image tensor must be [C, H, W] with C in (1, 3, 4), got shape {tuple(image.shape)}")
            image = image.permute(1, 2, 0)
        elif image.ndim != 2:
            raise ValueError(f"image tensor must be [C, H, W] or [H, W], got shape {tuple(image.shape)}")
        image = image.cpu().numpy()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"image array must be uint8 [H, W, C], got dtype {image.dtype}")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise ValueError(f"image array must be [H, W] or [H, W, C] with C in (1, 3, 4), got shape {image.shape}")
        if 0 in image.shape:
            raise ValueError(f"image is empty, shape {image.shape}")
        return PIL.Image.fromarray(np.ascontiguousarray(image))
    raise TypeError(f"sample['image'] must be a PIL image, numpy array or torch tensor, got {type(image).__name__}")


def _convert_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """HF's ``convert_to_rgb`` for PIL images: anything with alpha goes over opaque white."""
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        image = image.convert("RGBA")
        white = PIL.Image.new("RGBA", image.size, (255, 255, 255, 255))
        return PIL.Image.alpha_composite(white, image).convert("RGB")
    if image.mode == "RGB":
        return image  # convert("RGB") would only copy it; nothing here writes to it
    return image.convert("RGB")


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()
_MIN_PARALLEL_PIXELS = 1 << 16  # below this (about 256x256), threads do not pay for their hand-offs
_CHUNK_PIXELS = 1 << 16  # pixels patchified per step (fastest of 2^14..2^18 at 640x480)


def _bands_per_thread(pixels: int) -> int:
    """One band per thread up to ~2 MP (fewest hand-offs); up to 4 above, so that each band's
    intermediate image stays small enough to be patchified while still in cache (measured on
    2 cores: 4032x3024 takes 0.7x the time of one band per thread)."""
    return max(1, min(4, pixels >> 21))


def _pool(workers: int) -> Optional[ThreadPoolExecutor]:
    """A shared pool of ``workers`` threads, or None for 1 (run inline)."""
    if workers <= 1:
        return None
    with _POOLS_LOCK:
        if workers not in _POOLS:
            _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="qwen2_5_vl_transform")
        return _POOLS[workers]


def _run(pool: Optional[ThreadPoolExecutor], fn, items) -> list:
    """``[fn(item) for item in items]``; with a pool, the calling thread takes the first item
    itself (it is already running: one thread fewer to wake) while the pool takes the rest."""
    if pool is None or len(items) < 2:
        return [fn(item) for item in items]
    rest = [pool.submit(fn, item) for item in items[1:]]
    first = fn(items[0])
    return [first] + [future.result() for future in rest]


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    """``range(n)`` cut into ``parts`` nearly equal ``(start, stop)`` pieces (none empty)."""
    parts = max(1, min(parts, n))
    bounds = [n * i // parts for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _normalize_table(mean, std, *, backend: str = "pil", do_rescale: bool = True, rescale_factor: float = 1 / 255,
                     do_normalize: bool = True, channels: int = 3) -> np.ndarray:
    """[C, 256] float32: HF's rescale and normalize of every uint8 level, per channel.

    Both act on each value alone, so one value per (channel, level) covers every image.
    PIL backend: rescale = times the factor in float64, cast to float32; normalize =
    ``(x - mean) / std`` in float32. Torchvision backend: rescale = float32 product; with both on,
    one fused float32 step ``(x - mean/f) / (std/f)`` (mean/f, std/f rounded to float32 first).
    """
    levels = np.arange(256, dtype=np.float64)  # [256]
    mean = np.broadcast_to(np.asarray(mean, dtype=np.float32).reshape(-1), (channels,))[:, None]
    std = np.broadcast_to(np.asarray(std, dtype=np.float32).reshape(-1), (channels,))[:, None]
    if backend == "torchvision":
        x = levels.astype(np.float32)
        if do_rescale and do_normalize:
            scale = np.float32(1.0 / rescale_factor)
            mean, std = mean * scale, std * scale
        elif do_rescale:
            x = x * np.float32(rescale_factor)
    else:
        x = (levels * rescale_factor).astype(np.float32) if do_rescale else levels.astype(np.float32)
    x = np.broadcast_to(x[None, :], (channels, 256))
    return np.ascontiguousarray((x - mean) / std if do_normalize else x)  # [C, 256]


def normalize_table(mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """[3, 256] float32: normalized value of every uint8 level, per channel, computed as HF does."""
    return torch.from_numpy(_normalize_table(mean, std))


def _pillow_version() -> tuple[int, ...]:
    return tuple(int(p) for p in PIL.__version__.split(".")[:2] if p.isdigit())


def vertical_first(in_h: int, in_w: int, out_h: int, out_w: int, pillow_version: Optional[tuple] = None) -> bool:
    """Whether Pillow's resize runs its vertical pass first (when both passes run).

    Pillow >= 13: when the height shrinks by more than twice as many pixels as the width
    (``dh > 0 and dh > 2 * dw``); 12.2: only for an image over 100x taller than wide whose height
    shrinks; <= 12.1: never. ``pillow_version`` None means the installed Pillow.
    """
    version = pillow_version or _pillow_version()
    if version >= (13, 0):
        dh, dw = in_h - out_h, in_w - out_w
        return dh > 0 and dh > 2 * dw
    if version >= (12, 2):
        return in_h > 100 * in_w and out_h < in_h
    return False


def pair_table(table: np.ndarray) -> np.ndarray:
    """[3, 256] float32 table -> [3, 65536] uint64: the two float32 values of every pair of
    uint8 levels, packed. Indexing it with the image's bytes viewed as uint16 looks up two
    values per step: half the index conversions and gathers of the [3, 256] table. Both views
    are made with numpy's own byte order, so the packing is the same on any machine."""
    pairs = np.arange(1 << 16, dtype=np.uint16).view(np.uint8).reshape(-1, 2)  # (first, second) byte
    return np.ascontiguousarray(table[:, pairs]).view(np.uint64)[:, :, 0]


class Qwen2_5_VLImageTransform:
    """Turn ``sample["image"]`` into Qwen2.5-VL's ``pixel_values`` and ``image_grid_thw``.

    Args:
        min_pixels, max_pixels: area bounds for ``smart_resize``; the defaults are the
            released checkpoints' (3136, 12845056), not HF's class defaults.
        patch_size, merge_size, temporal_patch_size: the vision tower's patching.
        image_mean, image_std: per-channel normalization (OpenAI CLIP's).
        dtype: optional output dtype for ``pixel_values`` (e.g. ``torch.bfloat16``),
            applied last, after the exact float32 computation.
        backend: "pil" (default: bit-exact with ``Qwen2VLImageProcessorPil``, Pillow's resize) or
            "torchvision" (bit-exact on CPU with ``Qwen2VLImageProcessor``, HF's default when
            torchvision is installed: torchvision's uint8 antialiased bicubic resize and HF's fused
            float32 rescale+normalize). "torchvision" needs torchvision (a dev dependency here),
            imported only when this backend is chosen; without it, an ImportError says so.
        do_resize, do_rescale, rescale_factor, do_normalize, do_convert_rgb: HF's options, with
            HF's meaning (do_resize=False needs sides that are multiples of patch*merge size;
            do_convert_rgb=False keeps RGBA as 4 channels, then mean/std need 4 values).

    ``transform(sample)`` returns the sample with ``"pixel_values"`` [N, 3*tp*p*p] and
    ``"image_grid_thw"`` int64 [1, 3]. The image may be a PIL image, a uint8 [H, W, C]
    numpy array or a uint8 [C, H, W] torch tensor.
    """

    def __init__(
        self,
        *,
        min_pixels: int = MIN_PIXELS,
        max_pixels: int = MAX_PIXELS,
        patch_size: int = 14,
        merge_size: int = 2,
        temporal_patch_size: int = 2,
        image_mean: Sequence[float] = OPENAI_CLIP_MEAN,
        image_std: Sequence[float] = OPENAI_CLIP_STD,
        dtype: Optional[torch.dtype] = None,
        backend: str = "pil",
        do_resize: bool = True,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        do_convert_rgb: bool = True,
    ):
        if min_pixels > max_pixels:
            raise ValueError(f"min_pixels ({min_pixels}) must not exceed max_pixels ({max_pixels})")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        for name, value in (("image_mean", image_mean), ("image_std", image_std)):
            if np.ndim(value) > 1 or (np.ndim(value) == 1 and len(value) not in ((3, 4) if not do_convert_rgb else (3,))):
                raise ValueError(f"{name} needs 3 values (one per RGB channel) or one number, got {value!r}")
        if do_normalize and (np.asarray(image_std, dtype=np.float64) == 0).any():
            raise ValueError(f"image_std must not contain 0 (division by zero), got {image_std!r}")
        if do_rescale and (isinstance(rescale_factor, bool) or not isinstance(rescale_factor, (int, float))):
            raise ValueError(f"rescale_factor must be a number, got {rescale_factor!r}")
        if backend == "torchvision":
            _torchvision()  # fail now, with the reason, if it is missing
        self.backend = backend
        self.do_resize, self.do_rescale, self.rescale_factor = do_resize, do_rescale, rescale_factor
        self.do_normalize, self.do_convert_rgb = do_normalize, do_convert_rgb
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.patch_size = patch_size
        self.merge_size = merge_size
        self.temporal_patch_size = temporal_patch_size
        self.image_mean = tuple(np.atleast_1d(image_mean).tolist()) if np.ndim(image_mean) else image_mean
        self.image_std = tuple(np.atleast_1d(image_std).tolist()) if np.ndim(image_std) else image_std
        self.dtype = dtype
        self._luts: dict[int, tuple] = {}
        if do_convert_rgb:
            self._lut(3)  # the RGB tables now; other channel counts (do_convert_rgb=False) when met

    def _lut(self, channels: int) -> tuple:
        """(flat table, unit dtype, channel offsets [C, tp, 1, 1]) for images of ``channels`` channels.

        The lookup works on units of the image's bytes: pairs of levels (uint16) where a patch
        row has an even length, single levels otherwise; channel c's values start at c * width.
        """
        if channels not in self._luts:
            if np.ndim(self.image_mean) and len(self.image_mean) != channels and self.do_normalize:
                raise ValueError(f"image_mean {self.image_mean} has {len(self.image_mean)} values but the image has "
                                 f"{channels} channels (do_convert_rgb={self.do_convert_rgb})")
            if np.ndim(self.image_std) and len(self.image_std) != channels and self.do_normalize:
                raise ValueError(f"image_std {self.image_std} has {len(self.image_std)} values but the image has "
                                 f"{channels} channels (do_convert_rgb={self.do_convert_rgb})")
            table = _normalize_table(self.image_mean, self.image_std, backend=self.backend,
                                     do_rescale=self.do_rescale, rescale_factor=self.rescale_factor,
                                     do_normalize=self.do_normalize, channels=channels)  # [C, 256] float32
            if self.patch_size % 2 == 0:
                flat, unit = pair_table(table).reshape(-1), np.uint16
            else:
                flat, unit = table.reshape(-1), np.uint8
            width = flat.size // channels
            offsets = np.broadcast_to(  # [C, tp, 1, 1]: the same offset in every time step
                (np.arange(channels, dtype=np.intp) * width)[:, None, None, None],
                (channels, self.temporal_patch_size, 1, 1))
            self._luts[channels] = (flat, unit, offsets)
        return self._luts[channels]

    def resize(self, image: PIL.Image.Image) -> PIL.Image.Image:
        """RGB PIL image -> RGB PIL image of the ``smart_resize`` size (Pillow BICUBIC, uint8)."""
        return image.resize(self._size(image), PIL.Image.Resampling.BICUBIC)

    def _size(self, image: PIL.Image.Image) -> tuple[int, int]:
        if not self.do_resize:
            return image.width, image.height
        height, width = smart_resize(
            image.height, image.width, self.patch_size * self.merge_size, self.min_pixels, self.max_pixels
        )
        return width, height

    def patchify(self, resized: torch.Tensor) -> torch.Tensor:
        """uint8 [H, W, 3] -> float32 [gh*gw, 3*tp*p*p], rows in 2x2 merge-block order."""
        resized = np.asarray(resized.numpy())
        gh, gw = resized.shape[0] // self.patch_size, resized.shape[1] // self.patch_size
        out = self._empty_patches(gh, gw, resized.shape[2] if resized.ndim == 3 else 1)
        self._patchify_into(resized, out)
        return torch.from_numpy(out.reshape(gh * gw, -1))

    def _empty_patches(self, gh: int, gw: int, channels: int = 3) -> np.ndarray:
        p, m, tp = self.patch_size, self.merge_size, self.temporal_patch_size
        return np.empty((gh // m, gw // m, m, m, channels, tp, p, p), np.float32)

    def _patchify_into(self, resized: np.ndarray, out: np.ndarray) -> None:
        """uint8 [H, W, 3] (whole merge blocks) -> ``out`` [H/(m*p), W/(m*p), m, m, 3, tp, p, p].

        The obvious form is HF's rescale -> normalize -> patchify (tests/test_fast_paths.py keeps
        this equal to the project's NumPy reference of it). Here, a few rows of merge blocks at a time
        (about ``_CHUNK_PIXELS``, so the temporaries stay in cache):

        1. the patches are gathered as uint8 levels [rows, W/(m*p), m, m, C, p, p];
        2. each unit (a pair of levels, see ``__init__``) plus its channel's offset is the index of
           its float32 values in the flat table, written once per time step: the index array has
           ``out``'s layout;
        3. one ``np.take`` writes the values straight into ``out``: rescale, normalize and the
           repeat in time in one pass, bit-exact since the table holds HF's own results.
        """
        p, m = self.patch_size, self.merge_size
        rows, cols, channels = out.shape[0], out.shape[1], out.shape[4]
        if resized.ndim == 2:
            resized = resized[:, :, None]  # a gray image kept gray (do_convert_rgb=False)
        flat_table, unit, channel_offsets = self._lut(channels)
        step = max(1, _CHUNK_PIXELS // (m * p * cols * m * p)) if out.flags.c_contiguous else 1
        levels = np.empty((min(step, rows), cols, m, m, channels, p, p), np.uint8)
        units = levels.view(unit)  # [..., C, p, p or p/2]
        index = np.empty(units.shape[:5] + (self.temporal_patch_size,) + units.shape[5:], np.intp)
        values = out.view(flat_table.dtype)  # out's float32s, in the same units
        for r0 in range(0, rows, step):
            n = min(step, rows - r0)
            block = resized[r0 * m * p : (r0 + n) * m * p, : cols * m * p].reshape(n, m, p, cols, m, p, channels)
            levels[:n] = block.transpose(0, 3, 1, 4, 6, 2, 5)  # [n, cols, m, m, C, p, p]
            np.add(units[:n, :, :, :, :, None], channel_offsets, out=index[:n])
            np.take(flat_table, index[:n], out=values[r0 : r0 + n], mode="clip")  # contiguous: no copy

    def _pixel_values(self, image: PIL.Image.Image, threads: int = 1) -> np.ndarray:
        """RGB PIL image -> float32 [gh*gw, 3*tp*p*p]: :meth:`resize` then :meth:`patchify`, in bands.

        Pillow's passes run as one-sided resizes in Pillow's order (``vertical_first``: the rule
        of the installed Pillow). Every pass but the last is done in bands and pasted together.
        The last pass is cut into bands of whole merge blocks (rows of them for a horizontal pass
        or no pass, columns for a vertical pass), and each band is resized and patchified by one
        job: the bands go through the pool side by side and are never assembled.
        """
        width, height = self._size(image)
        gh, gw = height // self.patch_size, width // self.patch_size
        channels = len(image.getbands())
        pool = _pool(threads)
        if pool is None:  # one thread: Pillow's own two passes, then the patches
            out = self._empty_patches(gh, gw, channels)
            self._patchify_into(np.asarray(self.resize(image) if self.do_resize else image), out)
            return out.reshape(gh * gw, -1)
        unit = self.patch_size * self.merge_size  # pixels per merge block side
        passes = []
        if width != image.width:
            passes.append("horizontal")
        if height != image.height:
            passes.append("vertical")
        if len(passes) == 2 and vertical_first(image.height, image.width, height, width):
            passes.reverse()
        bands = _bands_per_thread(image.width * image.height) * threads
        if len(passes) == 2:
            if passes[0] == "horizontal":  # rows are independent: bands of rows
                cuts = [(0, y0, image.width, y1) for y0, y1 in _split(image.height, bands)]
                image = self._resize_cuts(image, (width, image.height), cuts, pool)
            else:  # columns are independent: bands of columns
                cuts = [(x0, 0, x1, image.height) for x0, x1 in _split(image.width, bands)]
                image = self._resize_cuts(image, (image.width, height), cuts, pool)
        last = passes[-1] if passes else None
        out = self._empty_patches(gh, gw, channels)

        def band(span: tuple[int, int]) -> None:
            a, b = span  # merge-block columns (vertical last pass) or rows (otherwise)
            if last == "vertical":
                box = (a * unit, 0, b * unit, image.height)
                part = (out[:, a:b], (box[2] - box[0], height))
            else:
                box = (0, a * unit, image.width, b * unit)
                part = (out[a:b], (width, box[3] - box[1]))
            piece = image if box == (0, 0) + image.size else image.crop(box)
            if last is not None:
                piece = piece.resize(part[1], PIL.Image.Resampling.BICUBIC)
            self._patchify_into(np.asarray(piece), part[0])

        _run(pool, band, _split(gw // self.merge_size if last == "vertical" else gh // self.merge_size, bands))
        return out.reshape(gh * gw, -1)

    def _check_size(self, height: int, width: int) -> None:
        unit = self.patch_size * self.merge_size
        if not self.do_resize and (height % unit or width % unit):
            raise ValueError(f"with do_resize=False the image's sides must be multiples of patch_size * merge_size "
                             f"= {unit}, got {height}x{width}")

    def _torchvision_pixel_values(self, image: Any) -> tuple[torch.Tensor, int, int]:
        """HF's ``Qwen2VLImageProcessor`` on CPU: torchvision's uint8 antialiased bicubic resize, then
        its rescale/normalize (fused: ``(x - mean/f) / (std/f)`` in float32), then the patches.
        Returns (pixel_values [gh*gw, C*tp*p*p], height, width)."""
        tvF = _torchvision()
        chw = _uint8_chw(image, self.do_convert_rgb)  # uint8 [C, H, W]
        self._check_size(chw.shape[1], chw.shape[2])
        if self.do_resize:
            height, width = smart_resize(chw.shape[1], chw.shape[2], self.patch_size * self.merge_size,
                                         self.min_pixels, self.max_pixels)
            chw = tvF.resize(chw, [height, width], interpolation=tvF.InterpolationMode.BICUBIC, antialias=True)
        height, width = chw.shape[1:]
        if self.do_rescale or self.do_normalize:  # per level: the table holds HF's own results
            out = self._empty_patches(height // self.patch_size, width // self.patch_size, chw.shape[0])
            self._patchify_into(chw.permute(1, 2, 0).numpy(), out)
            return torch.from_numpy(out.reshape(out.shape[0] * out.shape[1] * out.shape[2] * out.shape[3], -1)), \
                height, width
        # neither: HF keeps uint8 values
        p, m, tp, c = self.patch_size, self.merge_size, self.temporal_patch_size, chw.shape[0]
        gh, gw = height // p, width // p
        patches = chw.reshape(c, gh // m, m, p, gw // m, m, p).permute(1, 4, 2, 5, 0, 3, 6)
        patches = patches.unsqueeze(5).expand(-1, -1, -1, -1, -1, tp, -1, -1)
        return patches.reshape(gh * gw, c * tp * p * p), height, width

    @staticmethod
    def _resize_cuts(image, size, cuts, pool) -> PIL.Image.Image:
        """One pass (``size`` differs from ``image.size`` on one side only), band by band."""
        horizontal = size[1] == image.height

        def one(box):
            x0, y0, x1, y1 = box
            band_size = (size[0], y1 - y0) if horizontal else (x1 - x0, size[1])
            return image.crop(box).resize(band_size, PIL.Image.Resampling.BICUBIC)

        out = PIL.Image.new(image.mode, size, None)  # not filled: every pixel is pasted below
        for box, band in zip(cuts, _run(pool, one, cuts)):
            out.paste(band, (0, box[1]) if horizontal else (box[0], 0))
        return out

    def __call__(self, sample: Mapping[str, Any], inference: bool = False) -> dict:
        """``sample["image"]`` -> a new dict: the sample's keys plus ``pixel_values`` and ``image_grid_thw``.

        Args:
            sample (Mapping): holds ``"image"``; every other key is passed through.
            inference (bool): accepted for torchtune's transform protocol (model transforms pass it
                to each part). This transform has no training-only step (no augmentation, no
                random crop): the output is the same either way, the image kept in the sample.
        """
        if "image" not in sample:
            raise KeyError("sample has no 'image'")
        if self.backend == "torchvision":
            pixel_values, height, width = self._torchvision_pixel_values(sample["image"])
        else:
            image = _to_pil(sample["image"])
            image = _convert_rgb(image) if self.do_convert_rgb else image
            image.load()  # decoded once, before any thread reads it
            self._check_size(image.height, image.width)
            threads = torch.get_num_threads() if image.width * image.height >= _MIN_PARALLEL_PIXELS else 1
            width, height = self._size(image)
            pixel_values = torch.from_numpy(self._pixel_values(image, threads))  # resize + patchify
        if self.dtype is not None:
            pixel_values = pixel_values.to(self.dtype)
        grid = [[1, height // self.patch_size, width // self.patch_size]]
        out = dict(sample)
        out["pixel_values"] = pixel_values
        out["image_grid_thw"] = torch.tensor(grid, dtype=torch.int64)
        return out
