"""Golden cases as the parity checks see them: image stages, pixel_values, and tower stages per config.

The cases are the registry's (``goldenlib.cases.CASES``). Expected values come only from goldens
(``golden/*.safetensors``, sha256-verified by ``goldenlib.store.read_case``) or from the same
reference + HF cross-check that writes them (``goldenlib.build``):

* :func:`load_case` reads a stored golden: an image case (image stages + towers ``tiny_a`` and
  ``tiny_b``, float64), ``two_frames`` (towers only), ``full_size_3b`` (the 3B tower, float32,
  blocks ``FULL_BLOCKS`` only; weights regenerated from the seed), a torchvision-backend image case
  (``tv_*``: image stages only, no towers) or a video case (``video_*``: the clip, the processor's
  outputs and the tiny towers on the video grid).
* :func:`backend_twin` finds the golden of the same input on the other backend (``photo_chelsea``
  <-> ``tv_photo_chelsea``): what a variant on that backend is judged against exactly.
* :func:`scenario_case` builds a golden in memory for a case that is not stored (the seed
  scenario of the parity report) exactly as ``generate_golden.py`` would: the reference's image
  stages must equal HF/Pillow bit for bit and its float64 towers must agree with HF's float32
  tower within ``goldenlib.tolerances.HF_CROSSCHECK_BOUND``; otherwise it refuses.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from goldenlib import store
from goldenlib.cases import BY_NAME, SCENARIOS, TINY, TOWERS, Case, get, weights_case_name
from goldenlib.stage_vocabulary import IMAGE_STAGES
# The video processor's outputs, compared with the port's video transform (exact).
VIDEO_OUTPUTS = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")
FULL_CASE = "full_size_3b"


@dataclass
class TowerGolden:
    """The expected tower stages of one config on one case (unprefixed names, original patch order)."""

    name: str
    config: object  # reference.VisionConfig
    stages: dict
    weights: callable  # () -> {HF name: float32 array}
    stored_blocks: tuple | None = None  # None: every block is stored

    def has_block(self, i):
        return self.stored_blocks is None or i in self.stored_blocks


@dataclass
class GoldenCase:
    name: str
    source: str  # where the expected values come from
    pixel_values: np.ndarray
    grid_thw: np.ndarray
    towers: dict = field(default_factory=dict)  # config name -> TowerGolden
    images: list | None = None  # uint8 inputs, when the case has images
    params: dict = field(default_factory=dict)  # preprocess keyword arguments (min/max_pixels)
    image_stages: dict = field(default_factory=dict)  # "resized" or "resized.{i}" -> array (golden)
    notes: list = field(default_factory=list)  # what could not be checked, for the report
    backend: str | None = None  # image processor backend of the golden ("pil", "torchvision"); None: no image
    video: np.ndarray | None = None  # uint8 [T, H, W, 3], video cases
    video_outputs: dict = field(default_factory=dict)  # VIDEO_OUTPUTS -> golden array
    _image_stages_loader: callable = None

    @property
    def n_images(self):
        return 0 if self.images is None else len(self.images)

    def expected_image_stages(self):
        """Golden image stages; for full_size_3b they are rebuilt (and HF-checked) on first use."""
        if not self.image_stages and self._image_stages_loader is not None:
            self.image_stages = self._image_stages_loader()
        return self.image_stages


def stage_key(stage, index, n_images):
    return stage if n_images == 1 else f"{stage}.{index}"


@functools.lru_cache(maxsize=2)
def tiny_weights(name):
    weights, _ = store.read_case(weights_case_name(name))
    return weights


@functools.lru_cache(maxsize=1)
def full_weights(name):
    """A tower's weights regenerated from its seed (the 3B tower: not stored; one kept at a time)."""
    return TOWERS[name].weights()


def tower_weights(name):
    return tiny_weights(name) if TOWERS[name].stored_weights else full_weights(name)


def case_names():
    """Every case the parity checks can run (the tower goldens; not the positions ones): stored goldens,
    then the in-memory scenarios."""
    return [name for name, case in BY_NAME.items() if case.stored and case.kind != "positions"] + list(SCENARIOS)


