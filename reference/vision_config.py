"""Sizes of the Qwen2.5-VL vision tower, named as in HF's `Qwen2_5_VLVisionConfig`.

Only the numbers the forward pass needs. `VisionConfig.from_hf` reads either
`Qwen2_5_VLVisionConfig(...).to_dict()` or the "vision_config" dict of a released
checkpoint's config.json, and ignores everything else in it.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

from .activations import ACTIVATIONS

# The names of ACT2FN that the reference implements: the keys of its one activation table.
SUPPORTED_ACTS = tuple(ACTIVATIONS)

_REQUIRED = ("depth", "hidden_size", "num_heads", "intermediate_size", "out_hidden_size")
# HF's class defaults for the required fields: a dict that lacks one of them would silently
# build a different tower in HF (hidden_size 3584 is the classic trap), so we refuse instead.
_HF_DEFAULTS = {"depth": 32, "hidden_size": 3584, "num_heads": 16, "intermediate_size": 3420, "out_hidden_size": 3584}
# Alternative spellings: HF's attribute_map, and the released config.json's "in_chans".
_ALIASES = {"num_hidden_layers": "depth", "num_attention_heads": "num_heads", "in_chans": "in_channels"}



def check_fullatt_indexes(indexes, depth, subject):
    """Indexes at or past ``depth`` warn, negative ones are refused.

    HF picks full attention with ``layer_num in fullatt_block_indexes``: an index >= depth never
    matches a block, and HF's own tiny test configs keep the released (7, 15, 23, 31) at depth
    2, so such configs run (with a UserWarning naming them). A negative index never matches
    either, but there it reads as "count from the end", which HF does not do: refused.
    """
    negative = [i for i in indexes if i < 0]
    if negative:
        raise ValueError(f"{subject}fullatt_block_indexes holds {negative[0]}, negative: HF does not count "
                         f"blocks from the end (`layer_num in fullatt_block_indexes` never matches it)")
    past = [i for i in indexes if i >= depth]
    if past:
        warnings.warn(f"{subject}fullatt_block_indexes holds {past}, at or past depth={depth}: no block has "
                      f"those indexes, so they select nothing (as in HF)", UserWarning, stacklevel=4)

@dataclass(frozen=True)
class VisionConfig:
    depth: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    out_hidden_size: int
    patch_size: int = 14
    temporal_patch_size: int = 2
    spatial_merge_size: int = 2
    window_size: int = 112
    fullatt_block_indexes: tuple[int, ...] = (7, 15, 23, 31)
    in_channels: int = 3
    hidden_act: str = "silu"
    rope_theta: float = 10000.0  # HF: rope_parameters["rope_theta"] (rope_type "axial")

    def __post_init__(self):
        ints = ("depth", "hidden_size", "num_heads", "intermediate_size", "out_hidden_size", "patch_size",
                "temporal_patch_size", "spatial_merge_size", "window_size", "in_channels")
        for name in ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"VisionConfig.{name} must be a positive int, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"VisionConfig.hidden_size={self.hidden_size} is not divisible by "
                             f"num_heads={self.num_heads}")
        if self.head_dim % 4:
            raise ValueError(f"VisionConfig head_dim = hidden_size/num_heads = {self.head_dim} must be divisible "
                             f"by 4 (2D rotary splits each head into h and w halves, each rotated in pairs)")
        unit = self.patch_size * self.spatial_merge_size
        if self.window_size % unit:
            raise ValueError(f"VisionConfig.window_size={self.window_size} must be a multiple of "
                             f"patch_size*spatial_merge_size={unit}")
        # The tuple form keeps the frozen dataclass hashable; ints matter because HF tests
        # `layer_num in fullatt_block_indexes`, which a string "7" never matches.
        try:
            indexes = tuple(int(i) for i in self.fullatt_block_indexes)
        except (TypeError, ValueError):
            raise ValueError(f"VisionConfig.fullatt_block_indexes must be ints, got {self.fullatt_block_indexes!r}")
        check_fullatt_indexes(indexes, self.depth, "VisionConfig.")
        object.__setattr__(self, "fullatt_block_indexes", indexes)
        if self.hidden_act not in SUPPORTED_ACTS:
            raise ValueError(f"VisionConfig.hidden_act={self.hidden_act!r} is not supported; "
                             f"use one of {SUPPORTED_ACTS}")
        if not (isinstance(self.rope_theta, (int, float)) and self.rope_theta > 0):
            raise ValueError(f"VisionConfig.rope_theta must be a positive number, got {self.rope_theta!r}")
        object.__setattr__(self, "rope_theta", float(self.rope_theta))

    # derived sizes
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def patch_dim(self) -> int:
        """Length of one pixel_values row: C * temporal_patch * patch * patch (1176 released)."""
        return self.in_channels * self.temporal_patch_size * self.patch_size ** 2

    @property
    def merge_unit(self) -> int:
        """Patches per merged token (spatial_merge_size**2 = 4)."""
        return self.spatial_merge_size ** 2

    @classmethod
    def from_hf(cls, d: dict) -> "VisionConfig":
        """From `Qwen2_5_VLVisionConfig.to_dict()` or a config.json "vision_config" dict."""
        if not isinstance(d, dict):
            raise ValueError(f"VisionConfig.from_hf wants a dict, got {type(d).__name__}")
        d = dict(d)
        for alias, name in _ALIASES.items():
            if alias in d and name not in d:
                d[name] = d[alias]
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise ValueError(f"vision config lacks {missing}; HF would silently use its defaults "
                             f"{ {k: _HF_DEFAULTS[k] for k in missing} }, refusing to guess")
        fields = {f.name for f in dataclasses.fields(cls)} - {"rope_theta"}
        kwargs = {k: v for k, v in d.items() if k in fields}
        if "fullatt_block_indexes" in kwargs:
            fb = kwargs["fullatt_block_indexes"]
            if isinstance(fb, (str, int)):
                raise ValueError(f"VisionConfig.fullatt_block_indexes must be a list of ints, got {fb!r}")
            try:  # string indexes after a JSON round trip are a known pitfall
                kwargs["fullatt_block_indexes"] = tuple(int(i) for i in fb)
            except (TypeError, ValueError):
                raise ValueError(f"VisionConfig.fullatt_block_indexes must be ints, got {fb!r}")
        rope = d.get("rope_parameters") or {}
        theta = rope.get("rope_theta", d.get("rope_theta"))
        if theta is not None:
            kwargs["rope_theta"] = theta
        rope_type = rope.get("rope_type", "axial")
        if rope_type != "axial":
            raise ValueError(f"vision rope_parameters.rope_type={rope_type!r}: only 'axial' exists in HF")
        return cls(**kwargs)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["fullatt_block_indexes"] = list(self.fullatt_block_indexes)
        return d

    @classmethod
    def preset(cls, name: str) -> "VisionConfig":
        """The tower of a released checkpoint: "3b", "7b", "32b" or "72b"."""
        key = name.lower().removeprefix("qwen2.5-vl-").removeprefix("qwen2_5_vl_")
        if key not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
        return PRESETS[key]

    @classmethod
    def qwen2_5_vl_3b(cls) -> "VisionConfig":
        return PRESETS["3b"]

    @classmethod
    def qwen2_5_vl_7b(cls) -> "VisionConfig":
        return PRESETS["7b"]

    @classmethod
    def qwen2_5_vl_32b(cls) -> "VisionConfig":
        return PRESETS["32b"]

    @classmethod
    def qwen2_5_vl_72b(cls) -> "VisionConfig":
        return PRESETS["72b"]


def _released(out_hidden_size: int) -> VisionConfig:
    # All released Qwen2.5-VL towers are the same ViT; only the merger's output width
    # (the language model's hidden size) differs.
    return VisionConfig(depth=32, hidden_size=1280, num_heads=16, intermediate_size=3420,
                        out_hidden_size=out_hidden_size, patch_size=14, temporal_patch_size=2,
                        spatial_merge_size=2, window_size=112, fullatt_block_indexes=(7, 15, 23, 31),
                        in_channels=3, hidden_act="silu")


PRESETS: dict[str, VisionConfig] = {
    "3b": _released(2048),
    "7b": _released(3584),
    "32b": _released(5120),
    "72b": _released(8192),
}
