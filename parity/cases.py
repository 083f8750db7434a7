"""Golden cases as the parity checks see them: image stages, pixel_values, and tower stages per config.

Expected values come only from goldens (``golden/*.safetensors``, sha256-verified by
``goldenlib.store.read_case``) or from the same reference + HF cross-check that writes them:

* :func:`load_case` reads a stored golden: an image case (image stages + towers ``tiny_a`` and
  ``tiny_b``, float64), ``two_frames`` (towers only) or ``full_size_3b`` (the 3B tower, float32,
  blocks ``FULL_BLOCKS`` only; weights regenerated from the seed).
* :func:`scenario_case` builds a golden in memory for an image that is not stored (the seed
  scenario of the parity report) exactly as ``generate_golden.py`` would: the reference's image
  stages must equal HF/Pillow bit for bit and its float64 towers must agree with HF's float32
  tower within ``generate_golden.TOWER_CROSSCHECK_BOUND``; otherwise it refuses.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from goldenlib import store
from goldenlib.cases import IMAGE_CASES, ImageCase, photo
from goldenlib.tower_goldens import FULL_CONFIG_NAME, TINY_CONFIGS

# Image stages in pipeline order (the goldens store ``input`` too; it is the input, not compared).
IMAGE_STAGES = ("rgb", "resized", "rescaled", "normalized")
FULL_CASE = "full_size_3b"
TOWER_ONLY_CASES = ("two_frames", FULL_CASE)

# Not stored in golden/: built in memory by `scenario_case` (reference + HF cross-check).
SCENARIOS = {
    "seed_rocket_224": ImageCase(
        "seed_rocket_224",
        "rocket photo crop rows 0-212, columns 60-283 (213x224) -> 224x224: only the vertical pass runs "
        "(the parity report's seed scenario, see README 'Parity report')",
        lambda: [photo("rocket")[0:213, 60:284]],
    ),
}


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
    weights, _ = store.read_case(f"weights_{name}")
    return weights


@functools.lru_cache(maxsize=1)
def full_weights(seed):
    import reference

    return reference.random_weights(reference.PRESETS[FULL_CONFIG_NAME], seed=seed)


def case_names():
    """Every case the parity checks can run: stored goldens, then the in-memory scenarios."""
    return [case.name for case in IMAGE_CASES] + list(TOWER_ONLY_CASES) + list(SCENARIOS)


def _image_case(name):
    for case in IMAGE_CASES:
        if case.name == name:
            return case
    return None


def _tiny_towers(tensors):
    towers = {}
    for name, config in TINY_CONFIGS.items():
        prefix = f"{name}."
        stages = {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
        if stages:
            towers[name] = TowerGolden(name, config, stages, functools.partial(tiny_weights, name))
    return towers


def load_case(name, configs=None):
    """A stored golden case (sha256-verified) or an in-memory scenario, as a :class:`GoldenCase`.

    ``configs`` only matters for scenarios: which towers to build (default: the tiny ones)."""
    if name in SCENARIOS:
        return scenario_case(SCENARIOS[name], configs or tuple(TINY_CONFIGS))
    if name not in case_names():
        raise ValueError(f"unknown case {name!r}; known: {', '.join(case_names())}")
    tensors, meta = store.read_case(name)
    case = GoldenCase(name, f"golden/{name}.safetensors", tensors["pixel_values"], tensors["image_grid_thw"])
    if name == FULL_CASE:
        import reference

        prefix = meta.get("stage_prefix", f"{FULL_CONFIG_NAME}.")
        stages = {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
        case.towers[FULL_CONFIG_NAME] = TowerGolden(
            FULL_CONFIG_NAME, reference.PRESETS[FULL_CONFIG_NAME], stages,
            functools.partial(full_weights, int(meta["seed"])), tuple(meta["stored_blocks"]))
        case.images, case.params = _full_case_image()
        case._image_stages_loader = functools.partial(_full_case_image_stages, case)
        return case
    case.towers = _tiny_towers(tensors)
    image_case = _image_case(name)
    if image_case is not None:
        case.params = dict(meta.get("params") or {})
        n = len(image_case.images())
        case.images = [tensors[stage_key("input", i, n)] for i in range(n)]
        case.image_stages = {key: value for key, value in tensors.items()
                             if key.split(".")[0] in IMAGE_STAGES + ("pixel_values", "image_grid_thw")}
    return case


def _full_case_image():
    """The image of full_size_3b: generate_golden.FULL_IMAGE (the golden stores only its pixel_values)."""
    from generate_golden import FULL_IMAGE

    return [FULL_IMAGE[1]()], {}


def _full_case_image_stages(case):
    """full_size_3b's image stages, rebuilt as the generator builds goldens (reference, checked
    against HF bit for bit) and required to reproduce the stored pixel_values exactly. Where HF's
    processor cannot run (not installed, another API), only the stored pixel_values are used."""
    from goldenlib.image_goldens import crosscheck, run_reference

    stored = {"pixel_values": case.pixel_values, "image_grid_thw": case.grid_thw}
    image_case = ImageCase(case.name, "full_size_3b image", lambda: case.images)
    images, tensors = run_reference(image_case)
    if not np.array_equal(tensors["pixel_values"], case.pixel_values):
        raise RuntimeError(f"{case.name}: generate_golden.FULL_IMAGE no longer gives the stored pixel_values")
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


def _tower_config(name):
    import reference

    return TINY_CONFIGS[name] if name in TINY_CONFIGS else reference.PRESETS[name]


def _tower_weights(name):
    return tiny_weights(name) if name in TINY_CONFIGS else full_weights(0)


@functools.lru_cache(maxsize=4)
def _scenario_tensors(name, configs):
    """A golden built in memory as generate_golden.py builds them (reference + HF cross-check)."""
    from generate_golden import TOWER_CROSSCHECK_BOUND
    from goldenlib.image_goldens import crosscheck, run_reference
    from goldenlib.tower_goldens import hf_crosscheck, run_tower

    image_case = SCENARIOS[name]
    images, tensors = run_reference(image_case)
    bad = {stage: diff for stage, diff in crosscheck(image_case, images, tensors).items() if diff != 0.0}
    if bad:
        raise RuntimeError(f"scenario {name}: reference image stages differ from HF at {bad}")
    for config_name in configs:
        config, weights = _tower_config(config_name), _tower_weights(config_name)
        trace = run_tower(config, weights, tensors["pixel_values"], tensors["image_grid_thw"])
        errors = hf_crosscheck(config, weights, tensors["pixel_values"], tensors["image_grid_thw"], trace,
                               implementations=("sdpa",))
        worst = max(errors.values())
        if not worst <= TOWER_CROSSCHECK_BOUND:
            raise RuntimeError(f"scenario {name}: {config_name} tower differs from HF by {worst:.2e}")
        tensors.update({f"{config_name}.{stage}": value for stage, value in trace.items()})
    return images, tensors


def scenario_case(image_case, configs=tuple(TINY_CONFIGS)):
    """An in-memory golden of ``image_case`` with towers ``configs`` (tiny ones, or "3b": the
    full-size tower with the seed-0 weights, float64, every block; slower: about a minute)."""
    configs = tuple(configs)
    images, tensors = _scenario_tensors(image_case.name, configs)
    case = GoldenCase(image_case.name, "in memory: reference, checked against HF (Pil processor, float32 tower)",
                      tensors["pixel_values"], tensors["image_grid_thw"])
    for config_name in configs:
        prefix = f"{config_name}."
        stages = {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
        case.towers[config_name] = TowerGolden(config_name, _tower_config(config_name), stages,
                                               functools.partial(_tower_weights, config_name))
    case.images = list(images)
    case.params = dict(image_case.params)
    case.image_stages = {key: value for key, value in tensors.items()
                         if key.split(".")[0] in IMAGE_STAGES + ("pixel_values", "image_grid_thw")}
    return case
