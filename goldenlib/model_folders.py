"""The tiny whole models of the whole-model goldens, and their HF checkpoint folders.

Each model is a `reference.ModelConfig` plus a weight seed: the tower's weights are
`reference.random_weights(config.vision, seed)`, the language model's `reference.random_text_weights(
config.text, seed)`, so a model is rebuilt anywhere without its files. `write_model_folder` writes the
folder `from_pretrained` loads (released layout): config.json, preprocessor_config.json, a byte-level
tokenizer (vocab.json, merges.txt, tokenizer_config.json) and model.safetensors (float32, the seeded
values exactly).

The vocabulary is 288 ids: the 256 byte symbols of byte-level BPE (no merges: every byte of a text is
one token), then Qwen2.5's 22 special tokens from id 256 (`<|vision_start|>` 265, `<|image_pad|>` 268,
`<|video_pad|>` 269), then unused ids. Small on purpose: the logits golden is [s, 288].
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reference import ModelConfig, TextConfig, VisionConfig

SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
)
SPECIAL_IDS = {token: 256 + k for k, token in enumerate(SPECIAL_TOKENS)}
VOCAB_SIZE = 288
# the preprocessor of the tiny folders: small images (at most 16 merged tokens), CLIP mean/std
PREPROCESSOR = {"min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 16, "patch_size": 14, "merge_size": 2,
                "temporal_patch_size": 2, "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711], "image_processor_type": "Qwen2VLImageProcessor",
                "processor_class": "Qwen2_5_VLProcessor"}


@dataclass(frozen=True)
class TinyModel:
    name: str
    config: ModelConfig
    seed: int

    def weights(self):
        """(tower weights, language-model weights), float32, under the reference's names."""
        import reference

        return (reference.random_weights(self.config.vision, seed=self.seed),
                reference.random_text_weights(self.config.text, seed=self.seed))


def _model(name, vision, text, seed):
    return TinyModel(name, ModelConfig(VisionConfig(**vision), TextConfig(vocab_size=VOCAB_SIZE, **text),
                                       image_token_id=SPECIAL_IDS["<|image_pad|>"],
                                       video_token_id=SPECIAL_IDS["<|video_pad|>"],
                                       vision_start_token_id=SPECIAL_IDS["<|vision_start|>"], tokens_per_second=2),
                     seed)


# Both: grouped-query attention, towers with window and full-attention blocks; head_dim 16 (mrope [2, 3, 3])
# and 12 ([2, 2, 2], a non-released split); tied and untied output projections.
MODELS = {
    "lm_tied": _model("lm_tied", dict(depth=2, hidden_size=32, num_heads=2, intermediate_size=40, out_hidden_size=64,
                                      window_size=56, fullatt_block_indexes=(1,)),
                      dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, rms_norm_eps=1e-6, mrope_section=(2, 3, 3),
                           tie_word_embeddings=True), seed=20261207),
    "lm_untied": _model("lm_untied", dict(depth=3, hidden_size=48, num_heads=3, intermediate_size=56,
                                          out_hidden_size=48, window_size=112, fullatt_block_indexes=(0,)),
                        dict(hidden_size=48, intermediate_size=80, num_hidden_layers=3, num_attention_heads=4,
                             num_key_value_heads=2, rms_norm_eps=1e-6, mrope_section=(2, 2, 2),
                             tie_word_embeddings=False), seed=20261208),
}


