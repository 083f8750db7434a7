"""Sizes of Qwen2.5-VL's language model and of the whole model, named as in HF's configs.

`TextConfig` holds what the decoder's forward needs (`Qwen2_5_VLTextConfig`); `ModelConfig` adds the
vision tower (`VisionConfig`) and what joins the two: the placeholder token ids and the time scale of
video positions. `ModelConfig.from_hf` reads a released config.json (text fields at the top level)
or `Qwen2_5_VLConfig(...).to_dict()` (a "text_config" dict) and ignores everything else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .vision_config import VisionConfig

_REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads")
# HF's class defaults of the required sizes: a config without one of them would silently build another
# model in HF (hidden_size 8192 is 72B's), so the reference refuses instead.
_HF_DEFAULTS = {"vocab_size": 152064, "hidden_size": 8192, "intermediate_size": 29568, "num_hidden_layers": 80,
                "num_attention_heads": 64, "num_key_value_heads": 8}
IMAGE_TOKEN_ID, VIDEO_TOKEN_ID, VISION_START_TOKEN_ID = 151655, 151656, 151652  # HF's defaults (released ids)


@dataclass(frozen=True)
class TextConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    rms_norm_eps: float = 1e-5  # HF's class default; released checkpoints say 1e-6
    rope_theta: float = 1e6
    mrope_section: tuple[int, ...] = (16, 24, 24)
    tie_word_embeddings: bool = False

    def __post_init__(self):
        for name in _REQUIRED:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"TextConfig.{name} must be a positive int, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"TextConfig.hidden_size={self.hidden_size} is not divisible by "
                             f"num_attention_heads={self.num_attention_heads}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"TextConfig.num_attention_heads={self.num_attention_heads} is not a multiple of "
                             f"num_key_value_heads={self.num_key_value_heads} (grouped-query attention)")
        section = tuple(int(n) for n in self.mrope_section)
        if sum(section) != self.head_dim // 2 or min(section, default=0) < 0:
            raise ValueError(f"TextConfig.mrope_section {list(section)} must be non-negative and sum to "
                             f"head_dim // 2 = {self.head_dim // 2}")
        object.__setattr__(self, "mrope_section", section)
        for name in ("rms_norm_eps", "rope_theta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"TextConfig.{name} must be a positive number, got {value!r}")
            object.__setattr__(self, name, float(value))
        object.__setattr__(self, "tie_word_embeddings", bool(self.tie_word_embeddings))

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_hf(cls, config: dict) -> "TextConfig":
        """From a released config.json (text fields at the top level) or `Qwen2_5_VLConfig.to_dict()`."""
        if not isinstance(config, dict):
            raise ValueError(f"TextConfig.from_hf wants a dict, got {type(config).__name__}")
        text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
        missing = [name for name in _REQUIRED if text.get(name) is None]
        if missing:
            raise ValueError(f"text config lacks {missing}; HF would silently use its defaults "
                             f"{ {name: _HF_DEFAULTS[name] for name in missing} }, refusing to guess")
        rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in ("default", "mrope"):
            raise ValueError(f"text rope type {rope_type!r}: only the multimodal rotary ('default' / 'mrope') "
                             "is specified here")
        if text.get("use_sliding_window") or "sliding_attention" in (text.get("layer_types") or []):
            raise ValueError("text config asks for sliding-window attention (use_sliding_window / layer_types); "
                             "HF's eager and sdpa attention ignore it and so does this reference: refusing")
        if text.get("hidden_act", "silu") != "silu":
            raise ValueError(f"text config hidden_act={text['hidden_act']!r}: only 'silu' is specified here")
        hidden, heads = text["hidden_size"], text["num_attention_heads"]
        if text.get("head_dim") not in (None, hidden // max(heads, 1)):
            raise ValueError(f"text config head_dim={text['head_dim']!r} differs from hidden_size / "
                             f"num_attention_heads, which HF's text attention uses")
        return cls(**{name: text[name] for name in _REQUIRED},
                   rms_norm_eps=text.get("rms_norm_eps", 1e-5),
                   rope_theta=rope.get("rope_theta", text.get("rope_theta", 1e6)),
                   mrope_section=tuple(rope.get("mrope_section", (16, 24, 24))),
                   tie_word_embeddings=bool(config.get("tie_word_embeddings") or text.get("tie_word_embeddings")))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["mrope_section"] = list(self.mrope_section)
        return d


@dataclass(frozen=True)
class ModelConfig:
    """The whole `Qwen2_5_VLForConditionalGeneration`: tower, decoder and what joins them."""

    vision: VisionConfig
    text: TextConfig
    image_token_id: int = IMAGE_TOKEN_ID
    video_token_id: int = VIDEO_TOKEN_ID
    vision_start_token_id: int = VISION_START_TOKEN_ID
    tokens_per_second: float = 4  # HF's vision-config default; released checkpoints say 2

    def __post_init__(self):
        if self.vision.out_hidden_size != self.text.hidden_size:
            raise ValueError(f"vision out_hidden_size={self.vision.out_hidden_size} differs from the text "
                             f"hidden_size={self.text.hidden_size}: the tower's rows could not replace token rows")
        ids = {"image_token_id": self.image_token_id, "video_token_id": self.video_token_id}
        for name, value in ids.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.text.vocab_size:
                raise ValueError(f"ModelConfig.{name}={value!r} is not a token id of the vocabulary "
                                 f"(0..{self.text.vocab_size - 1})")
        if self.image_token_id == self.video_token_id:
            raise ValueError(f"image_token_id and video_token_id are both {self.image_token_id}")

    @classmethod
    def from_hf(cls, config: dict) -> "ModelConfig":
        if not isinstance(config, dict) or not isinstance(config.get("vision_config"), dict):
            raise ValueError("a Qwen2.5-VL config has a \"vision_config\" dict; this one has none")
        vision = config["vision_config"]
        return cls(VisionConfig.from_hf(vision), TextConfig.from_hf(config),
                   image_token_id=int(config.get("image_token_id", IMAGE_TOKEN_ID)),
                   video_token_id=int(config.get("video_token_id", VIDEO_TOKEN_ID)),
                   vision_start_token_id=int(config.get("vision_start_token_id", VISION_START_TOKEN_ID)),
                   tokens_per_second=vision.get("tokens_per_second", 4))

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """The config back from its :meth:`to_dict` (what a golden's metadata stores)."""
        return cls(VisionConfig(**d["vision"]), TextConfig(**d["text"]), **{k: v for k, v in d.items()
                                                                            if k not in ("vision", "text")})

    def to_dict(self) -> dict:
        return {"vision": self.vision.to_dict(), "text": self.text.to_dict(), "image_token_id": self.image_token_id,
                "video_token_id": self.video_token_id, "vision_start_token_id": self.vision_start_token_id,
                "tokens_per_second": self.tokens_per_second}
