"""Every golden case in one registry (``CASES``), and the towers run on them (``TOWERS``).

A case is one ``Case`` entry; the generator, the parity checks, the report and the tests all
read this list, so adding a case is adding one entry:

* an IMAGE case (``kind="image"``): uint8 images through ``reference.preprocess``; stores every
  image stage, checked bit for bit against HF/Pillow, plus its ``towers`` run on ``pixel_values``;
* a TOWER case (``kind="tower"``): stores only ``pixel_values`` and its ``towers``; the input is
  either made directly (``inputs``: ``two_frames``) or preprocessed from an image (``make``:
  ``full_size_3b``, whose image stages the parity checks rebuild and HF-check on use);
* a SCENARIO (``stored=False``): never written to golden/, built in memory exactly as the
  generator would build it (the parity report's seed scenario);
* a POSITIONS case (``kind="positions"``): token ids with single vision placeholders, grids,
  ``second_per_grid_ts`` and an attention mask (``inputs``: a :class:`PositionInputs`); stores the
  expanded ids, their token types, the mRoPE ``position_ids`` and ``deltas``, and the text
  rotary's cos/sin for the small head (``ROTARY``), all cross-checked against HF.

Every input is made here from a seed or cut from a committed photo (data/photos), so a case can
be rebuilt anywhere without the golden file.

* a TORCHVISION image case: an image case with ``params={"backend": "torchvision"}`` (HF's default
  ``Qwen2VLImageProcessor``); stores ``reference.TORCHVISION_STAGES`` that ran, no towers (the
  towers' behaviour on image pixel values is covered by the PIL cases);
* a MODEL case (``kind="model"``): a tiny whole model (``goldenlib.model_folders.MODELS``) on a prompt
  with media (``inputs``: a :class:`goldenlib.model_goldens.ModelPrompt`); stores the image stages, the
  inputs, the tower's stages (``visual.``, ``visual_video.``), the positions and the language model's
  stages to the logits (``goldenlib.model_goldens``), cross-checked against HF's whole model;
* a VIDEO case (``kind="video"``): uint8 clips [T, H, W, 3] (``make``) through
  ``reference.preprocess_video`` (``params``: its keyword arguments); stores every video stage,
  ``pixel_values_videos``, ``video_grid_thw``, ``second_per_grid_ts``, checked bit for bit against
  ``Qwen2VLVideoProcessor``, plus its towers run on the video grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reference import PRESETS, VisionConfig

PHOTOS = Path(__file__).resolve().parents[1] / "data" / "photos"


def photo(name):
    """A committed photo as uint8 [H, W, 3] (decoded with Pillow, via reference.io)."""
    from reference.io import load_image

    return load_image(PHOTOS / f"{name}.png")


# ------------------------------------------------------------------ towers


@dataclass(frozen=True)
class Tower:
    """A vision tower the goldens run: its config and the seed of its ``reference.random_weights``."""

    name: str
    config: VisionConfig
    seed: int
    stored_weights: bool  # True: written to golden/weights_{name}.safetensors (tiny towers)

    def weights(self):
        import reference

        return reference.random_weights(self.config, seed=self.seed)


WEIGHT_SEED = 20251127
# Each tiny config has window blocks and full-attention blocks (a tiny depth that never
# reaches an index in fullatt_block_indexes would leave full attention untested).
TOWERS = {
    "tiny_a": Tower("tiny_a", VisionConfig(depth=4, hidden_size=64, num_heads=4, intermediate_size=96,
                                           out_hidden_size=48, window_size=112, fullatt_block_indexes=(1, 3)),
                    seed=WEIGHT_SEED, stored_weights=True),
    "tiny_b": Tower("tiny_b", VisionConfig(depth=3, hidden_size=48, num_heads=2, intermediate_size=80,
                                           out_hidden_size=32, window_size=56, fullatt_block_indexes=(0,)),
                    seed=WEIGHT_SEED + 1, stored_weights=True),
    "3b": Tower("3b", PRESETS["3b"], seed=0, stored_weights=False),
}
TINY = ("tiny_a", "tiny_b")

# ------------------------------------------------------------------ cases


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    make: callable = None  # () -> list of uint8 images (None: a tower case made by ``inputs``)
    params: dict = field(default_factory=dict)  # preprocess keyword arguments
    kind: str = "image"  # "image": image stages + towers; "tower": pixel_values + towers only; "positions"; "video"
    inputs: callable = None  # () -> (pixel_values, grid_thw) for a tower case without an image; () -> PositionInputs
    towers: tuple = TINY  # names in TOWERS run on the case's pixel_values
    blocks: tuple | None = None  # blocks whose stages are kept (None: every block)
    tower_dtype: str = "float64"  # dtype the tower stages are stored in (always computed in float64)
    attention: tuple = ("sdpa", "eager")  # HF attention implementations the towers are cross-checked with
    stored: bool = True  # False: a scenario, built in memory only
    metadata: dict = field(default_factory=dict)  # extra entries of the golden file's metadata

    def images(self):
        return self.make()

    def keeps(self, stage):
        """Whether tower stage ``stage`` is stored (all but the blocks outside ``blocks``)."""
        if self.blocks is None or not stage.startswith("blocks."):
            return True
        return int(stage.split(".")[1]) in self.blocks


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


def two_frame_input(seed=7, grid=(2, 4, 8)):
    """A two-frame input (grid_t = 2): two different frames' patches, pixel_values-like values."""
    t, h, w = grid
    rng = np.random.default_rng(seed)
    pixel_values = rng.standard_normal((t * h * w, 3 * 2 * 14 * 14)).astype(np.float32)
    return pixel_values, np.array([grid], dtype=np.int64)