def _towers(tensors, stored_blocks=None):
    towers = {}
    for name in TOWERS:
        prefix = f"{name}."
        stages = {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
        if stages:
            towers[name] = TowerGolden(name, TOWERS[name].config, stages, functools.partial(tower_weights, name),
                                       stored_blocks)
    return towers


def load_case(name, configs=None):
    """A stored golden case (sha256-verified) or an in-memory scenario, as a :class:`GoldenCase`.

    ``configs`` only matters for scenarios: which towers to build (default: the case's own)."""
    if name in SCENARIOS:
        return scenario_case(SCENARIOS[name], configs or SCENARIOS[name].towers)
    if name not in case_names():
        raise ValueError(f"unknown case {name!r}; known: {', '.join(case_names())}")
    registered = get(name)
    tensors, meta = store.read_case(name)
    if registered.kind == "video":  # the towers ran on the video grid
        case = GoldenCase(name, f"golden/{name}.safetensors", tensors["pixel_values_videos"], tensors["video_grid_thw"])
        case.towers = _towers(tensors)
        case.params = dict(meta.get("params") or registered.params)
        case.video = tensors["input"]
        case.video_outputs = {key: tensors[key] for key in VIDEO_OUTPUTS}
        return case
    case = GoldenCase(name, f"golden/{name}.safetensors", tensors["pixel_values"], tensors["image_grid_thw"])
    if registered.make is not None:
        case.backend = (meta.get("params") or registered.params).get("backend", "pil")
    blocks = tuple(meta["stored_blocks"]) if "stored_blocks" in meta else None
    case.towers = _towers(tensors, blocks)
    if registered.make is None:
        return case
    case.params = dict(meta.get("params") or registered.params)
    if registered.kind == "image":
        n = len(registered.images())
        case.images = [tensors[stage_key("input", i, n)] for i in range(n)]
        case.image_stages = {key: value for key, value in tensors.items()
                             if key.split(".")[0] in IMAGE_STAGES + ("pixel_values", "image_grid_thw")}
    else:  # a tower case made from an image stores only its pixel_values: the stages are rebuilt on use
        case.images = registered.images()
        case._image_stages_loader = functools.partial(_full_case_image_stages, case)
    return case


def _registry_backend(case):
    return case.params.get("backend", "pil")


@functools.lru_cache(maxsize=None)
def backend_twin(name, backend):
    """The stored image case with the same input images and settings as ``name`` but on
    ``backend`` (``name`` itself when it already is on it), or None when none is stored."""
    case = get(name)
    if case.kind != "image" or case.make is None:
        return None
    if _registry_backend(case) == backend:
        return name
    settings = {k: v for k, v in case.params.items() if k != "backend"}
    images = None
    for other in BY_NAME.values():
        if (other.kind != "image" or not other.stored or _registry_backend(other) != backend
                or {k: v for k, v in other.params.items() if k != "backend"} != settings):
            continue
        images = case.images() if images is None else images
        theirs = other.images()
        if len(theirs) == len(images) and all(np.array_equal(a, b) for a, b in zip(images, theirs)):
            return other.name
    return None


def _full_case_image_stages(case):
    """The image stages of a tower case made from an image (full_size_3b), rebuilt as the generator
    builds goldens (reference, checked against HF bit for bit) and required to reproduce the stored
    pixel_values exactly. Where HF's processor cannot run (not installed, another API), only the
    stored pixel_values are used."""
    from goldenlib.image_goldens import crosscheck, run_reference

    stored = {"pixel_values": case.pixel_values, "image_grid_thw": case.grid_thw}
    image_case = get(case.name)
    images, tensors = run_reference(image_case)
    if not np.array_equal(tensors["pixel_values"], case.pixel_values):
        raise RuntimeError(f"{case.name}: the registry's image (goldenlib.cases) no longer gives the stored "
                           "pixel_values")
    try:
        diffs = crosscheck(image_case, images, tensors)
    except Exception as error:  # noqa: BLE001 - any HF failure: fall back to what is stored
        case.notes.append(f"{case.name}: HF's image processor did not run ({type(error).__name__}: {error}); "
                          "image stages other than pixel_values are not compared")
        return stored
    bad = {stage: diff for stage, diff in diffs.items() if diff != 0.0}
    if bad:
        raise RuntimeError(f"{case.name}: reference image stages differ from HF at {bad}")
    return {key: value for key, value in tensors.items() if key != "input"}


@functools.lru_cache(maxsize=4)
def _scenario_tensors(name, configs):
    """A golden built in memory exactly as generate_golden.py builds the stored ones (goldenlib.build:
    reference + HF cross-check, tower stages within HF_CROSSCHECK_BOUND), with towers ``configs``."""
    from goldenlib.build import build_case, check_crosscheck

    case = SCENARIOS[name]
    tensors, _, report = build_case(case, towers=configs, weights_of=tower_weights)
    check_crosscheck(report)
    return case.images(), tensors


def scenario_case(case: Case, configs=TINY):
    """An in-memory golden of the registered case ``case`` with towers ``configs`` (tiny ones, or "3b":
    the full-size tower with the seed-0 weights, float64, every block; slower: about a minute)."""
    configs = tuple(configs)
    images, tensors = _scenario_tensors(case.name, configs)
    golden = GoldenCase(case.name, "in memory: reference, checked against HF (Pil processor, float32 tower)",
                        tensors["pixel_values"], tensors["image_grid_thw"])
    golden.towers = _towers(tensors)
    golden.images = list(images)
    golden.params = dict(case.params)
    golden.backend = _registry_backend(case)
    golden.image_stages = {key: value for key, value in tensors.items()
                           if key.split(".")[0] in IMAGE_STAGES + ("pixel_values", "image_grid_thw")}
    return golden
