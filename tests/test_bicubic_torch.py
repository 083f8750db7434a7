"""resize_bicubic_torch == torchvision's uint8 antialiased BICUBIC resize on CPU, bit for bit.

The expected bytes come from torchvision itself (``transforms.v2.functional.resize`` on a uint8
[C, H, W] tensor, as HF's default image processor calls it). torch picks its kernel by CPU
capability: the in-process run uses this machine's; the slow test reruns torchvision in
subprocesses with ``ATEN_CPU_CAPABILITY=default`` (the generic C++ loop) and ``avx2`` (the
AVX2 kernel), so both code paths are held to the same bytes.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from reference import resize_bicubic_torch
from reference.bicubic_torch import int16_coefficients

SEED = 20240514


def torchvision_resize(image, height, width):
    """uint8 [H, W(, C)] -> torchvision's bytes as uint8 [height, width(, C)].

    torch 2.15's AVX2 kernel trips an internal assert for a 1x1 output of a 3- or 4-channel
    channels-first tensor (the output counts as channels-last, the input does not); that case
    is asked again with a channels-last input, which the same kernel takes (same weights, same
    sums). The generic kernel (slow test below) takes those sizes channels-first.
    """
    chw = torch.from_numpy(np.ascontiguousarray(image[:, :, None] if image.ndim == 2 else image)).permute(2, 0, 1)
    resize = lambda t: F.resize(t, [height, width], InterpolationMode.BICUBIC, antialias=True)  # noqa: E731
    try:
        out = resize(chw.contiguous())
    except RuntimeError as error:
        if (height, width) != (1, 1) or "INTERNAL ASSERT" not in str(error):
            raise
        out = resize(chw[None].contiguous(memory_format=torch.channels_last))[0]
    out = out.permute(1, 2, 0).numpy()
    return out[:, :, 0] if image.ndim == 2 else out


def random_cases(rng, count, max_side):
    """Seeded (h, w, out_h, out_w, channels): up, down, one axis only, mixed, 1-pixel sides."""
    cases = []
    for index in range(count):
        kind = index % 5
        h, w = (int(v) for v in rng.integers(1, max_side + 1, 2))
        if kind == 0:  # upscale both axes
            oh, ow = h + int(rng.integers(0, max_side)), w + int(rng.integers(0, max_side))
        elif kind == 1:  # downscale both axes
            oh, ow = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
        elif kind == 2:  # one axis only
            oh, ow = (h, int(rng.integers(1, 2 * max_side))) if rng.integers(2) else (int(rng.integers(1, 2 * max_side)), w)
        elif kind == 3:  # anything
            oh, ow = (int(v) for v in rng.integers(1, 2 * max_side, 2))
        else:  # a 1-pixel side, in or out
            oh, ow = (int(v) for v in rng.integers(1, 2 * max_side, 2))
            which = int(rng.integers(4))
            h, w, oh, ow = [1 if i == which else v for i, v in enumerate((h, w, oh, ow))]
        cases.append((h, w, oh, ow, int(rng.choice([1, 3, 4]))))
    return cases


def image_for(rng, h, w, channels):
    return rng.integers(0, 256, (h, w, channels), dtype=np.uint8)


def test_thousands_of_random_sizes_bit_exact():
    rng = np.random.default_rng(SEED)
    cases = random_cases(rng, 2000, 48)
    mismatches = []
    for h, w, oh, ow, c in cases:
        image = image_for(rng, h, w, c)
        got, want = resize_bicubic_torch(image, oh, ow), torchvision_resize(image, oh, ow)
        if got.shape != want.shape or not np.array_equal(got, want):
            mismatches.append((h, w, oh, ow, c))
    assert not mismatches, f"{len(mismatches)} of {len(cases)} sizes differ from torchvision, e.g. {mismatches[:5]}"


@pytest.mark.parametrize("h, w, oh, ow, c", [
    (1, 500, 3, 7, 3), (500, 1, 9, 2, 3), (1, 500, 1, 28, 1), (500, 1, 56, 1, 4),  # extreme ratios
    (2, 2, 300, 300, 3), (3, 5, 400, 37, 4), (1, 1, 64, 9, 3),  # small -> large
    (400, 300, 1, 1, 3), (311, 7, 2, 3, 1), (640, 480, 28, 28, 3),  # large -> tiny
    (480, 640, 476, 644, 3),  # near 1: the widest int16 precision choice
    pytest.param(1500, 2000, 1512, 1988, 3, marks=pytest.mark.slow),  # 2000x1500 as HF resizes it
])
def test_extreme_and_named_sizes(h, w, oh, ow, c):
    image = image_for(np.random.default_rng(h * 7919 + w), h, w, c)
    np.testing.assert_array_equal(resize_bicubic_torch(image, oh, ow), torchvision_resize(image, oh, ow))


@pytest.mark.slow
def test_photo_size_halved():
    """3024x4032 -> 1512x2016 (a phone photo), once."""
    image = image_for(np.random.default_rng(3), 3024, 4032, 3)
    np.testing.assert_array_equal(resize_bicubic_torch(image, 1512, 2016), torchvision_resize(image, 1512, 2016))


def test_gray_hw_is_one_channel():
    image = np.random.default_rng(5).integers(0, 256, (37, 53), dtype=np.uint8)
    got = resize_bicubic_torch(image, 20, 90)
    assert got.shape == (20, 90)
    np.testing.assert_array_equal(got, torchvision_resize(image, 20, 90))


def test_same_size_is_an_equal_copy():
    image = np.random.default_rng(6).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    out = resize_bicubic_torch(image, 9, 11)
    np.testing.assert_array_equal(out, torchvision_resize(image, 9, 11))
    assert out is not image and not np.shares_memory(out, image)


def test_precision_is_adaptive_and_weights_fit_int16():
    """The fraction bits follow the largest weight: more when shrinking hard (small weights)."""
    for in_size, out_size in [(10, 1000), (1000, 999), (1000, 10), (5000, 1)]:
        _, weights, p = int16_coefficients(in_size, out_size)
        assert 0 < p <= 22 and np.abs(weights).max() < 2**15
        # each live row sums to about 2^p (rounding of each tap moves it by at most 1/2)
        assert np.all(np.abs(weights.sum(axis=1) - 2**p) <= weights.shape[1])
    assert int16_coefficients(5000, 1)[2] > int16_coefficients(10, 1000)[2]


@pytest.mark.parametrize("image, height, width, message", [
    (np.zeros((4, 4), np.float32), 2, 2, "resize_bicubic_torch: image must be uint8, got dtype float32"),
    (np.zeros((4, 4, 5), np.uint8), 2, 2, "got shape (4, 4, 5)"),
    (np.zeros((0, 4, 3), np.uint8), 2, 2, "must not be empty"),
    (np.zeros((4, 4, 3), np.uint8), 0, 2, "height must be a positive integer, got 0"),
    (np.zeros((4, 4, 3), np.uint8), 2, 2.5, "width must be a positive integer, got 2.5"),
])
def test_bad_input_is_refused_by_name(image, height, width, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resize_bicubic_torch(image, height, width)


_SUBPROCESS = """
import json, sys
import numpy as np, torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F
cases, seed = json.loads(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(seed)
outs = {}
for i, (h, w, oh, ow, c) in enumerate(cases):
    image = torch.from_numpy(rng.integers(0, 256, (h, w, c), dtype=np.uint8)).permute(2, 0, 1).contiguous()
    try:
        out = F.resize(image, [oh, ow], InterpolationMode.BICUBIC, antialias=True)
    except RuntimeError:  # the AVX2 kernel's 1x1 assert (see torchvision_resize): ask channels-last
        if (oh, ow) != (1, 1):
            raise
        image = image[None].contiguous(memory_format=torch.channels_last)
        out = F.resize(image, [oh, ow], InterpolationMode.BICUBIC, antialias=True)[0]
    outs[str(i)] = out.permute(1, 2, 0).numpy()
np.savez(sys.argv[3], capability=np.array(torch.backends.cpu.get_cpu_capability()), **outs)
"""


@pytest.mark.slow
@pytest.mark.parametrize("capability", ["default", pytest.param("avx2", marks=pytest.mark.hardware("avx2"))])
def test_generic_and_avx2_kernels_give_the_same_bytes(capability, tmp_path):
    """torchvision under ATEN_CPU_CAPABILITY=<capability> == resize_bicubic_torch.

    ``default`` compiles UpSampleKernel.cpp without CPU_CAPABILITY_AVX2, so uint8 antialiased
    bicubic runs the generic separable loop (``basic_loop_aa_horizontal/vertical<uint8_t>``);
    ``avx2`` runs ``upsample_avx_bilinear_bicubic_uint8`` (C <= 4).
    """
    rng = np.random.default_rng(SEED + 1)
    cases = random_cases(rng, 250, 40) + [(1, 500, 3, 7, 3), (500, 1, 9, 2, 4), (2, 2, 300, 300, 3),
                                          (480, 640, 476, 644, 3), (300, 400, 28, 28, 1), (5, 4, 1, 1, 3)]
    image_seed = 11
    path = tmp_path / "out.npz"
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability)
    subprocess.run([sys.executable, "-c", _SUBPROCESS, json.dumps(cases), str(image_seed), str(path)],
                   check=True, env=env, timeout=300)
    with np.load(path) as outs:
        if capability == "avx2" and str(outs["capability"]) != "AVX2":
            pytest.skip(f"this CPU cannot run torch's AVX2 kernels (got {outs['capability']})")
        assert str(outs["capability"]) == capability.upper()
        images = np.random.default_rng(image_seed)
        column_cases = 0
        for i, (h, w, oh, ow, c) in enumerate(cases):
            image = images.integers(0, 256, (h, w, c), dtype=np.uint8)
            want = resize_bicubic_torch(image, oh, ow)
            if capability == "default" and ow == 1 and oh != h:
                # torch's generic loop repeats output row 0 down a 1-pixel-wide column when it
                # resamples the height (a torch bug; HF never resizes to a side under 28 px)
                want, column_cases = np.repeat(want[:1], oh, axis=0), column_cases + 1
            np.testing.assert_array_equal(want, outs[str(i)], err_msg=f"case {(h, w, oh, ow, c)} under {capability}")
        assert capability == "avx2" or column_cases > 0  # the bug's cases were exercised
