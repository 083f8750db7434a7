"""The image transform where torchtune runs it: inside the workers of a torch ``DataLoader``.

A map-style dataset of ``images`` PIL photos (640x480 by default, ``measure.make_image`` with one seed
each) whose ``__getitem__`` runs one implementation on one image: the port's
``Qwen2_5_VLImageTransform`` and HF's processor of the same backend (``Qwen2VLImageProcessorPil``
for "pil", ``Qwen2VLImageProcessor`` for "torchvision"). ``DataLoader(num_workers=2,
batch_size=None, persistent_workers=True)``: one warm-up epoch each (workers start, caches fill),
then ``rounds`` rounds of one timed epoch per implementation, taking turns; each row is the median
epoch's wall time per image, which includes handing
each ``pixel_values`` back to the main process (the same 7 MB per 640x480 image for every
implementation); rows marked "no transfer" hand back only the row count, so they time the
transforms alone, two at a time. The workers keep torch's default there (1 thread each); the
main process only receives.

    uv run benchmarks/dataloader.py               # 640x480, 48 images, 3 rounds
    uv run benchmarks/dataloader.py --quick       # 64x48, 8 images, 1 round
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import measure
from preprocess_bench import HF_BASELINE, row


class _Images:
    """A map-style dataset: item i is ``fn(images[i])``, the ``pixel_values`` as a tensor (``transfer``)
    or only their number of rows (the transform's own time, without handing 7 MB back per image)."""

    def __init__(self, images, fn, transfer=True):
        self.images, self.fn, self.transfer = images, fn, transfer

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        pixel_values = self.fn(self.images[index])
        return pixel_values if self.transfer else int(pixel_values.shape[0])


def implementations(backends=("pil", "torchvision")) -> dict:
    """(name, backend) -> fn(PIL image) -> pixel_values tensor: the port next to HF's class of its backend."""
    import torch

    from goldenlib.hf_image import hf_processor
    from torch_port import Qwen2_5_VLImageTransform

    max_pixels = measure.MAX_PIXELS
    impls = {}
    if "pil" in backends:
        port = Qwen2_5_VLImageTransform(max_pixels=max_pixels)
        hf_pil = hf_processor(3136, max_pixels)
        impls[("HF Qwen2VLImageProcessorPil", "pil")] = lambda im: torch.from_numpy(
            hf_pil(images=[im], return_tensors="np")["pixel_values"])
        impls[("port Qwen2_5_VLImageTransform", "pil")] = lambda im: port({"image": im})["pixel_values"]
    if "torchvision" in backends:
        try:
            from transformers import Qwen2VLImageProcessor
            from transformers.utils import is_torchvision_available
        except ImportError:
            return impls
        if is_torchvision_available():
            port_tv = Qwen2_5_VLImageTransform(max_pixels=max_pixels, backend="torchvision")
            hf_tv = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=max_pixels)
            impls[("HF Qwen2VLImageProcessor", "torchvision")] = lambda im: hf_tv(
                images=[im], return_tensors="pt")["pixel_values"]
            impls[("port Qwen2_5_VLImageTransform", "torchvision")] = lambda im: port_tv({"image": im})["pixel_values"]
    return impls


def epoch_seconds(loader) -> tuple[float, int]:
    t0 = time.perf_counter()
    patches = sum(item if isinstance(item, int) else int(item.shape[0]) for item in loader)
    return time.perf_counter() - t0, patches


def dataloader_section(width: int = 640, height: int = 480, images: int = 48, rounds: int = 3,
                       workers: int = 2, impls: dict | None = None, transfer: bool = True) -> list[dict]:
    """Rows in run.py's preprocessing-table form: ms per image in a ``workers``-worker DataLoader,
    ratio to HF's processor of the same backend, and whether pixel_values are bit-equal to it.
    ``transfer`` False: the workers hand back only each image's row count (the transforms alone)."""
    import numpy as np
    import PIL.Image
    import torch
    from torch.utils.data import DataLoader

    warnings.simplefilter("ignore")
    impls = implementations() if impls is None else impls
    photos = [PIL.Image.fromarray(measure.make_image(width, height, seed=i)) for i in range(images)]
    outputs = {key: fn(photos[0]) for key, fn in impls.items()}  # in this process: the exactness check
    loaders = {key: DataLoader(_Images(photos, fn, transfer), batch_size=None, shuffle=False, num_workers=workers,
                               persistent_workers=workers > 0) for key, fn in impls.items()}
    for loader in loaders.values():
        epoch_seconds(loader)  # warm-up: workers start, tables made there; they then wait, idle
    times = {key: [] for key in impls}
    for _ in range(rounds):  # rounds over the implementations: a load change hits all of them alike
        for key, loader in loaders.items():
            times[key].append(epoch_seconds(loader)[0] / images)
    del loaders  # the workers stop
    setting = f"DataLoader x{workers}{'' if transfer else ', no transfer'}"
    rows = []
    for (name, backend) in impls:
        base = (HF_BASELINE[backend], backend)
        got, want = outputs[(name, backend)], outputs[base]
        exact = "bit-exact" if got.shape == want.shape and torch.equal(got, want) else (
            f"max abs diff {np.abs(got.double().numpy() - want.double().numpy()).max():.3g}")
        rows.append(row(f"{width}x{height}", int(want.shape[0]), name, backend, setting,
                        statistics.median(times[(name, backend)]), statistics.median(times[base]), exact, rounds))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="64x48, 8 images, 1 round: a smoke run")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-transfer", action="store_true", help="workers hand back row counts, not pixel_values")
    args = parser.parse_args(argv)
    size = (64, 48) if args.quick else (640, 480)
    load = os.getloadavg()[0]
    rows = dataloader_section(*size, images=args.images or (8 if args.quick else 48),
                              rounds=args.rounds or (1 if args.quick else 3), workers=args.workers,
                              transfer=not args.no_transfer)
    print(f"load average (1 min) {load:.2f} before, {os.getloadavg()[0]:.2f} after; {os.cpu_count()} cores")
    print("| image | patches | implementation | ms | x HF | vs | pixel values vs it |")
    print("|---|---:|---|---:|---:|---|---|")
    for r in rows:
        print(f"| {r['image']} | {r['patches']} | {r['impl']} | {r['ms']:.1f} | {r['ratio']:.2f} | {r['vs']} | "
              f"{r['exact']} |")


if __name__ == "__main__":
    main()