# ------------------------------------------------------------------ positions

# Qwen2.5-VL's special token ids (the released tokenizer's); text tokens are drawn below them.
IMAGE_PAD, VIDEO_PAD, VISION_START, VISION_END, PAD = 151655, 151656, 151652, 151653, 151643
# The text rotary of the positions goldens: a small head (8 frequencies split 2/3/3 over T/H/W),
# the released theta; positions come from the released merge size and tokens_per_second.
ROTARY = {"head_dim": 16, "mrope_section": [2, 3, 3], "rope_theta": 1e6}
POSITION_PARAMS = {"spatial_merge_size": 2, "tokens_per_second": 2}


@dataclass(frozen=True)
class PositionInputs:
    """The inputs of a positions case, before placeholder expansion (NumPy arrays; None: absent)."""

    input_ids: np.ndarray  # int64 [b, s]: one IMAGE_PAD / VIDEO_PAD per image / video
    image_grid_thw: np.ndarray | None = None  # int64 [n_images, 3]
    video_grid_thw: np.ndarray | None = None  # int64 [n_videos, 3]
    second_per_grid_ts: np.ndarray | None = None  # float64 [n_videos]
    attention_mask: np.ndarray | None = None  # int64 [b, S], over the EXPANDED ids (what get_rope_index reads)

    def arrays(self):
        """The inputs present, by the name they are stored under."""
        return {name: value for name, value in vars(self).items() if value is not None}


def _tokens(layout, seed):
    """One row of ids from a layout: ints are runs of random text tokens, "image"/"video" a
    placeholder between <|vision_start|> and <|vision_end|>, "pad" a pad token."""
    rng = np.random.default_rng(seed)
    row = []
    for part in layout:
        if part == "pad":
            row.append(PAD)
        elif part in ("image", "video"):
            row += [VISION_START, IMAGE_PAD if part == "image" else VIDEO_PAD, VISION_END]
        else:
            row += rng.integers(0, VISION_START - 100, part).tolist()
    return row