def hf_config_json(config: ModelConfig) -> dict:
    """The released config.json layout (text fields at the top level) of a model config."""
    from .hf_vision import hf_config_dict

    t = config.text
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
        "vocab_size": t.vocab_size, "hidden_size": t.hidden_size, "intermediate_size": t.intermediate_size,
        "num_hidden_layers": t.num_hidden_layers, "num_attention_heads": t.num_attention_heads,
        "num_key_value_heads": t.num_key_value_heads, "hidden_act": "silu", "rms_norm_eps": t.rms_norm_eps,
        "rope_theta": t.rope_theta, "rope_scaling": {"type": "mrope", "mrope_section": list(t.mrope_section)},
        "max_position_embeddings": 4096, "tie_word_embeddings": t.tie_word_embeddings, "use_sliding_window": False,
        "attention_dropout": 0.0, "torch_dtype": "float32",
        "bos_token_id": SPECIAL_IDS["<|endoftext|>"], "eos_token_id": SPECIAL_IDS["<|im_end|>"],
        "pad_token_id": SPECIAL_IDS["<|endoftext|>"],
        "image_token_id": config.image_token_id, "video_token_id": config.video_token_id,
        "vision_start_token_id": config.vision_start_token_id, "vision_end_token_id": SPECIAL_IDS["<|vision_end|>"],
        "vision_config": {**hf_config_dict(config.vision), "tokens_per_second": config.tokens_per_second},
    }


def byte_symbols() -> list[str]:
    """The byte-level BPE alphabet: byte b -> one printable character (GPT-2's table, as Qwen's)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def write_tokenizer(folder: Path):
    vocab = {symbol: b for b, symbol in enumerate(byte_symbols())} | SPECIAL_IDS
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "unk_token": None, "model_max_length": 4096, "errors": "replace",
        "added_tokens_decoder": {str(i): {"content": t, "special": True, "lstrip": False, "rstrip": False,
                                          "normalized": False, "single_word": False} for t, i in SPECIAL_IDS.items()},
    }, indent=1))


def released_state_dict(vision: dict, text: dict) -> dict:
    """Reference-named weights -> one state dict in the released layout ("visual.", "model.", "lm_head.")."""
    out = {f"visual.{k}": v for k, v in vision.items()}
    out.update({(k if k == "lm_head.weight" else f"model.{k}"): v for k, v in text.items()})
    return out


def tower_model(tower) -> TinyModel:
    """A golden tower (``goldenlib.cases.TOWERS``: tiny_a, tiny_b) as a whole model a converter takes: the
    tower and its seeded weights exactly as the goldens run them, with a one-layer text model of the tower's
    output width (seeded with the tower's seed) in front of which its rows are scattered."""
    from .cases import TOWERS

    tower = TOWERS[tower]
    width = tower.config.out_hidden_size
    heads = 4 if width % 48 == 0 else 2  # head_dim 12 (mrope [2, 2, 2]) or 16 ([2, 3, 3])
    sections = (2, 2, 2) if width // heads == 12 else (2, 3, 3)
    text = dict(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1, num_attention_heads=heads,
                num_key_value_heads=heads // 2, rms_norm_eps=1e-6, mrope_section=sections, tie_word_embeddings=True)
    return _model(tower.name, {**tower.config.to_dict()}, text, seed=tower.seed)


# The HF folders golden/hf/ ships (goldenlib.hf_folders writes them): the golden towers, then the tiny whole models.
SHIPPED = ("tiny_a", "tiny_b", "lm_tied", "lm_untied")
# The golden towers' cases run HF's default image processor sizes (the whole models' folders: PREPROCESSOR).
TOWER_PREPROCESSOR = {**PREPROCESSOR, "min_pixels": 56 * 56, "max_pixels": 28 * 28 * 16384}


def write_model_folder(name, folder) -> Path:
    """Write tiny model ``name``'s HF folder into ``folder`` (created); the same bytes every time. ``name``:
    a whole model of ``MODELS``, or a golden tower (``tiny_a``, ``tiny_b``: :func:`tower_model`)."""
    from safetensors.numpy import save_file

    model = MODELS[name] if name in MODELS else tower_model(name)
    preprocessor = PREPROCESSOR if name in MODELS else TOWER_PREPROCESSOR
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = released_state_dict(*model.weights())
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sorted(state.items())},
              str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(hf_config_json(model.config), indent=1, sort_keys=True))
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=1, sort_keys=True))
    write_tokenizer(folder)
    return folder
