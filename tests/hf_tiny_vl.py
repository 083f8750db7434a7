"""Tiny random HF ``Qwen2_5_VLForConditionalGeneration`` models, their port twins and prompts for them (tests only).

Shared by the fused-model, generation, training, batching and recipe tests. The configs use a small
vocabulary with the special ids inside it (vision start/end 3/4, image/video pads 5/6, HF config
fields ``vision_start_token_id`` ... ``video_token_id``), float32, eager attention; with
``qwen_ids=True`` the vocabulary and special ids are Qwen's released ones instead, so that the tiny
BPE tokenizer's ids (tests/tiny_tokenizer.py) reach the model.

Caching: expensive builds are ``functools.cache`` on module-level builders (``hf_and_port``), one
per test session and shared by the test files; a test leaves them as it found them (eval mode, no
hooks, no KV caches, weights unchanged) and builds its own model (``hf_model``,
``torch_port.load_hf_model``) to change one.
"""

import functools

import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

import torch_port
from tiny_tokenizer import SPECIAL_IDS as QWEN_SPECIAL_IDS

VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = 3, 4, 5, 6
SPECIAL_IDS = (VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD)

# the fields every tiny config shares (test_qlora builds its NF4-sized config on them)
TEXT_BASE = dict(vocab_size=97, max_position_embeddings=512, rms_norm_eps=1e-6, rope_theta=1e6,
                 bos_token_id=1, eos_token_id=2, pad_token_id=0)
VISION_BASE = dict(patch_size=14, temporal_patch_size=2, spatial_merge_size=2, in_channels=3, hidden_act="silu",
                   tokens_per_second=2)

# name -> (text config, vision config, tie_word_embeddings). Each vision tower has window and
# full-attention blocks (window 56 px = 2 merged tokens a side); head_dim 8 (mrope [1, 1, 2], a
# non-default split), 16 ([2, 3, 3]) and 12 ([2, 2, 2]).
TINY_VL_CONFIGS = {
    "tied_gqa": (
        dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}),
        dict(depth=2, hidden_size=32, num_heads=4, intermediate_size=40, out_hidden_size=64,
             window_size=56, fullatt_block_indexes=[1]),
        True,
    ),
    "untied_mha": (
        dict(hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=4, rope_scaling={"type": "mrope", "mrope_section": [2, 2, 2]}),
        dict(depth=3, hidden_size=32, num_heads=2, intermediate_size=48, out_hidden_size=48,
             window_size=56, fullatt_block_indexes=[0, 2]),
        False,
    ),
    "untied_gqa_hd8": (
        dict(hidden_size=64, intermediate_size=64, num_hidden_layers=3, num_attention_heads=8,
             num_key_value_heads=2, rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}),
        dict(depth=2, hidden_size=48, num_heads=3, intermediate_size=40, out_hidden_size=64,
             window_size=56, fullatt_block_indexes=[0]),
        False,
    ),
}


QWEN_VOCAB = 151680  # past the last Qwen special id (151664), so the tiny tokenizer's ids fit


def config_dict(name: str, *, qwen_ids: bool = False) -> dict:
    """The released ``config.json`` layout of a tiny config (text fields at the top level);
    ``qwen_ids``: Qwen's vocabulary size and special ids (``qwen_ids_overlay``)."""
    text, vision, tied = TINY_VL_CONFIGS[name]
    config = {
        "model_type": "qwen2_5_vl",
        **TEXT_BASE,
        **text,
        "vision_config": {**VISION_BASE, **vision},
        "tie_word_embeddings": tied,
        "vision_start_token_id": VISION_START,
        "vision_end_token_id": VISION_END,
        "image_token_id": IMAGE_PAD,
        "video_token_id": VIDEO_PAD,
    }
    return {**config, **qwen_ids_overlay()} if qwen_ids else config


def qwen_ids_overlay() -> dict:
    """The config fields that give a tiny config Qwen's vocabulary size and special ids."""
    return dict(vocab_size=QWEN_VOCAB, bos_token_id=QWEN_SPECIAL_IDS["<|endoftext|>"],
                eos_token_id=QWEN_SPECIAL_IDS["<|im_end|>"], pad_token_id=QWEN_SPECIAL_IDS["<|endoftext|>"],
                vision_start_token_id=QWEN_SPECIAL_IDS["<|vision_start|>"],
                vision_end_token_id=QWEN_SPECIAL_IDS["<|vision_end|>"],
                image_token_id=QWEN_SPECIAL_IDS["<|image_pad|>"], video_token_id=QWEN_SPECIAL_IDS["<|video_pad|>"])


def hf_and_port(name: str, *, qwen_ids: bool = False):
    """(HF model, port model loaded from its transformers-5 state_dict) of ``config_dict(name,
    qwen_ids=...)``, built once per test session: do not change them (see the module's docstring)."""
    return _hf_and_port(name, bool(qwen_ids))


@functools.cache
def _hf_and_port(name: str, qwen_ids: bool):  # one cache key per model, however the caller spells the flag
    config = config_dict(name, qwen_ids=qwen_ids)
    hf = random_hf_model(config)
    return hf, torch_port.load_hf_model(config, hf.state_dict())


def hf_model(name: str, seed: int = 0) -> Qwen2_5_VLForConditionalGeneration:
    """A random float32 HF model of a tiny config, eval mode, eager attention (weights scaled up
    from HF's 0.02 init so that the logits are not all near zero)."""
    return random_hf_model(config_dict(name), seed)


def random_hf_model(config: dict, seed: int = 0) -> Qwen2_5_VLForConditionalGeneration:
    """``hf_model`` for any ``Qwen2_5_VLConfig`` keyword dict."""
    torch.manual_seed(seed)
    config = Qwen2_5_VLConfig(**config)
    config._attn_implementation = "eager"
    model = Qwen2_5_VLForConditionalGeneration(config).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_q" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * (0.1 if p.ndim == 1 else 0.2))
    return model


def vision_run(grid, merge: int = 2, pad: int = IMAGE_PAD) -> list[int]:
    """``<|vision_start|>`` + one pad per merged token of ``grid`` (t, h, w) + ``<|vision_end|>``."""
    t, h, w = grid
    return [VISION_START] + [pad] * (t * h * w // merge**2) + [VISION_END]


def text_ids(n: int, generator: torch.Generator, vocab_size: int = 97) -> list[int]:
    """``n`` random ordinary token ids (never a special id)."""
    ids = torch.randint(len(SPECIAL_IDS) + 3, vocab_size, (n,), generator=generator)
    return ids.tolist()


def pixel_values(grid, generator: torch.Generator, patch_dim: int = 3 * 2 * 14 * 14) -> torch.Tensor:
    """Random patch rows ``[sum t*h*w, patch_dim]`` for a ``[n, 3]`` grid."""
    rows = int(torch.as_tensor(grid).prod(-1).sum())
    return torch.randn(rows, patch_dim, generator=generator)


def token_types(ids: torch.Tensor) -> torch.Tensor:
    """``mm_token_type_ids``: 1 for image pads, 2 for video pads, 0 otherwise."""
    return (ids == IMAGE_PAD).long() + 2 * (ids == VIDEO_PAD).long()