def _positions(layouts, images=None, videos=None, seconds=None, seed=0, masked=False):
    """PositionInputs of rows ``layouts`` (equal length once expanded; see ``_tokens``). ``masked``:
    the attention mask is 0 exactly at the pad tokens of the expanded rows."""
    rows = np.array([_tokens(layout, seed + i) for i, layout in enumerate(layouts)], dtype=np.int64)
    image_grid = None if images is None else np.array(images, dtype=np.int64)
    video_grid = None if videos is None else np.array(videos, dtype=np.int64)
    mask = None
    if masked:  # the pads stay pads after expansion: mark them in the expanded row
        merge = POSITION_PARAMS["spatial_merge_size"] ** 2
        grids = iter(list(image_grid if image_grid is not None else []))
        vgrids = iter(list(video_grid if video_grid is not None else []))
        mask = []
        for row in rows:
            expanded = []
            for token in row:
                if token in (IMAGE_PAD, VIDEO_PAD):
                    expanded += [1] * int(np.prod(next(grids if token == IMAGE_PAD else vgrids)) // merge)
                else:
                    expanded.append(0 if token == PAD else 1)
            mask.append(expanded)
        mask = np.array(mask, dtype=np.int64)
    return PositionInputs(rows, image_grid, video_grid,
                          None if seconds is None else np.array(seconds, dtype=np.float64), mask)


def _clip(seed, frames, height, width):
    return np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


def _panning(frames, height, width, step=6):
    """A camera pan over the cat photo: every frame differs (shifted ``step`` pixels right)."""
    cat = photo("chelsea")
    return np.stack([cat[10:10 + height, step * i:step * i + width] for i in range(frames)])


def _model_prompt(model, prompt, images=(), videos=()):
    from .model_goldens import ModelPrompt

    return ModelPrompt(model, prompt, tuple(images), tuple(videos))


TORCHVISION = {"backend": "torchvision"}
# Video goldens use small per-frame bounds (HF's video defaults, 100352 .. 602112 pixels a frame,
# would make each case megabytes); the defaults themselves are tested against HF in test_video.py.
VIDEO_SMALL = {"min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 12}

# Full-size stages kept: every 8th block (0, 8, 16, 24), the last (31), the full-attention
# block 7, and the block before each of 7, 8, 16, 24, 31 so that each can be teacher-forced.
FULL_BLOCKS = (0, 6, 7, 8, 15, 16, 23, 24, 30, 31)

CASES = [
    Case("photo_astronaut", "astronaut photo crop 130x130, upscaled to 140x140",
         lambda: [photo("astronaut")[40:170, 60:190]]),
    Case("photo_chelsea", "cat photo 150x226, downscaled to 140x224 (both passes)",
         lambda: [photo("chelsea")]),
    Case("photo_coffee", "coffee photo crop 120x170 -> 112x168",
         lambda: [photo("coffee")[40:160, 60:230]]),
    Case("photo_rocket", "rocket photo crop 120x100 -> 112x112 (height shrinks, width grows)",
         lambda: [photo("rocket")[20:140, 100:200]]),
    Case("checkerboard", "1-pixel checkerboard 90x120 -> 84x112: maximal aliasing",
         lambda: [_checkerboard(90, 120)]),
    Case("noise", "uniform RGB noise 75x95 -> 84x84", lambda: [_noise(75, 95, seed=11)]),
    Case("thin_lines", "1-pixel lines 130x61 -> 140x56", lambda: [_thin_lines(130, 61)]),
    Case("tiny_upscaled", "10x12 noise, upscaled to min_pixels (56x84)",
         lambda: [_noise(10, 12, seed=12)]),
    Case("exact_multiple", "56x112 noise: already a multiple of 28, no resize",
         lambda: [_noise(56, 112, seed=13)]),
    Case("above_max_pixels", "210x280 photo crop with max_pixels 15680 -> downscaled to 84x112",
         lambda: [photo("rocket")[:210, :280]], {"max_pixels": 28 * 28 * 20}),
    Case("aspect_1_150", "3x450 strip (aspect 1:150) -> 28x700",
         lambda: [_noise(3, 450, seed=14)]),
    Case("tall_vertical_first", "290x50 -> 280x56: Pillow 13 runs the vertical pass first",
         lambda: [_noise(290, 50, seed=15)]),
    Case("gray", "gray 2-D astronaut crop 97x131 -> 84x140", lambda: [_gray(photo("astronaut")[60:157, 70:201])]),
    Case("rgba", "RGBA 70x90 with transparent, opaque and half-transparent parts, over white",
         lambda: [_rgba(70, 90)]),
    Case("two_images", "two images in one call: cat crop 80x100 and noise 60x50",
         lambda: [photo("chelsea")[20:100, 40:140], _noise(60, 50, seed=16)]),
    Case("two_frames", "two different frames (grid_t = 2), random values", kind="tower",
         inputs=two_frame_input, metadata={"seed": 7}),
    # Resized (90x150 -> 84x140, both bicubic passes) so that interpolation variants show on the full tower.
    Case("full_size_3b", "full-size 3B tower on photo crop 90x150 resized to 84x140 (merged grid 3x5: not a "
         "multiple of the 4x4 window)", lambda: [photo("coffee")[60:150, 80:230]], kind="tower", towers=("3b",),
         blocks=FULL_BLOCKS, tower_dtype="float32", attention=("sdpa",),
         metadata={"seed": 0, "weights": "reference.random_weights(PRESETS['3b'], seed), not stored",
                   "stage_prefix": "3b."}),
    # mRoPE positions (HF 5.x get_rope_index) and the text rotary's cos/sin (see golden/README.md).
    Case("pos_text_image", "text, one image (grid 1x6x8: 12 tokens), text", kind="positions", towers=(),
         inputs=lambda: _positions([[5, "image", 4]], images=[[1, 6, 8]], seed=101)),
    Case("pos_two_images", "two images of different grids (1x4x8 wide, 1x6x4 tall) with text between",
         kind="positions", towers=(),
         inputs=lambda: _positions([[3, "image", 2, "image", 3]], images=[[1, 4, 8], [1, 6, 4]], seed=102)),
    Case("pos_image_video", "an image (1x4x4) then a video (4x4x6, second_per_grid_ts 1.25: time step 2.5, "
         "truncated to 0, 2, 5, 7)", kind="positions", towers=(),
         inputs=lambda: _positions([[4, "image", 2, "video", 3]], images=[[1, 4, 4]], videos=[[4, 4, 6]],
                                   seconds=[1.25], seed=103)),
    Case("pos_video_t3", "a video only (grid_t = 3, 3x4x4, second_per_grid_ts 1.0), text after it: the text "
         "positions differ between transformers 4.x and 5.x", kind="positions", towers=(),
         inputs=lambda: _positions([[2, "video", 2]], videos=[[3, 4, 4]], seconds=[1.0], seed=104)),
    Case("pos_left_padded", "a left-padded batch of 2 with attention_mask: row 0 has 4 pads and a 1x4x8 image, "
         "row 1 a 1x8x4 image (as many tokens, other positions): the grids come from one list shared by the "
         "batch", kind="positions", towers=(),
         inputs=lambda: _positions([["pad"] * 4 + [3, "image", 2], [7, "image", 2]], images=[[1, 4, 8], [1, 8, 4]],
                                   seed=105, masked=True)),
    # HF's default image processor (torchvision backend): torch's uint8 bicubic + the fused float32 step.
    Case("tv_photo_astronaut", "torchvision backend: astronaut crop 130x130 -> 140x140",
         lambda: [photo("astronaut")[40:170, 60:190]], TORCHVISION, towers=()),
    Case("tv_photo_chelsea", "torchvision backend: cat photo 150x226 -> 140x224 (both passes)",
         lambda: [photo("chelsea")], TORCHVISION, towers=()),
    Case("tv_photo_coffee", "torchvision backend: coffee crop 120x170 -> 112x168",
         lambda: [photo("coffee")[40:160, 60:230]], TORCHVISION, towers=()),
    Case("tv_photo_rocket", "torchvision backend: rocket crop 120x100 -> 112x112 (height shrinks, width grows)",
         lambda: [photo("rocket")[20:140, 100:200]], TORCHVISION, towers=()),
    Case("tv_upscale", "torchvision backend: 10x12 noise upscaled to min_pixels (56x84)",
         lambda: [_noise(10, 12, seed=12)], TORCHVISION, towers=()),
    Case("tv_one_axis", "torchvision backend: 56x100 noise -> 56x112 (only the width pass runs)",
         lambda: [_noise(56, 100, seed=17)], TORCHVISION, towers=()),
    Case("tv_aspect_1_150", "torchvision backend: 3x450 strip (aspect 1:150) -> 28x700",
         lambda: [_noise(3, 450, seed=14)], TORCHVISION, towers=()),
    # Video (Qwen2VLVideoProcessor, torchvision); tiny towers on the video grids.
    Case("video_1_frame", "1 frame 60x90 -> 56x84, padded to 2 frames (grid_t 1)",
         lambda: [_clip(30, 1, 60, 90)], VIDEO_SMALL, kind="video"),
    Case("video_5_frames", "5 frames 50x70 -> 56x84, the last repeated: grid_t 3",
         lambda: [_clip(31, 5, 50, 70)], VIDEO_SMALL, kind="video"),
    Case("video_panning", "4 different frames (a pan over the cat photo) 64x96 -> 56x84",
         lambda: [_panning(4, 64, 96)], VIDEO_SMALL, kind="video"),
    Case("video_fps_sampling", "30 frames at 30 fps, sampled at fps 2 (min_frames 4: frames 0, 7, 15, 22), "
         "48x64 -> 56x84; second_per_grid_ts 2 / 4 fps = 0.5",
         lambda: [_clip(32, 30, 48, 64)], {**VIDEO_SMALL, "do_sample_frames": True, "fps": 2, "video_fps": 30},
         kind="video"),
    # Whole models (goldenlib.model_goldens): tiny random Qwen2.5-VL models, tied and untied, to the logits.
    # Small inputs on purpose (golden/ has a size budget): 56x56 images, short prompts.
    Case("lm_one_image", "tiny tied model (lm_tied): a 50x50 photo crop -> 56x56 (4 merged tokens) and a question",
         kind="model", towers=(),
         inputs=lambda: _model_prompt("lm_tied", "Describe it.", images=[photo("chelsea")[40:90, 60:110]])),
    Case("lm_two_images", "tiny untied model (lm_untied): two images (cat crop 50x50 -> 56x56, noise 40x70 -> "
         "56x84) with text between", kind="model", towers=(),
         inputs=lambda: _model_prompt("lm_untied", "<|vision_start|><|image_pad|><|vision_end|> or "
                                      "<|vision_start|><|image_pad|><|vision_end|>: cat?",
                                      images=[photo("chelsea")[20:70, 40:90], _noise(40, 70, seed=16)])),
    Case("lm_video", "tiny tied model (lm_tied): a 4-frame pan over the cat photo 50x50 -> 56x56, grid_t 2",
         kind="model", towers=(),
         inputs=lambda: _model_prompt("lm_tied", "What?", videos=[_panning(4, 50, 50)])),
    Case("lm_text", "tiny untied model (lm_untied): text only (plain 1-D positions)", kind="model", towers=(),
         inputs=lambda: _model_prompt("lm_untied", "A red cat: what is it?")),
    # The parity report's seed scenario (README "Parity report"): not stored, built in memory.
    Case("seed_rocket_224", "rocket photo crop rows 0-212, columns 60-283 (213x224) -> 224x224: only the "
         "vertical pass runs (the parity report's seed scenario, see README 'Parity report')",
         lambda: [photo("rocket")[0:213, 60:284]], attention=("sdpa",), stored=False),
]

BY_NAME = {case.name: case for case in CASES}
if len(BY_NAME) != len(CASES):
    raise RuntimeError("two golden cases share a name")
IMAGE_CASES = [case for case in CASES if case.kind == "image" and case.stored and "backend" not in case.params]
TV_IMAGE_CASES = [case for case in CASES if case.kind == "image" and case.stored and "backend" in case.params]
VIDEO_CASES = [case for case in CASES if case.kind == "video" and case.stored]
TOWER_CASES = [case for case in CASES if case.kind == "tower" and case.stored]
POSITION_CASES = [case for case in CASES if case.kind == "positions" and case.stored]
MODEL_CASES = [case for case in CASES if case.kind == "model" and case.stored]
SCENARIOS = {case.name: case for case in CASES if not case.stored}


def weights_case_name(tower):
    return f"weights_{tower}"


def stored_names():
    """Every file name (without .safetensors) the generator writes: the weights, then the cases."""
    return [weights_case_name(t) for t, tower in TOWERS.items() if tower.stored_weights] + [
        case.name for case in CASES if case.stored]


def get(name):
    """The registered case ``name``; a clear error naming the known ones otherwise."""
    if name not in BY_NAME:
        raise ValueError(f"unknown case {name!r}; known: {', '.join(BY_NAME)}")
    return BY_NAME[name]
