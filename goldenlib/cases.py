"""The golden cases: inputs chosen to exercise each part of the image pipeline.

Every input is made here from a seed or cut from a committed photo (data/photos), so a
case can be rebuilt anywhere without the golden file.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PHOTOS = Path(__file__).resolve().parents[1] / "data" / "photos"


def photo(name):
    """A committed photo as uint8 [H, W, 3] (decoded with Pillow, via reference.io)."""
    from reference.io import load_image

    return load_image(PHOTOS / f"{name}.png")


@dataclass(frozen=True)
class ImageCase:
    name: str
    description: str
    make: callable  # () -> list of uint8 images
    params: dict = field(default_factory=dict)  # preprocess keyword arguments

    def images(self):
        return self.make()


def _checkerboard(height, width):
    y, x = np.indices((height, width))
    board = ((x + y) % 2 * 255).astype(np.uint8)
    return np.stack([board, 255 - board, board], axis=-1)


def _noise(height, width, seed, channels=3):
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _thin_lines(height, width):
    image = np.full((height, width, 3), 255, dtype=np.uint8)
    image[::7, :, :] = (0, 0, 0)  # one-pixel horizontal lines
    image[:, ::5, 0] = 0  # one-pixel vertical lines in red only
    image[:, 3::11, 2] = 40
    return image


def _gray(rgb):
    weights = np.array([299, 587, 114])
    return ((rgb.astype(np.int64) @ weights + 500) // 1000).astype(np.uint8)


def _rgba(height, width):
    rgb = photo("coffee")[50 : 50 + height, 80 : 80 + width]
    y, x = np.indices((height, width))
    alpha = (x * 255 // max(width - 1, 1)).astype(np.uint8)  # transparent -> opaque ramp
    alpha[: height // 4] = 0  # a fully transparent band
    alpha[-height // 4 :] = 255  # a fully opaque band
    alpha[y % 9 == 4] = 128  # half-transparent lines
    return np.dstack([rgb, alpha])


IMAGE_CASES = [
    ImageCase("photo_astronaut", "astronaut photo crop 130x130, upscaled to 140x140",
              lambda: [photo("astronaut")[40:170, 60:190]]),
    ImageCase("photo_chelsea", "cat photo 150x226, downscaled to 140x224 (both passes)",
              lambda: [photo("chelsea")]),
    ImageCase("photo_coffee", "coffee photo crop 120x170 -> 112x168",
              lambda: [photo("coffee")[40:160, 60:230]]),
    ImageCase("photo_rocket", "rocket photo crop 120x100 -> 112x112 (height shrinks, width grows)",
              lambda: [photo("rocket")[20:140, 100:200]]),
    ImageCase("checkerboard", "1-pixel checkerboard 90x120 -> 84x112: maximal aliasing",
              lambda: [_checkerboard(90, 120)]),
    ImageCase("noise", "uniform RGB noise 75x95 -> 84x84", lambda: [_noise(75, 95, seed=11)]),
    ImageCase("thin_lines", "1-pixel lines 130x61 -> 140x56", lambda: [_thin_lines(130, 61)]),
    ImageCase("tiny_upscaled", "10x12 noise, upscaled to min_pixels (56x84)",
              lambda: [_noise(10, 12, seed=12)]),
    ImageCase("exact_multiple", "56x112 noise: already a multiple of 28, no resize",
              lambda: [_noise(56, 112, seed=13)]),
    ImageCase("above_max_pixels", "210x280 photo crop with max_pixels 15680 -> downscaled to 84x112",
              lambda: [photo("rocket")[:210, :280]], {"max_pixels": 28 * 28 * 20}),
    ImageCase("aspect_1_150", "3x450 strip (aspect 1:150) -> 28x700",
              lambda: [_noise(3, 450, seed=14)]),
    ImageCase("tall_vertical_first", "290x50 -> 280x56: Pillow 13 runs the vertical pass first",
              lambda: [_noise(290, 50, seed=15)]),
    ImageCase("gray", "gray 2-D astronaut crop 97x131 -> 84x140", lambda: [_gray(photo("astronaut")[60:157, 70:201])]),
    ImageCase("rgba", "RGBA 70x90 with transparent, opaque and half-transparent parts, over white",
              lambda: [_rgba(70, 90)]),
    ImageCase("two_images", "two images in one call: cat crop 80x100 and noise 60x50",
              lambda: [photo("chelsea")[20:100, 40:140], _noise(60, 50, seed=16)]),
]
