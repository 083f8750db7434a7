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


def _normalize_table(mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """[C, 256] float32: HF's rescale then normalize of every uint8 level, per channel.

    Both act on each value alone, so one value per (channel, level) covers every image. Rescale:
    times 1/255 in float64, cast to float32; normalize: ``(x - mean) / std`` in float32.
    """
    levels = np.arange(256, dtype=np.float64) * (1 / 255)  # [256]
    mean = np.asarray(mean, dtype=np.float32)[:, None]
    std = np.asarray(std, dtype=np.float32)[:, None]
    return np.ascontiguousarray((levels.astype(np.float32)[None, :] - mean) / std)  # [C, 256]


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
    ):
        if min_pixels > max_pixels:
            raise ValueError(f"min_pixels ({min_pixels}) must not exceed max_pixels ({max_pixels})")
        if len(image_mean) != 3 or len(image_std) != 3:
            raise ValueError(f"image_mean and image_std need 3 values, got {image_mean} and {image_std}")
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.patch_size = patch_size
        self.merge_size = merge_size
        self.temporal_patch_size = temporal_patch_size
        self.image_mean = tuple(image_mean)
        self.image_std = tuple(image_std)
        self.dtype = dtype
        self._table_np = _normalize_table(image_mean, image_std)  # [3, 256] float32
        # The lookup works on units of the image's bytes: pairs of levels (uint16) where a patch
        # row has an even length, single levels otherwise; channel c's values start at c * width.
        if patch_size % 2 == 0:
            self._flat_table, self._unit = pair_table(self._table_np).reshape(-1), np.uint16
        else:
            self._flat_table, self._unit = self._table_np.reshape(-1), np.uint8
        width = self._flat_table.size // 3
        self._channel_offsets = np.broadcast_to(  # [C, tp, 1, 1]: the same offset in every time step
            (np.arange(3, dtype=np.intp) * width)[:, None, None, None], (3, temporal_patch_size, 1, 1))

    def resize(self, image: PIL.Image.Image) -> PIL.Image.Image:
        """RGB PIL image -> RGB PIL image of the ``smart_resize`` size (Pillow BICUBIC, uint8)."""
        return image.resize(self._size(image), PIL.Image.Resampling.BICUBIC)

    def _size(self, image: PIL.Image.Image) -> tuple[int, int]:
        height, width = smart_resize(
            image.height, image.width, self.patch_size * self.merge_size, self.min_pixels, self.max_pixels
        )
        return width, height

    def patchify(self, resized: torch.Tensor) -> torch.Tensor:
        """uint8 [H, W, 3] -> float32 [gh*gw, 3*tp*p*p], rows in 2x2 merge-block order."""
        resized = np.asarray(resized.numpy())
        gh, gw = resized.shape[0] // self.patch_size, resized.shape[1] // self.patch_size
        out = self._empty_patches(gh, gw)
        self._patchify_into(resized, out)
        return torch.from_numpy(out.reshape(gh * gw, -1))

    def _empty_patches(self, gh: int, gw: int) -> np.ndarray:
        p, m, tp = self.patch_size, self.merge_size, self.temporal_patch_size
        return np.empty((gh // m, gw // m, m, m, 3, tp, p, p), np.float32)

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
        rows, cols = out.shape[:2]
        step = max(1, _CHUNK_PIXELS // (m * p * cols * m * p)) if out.flags.c_contiguous else 1
        levels = np.empty((min(step, rows), cols, m, m, 3, p, p), np.uint8)
        units = levels.view(self._unit)  # [..., C, p, p or p/2]
        index = np.empty(units.shape[:5] + (self.temporal_patch_size,) + units.shape[5:], np.intp)
        values = out.view(self._flat_table.dtype)  # out's float32s, in the same units
        for r0 in range(0, rows, step):
            n = min(step, rows - r0)
            block = resized[r0 * m * p : (r0 + n) * m * p, : cols * m * p].reshape(n, m, p, cols, m, p, 3)
            levels[:n] = block.transpose(0, 3, 1, 4, 6, 2, 5)  # [n, cols, m, m, C, p, p]
            np.add(units[:n, :, :, :, :, None], self._channel_offsets, out=index[:n])
            np.take(self._flat_table, index[:n], out=values[r0 : r0 + n], mode="clip")  # contiguous: no copy

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
        pool = _pool(threads)
        if pool is None:  # one thread: Pillow's own two passes, then the patches
            out = self._empty_patches(gh, gw)
            self._patchify_into(np.asarray(self.resize(image)), out)
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
        out = self._empty_patches(gh, gw)

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
        image = _convert_rgb(_to_pil(sample["image"]))
        image.load()  # decoded once, before any thread reads it
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
