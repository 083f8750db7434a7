"""The language model's state dict: expected names and shapes, random test weights, and the split of a
whole model's state dict into the tower's and the language model's.

Names are HF's without the "model.language_model." (transformers 5.x) / "model." (released files)
prefix: "embed_tokens.weight", "layers.{i}.self_attn.q_proj.weight", ..., "norm.weight"; the output
projection keeps its own name, "lm_head.weight" (absent when the embedding is tied).
"""

from __future__ import annotations

import numpy as np

from .text_config import TextConfig
from .weights import describe_problems, seeded_normal

# Prefixes of a whole model's state dict, tried in this order (transformers 5.x first).
VISION_PREFIXES = ("model.visual.", "visual.")
TEXT_PREFIXES = ("model.language_model.", "model.")


def text_weight_shapes(config: TextConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor of the language model (and lm_head unless tied) and its shape."""
    c = config
    h, kv = c.hidden_size, c.num_key_value_heads * c.head_dim
    shapes = {"embed_tokens.weight": (c.vocab_size, h)}
    for i in range(c.num_hidden_layers):
        b = f"layers.{i}."
        shapes.update({
            b + "input_layernorm.weight": (h,),
            b + "self_attn.q_proj.weight": (h, h),
            b + "self_attn.q_proj.bias": (h,),  # q, k and v have biases (Qwen2), o_proj has none
            b + "self_attn.k_proj.weight": (kv, h),
            b + "self_attn.k_proj.bias": (kv,),
            b + "self_attn.v_proj.weight": (kv, h),
            b + "self_attn.v_proj.bias": (kv,),
            b + "self_attn.o_proj.weight": (h, h),
            b + "post_attention_layernorm.weight": (h,),
            b + "mlp.gate_proj.weight": (c.intermediate_size, h),
            b + "mlp.up_proj.weight": (c.intermediate_size, h),
            b + "mlp.down_proj.weight": (h, c.intermediate_size),
        })
    shapes["norm.weight"] = (h,)
    if not c.tie_word_embeddings:
        shapes["lm_head.weight"] = (c.vocab_size, h)
    return shapes


def check_text_weights(weights, config: TextConfig):
    """Raise ValueError naming every missing or wrongly shaped tensor. Only shapes are read (np.shape), so
    a mapping that reads tensors on demand is not loaded."""
    expected = text_weight_shapes(config)
    missing = [name for name in expected if name not in weights]
    misshaped = [f"{name}: shape {tuple(np.shape(weights[name]))}, expected {shape}"
                 for name, shape in expected.items() if name in weights and tuple(np.shape(weights[name])) != shape]
    if missing or misshaped:
        raise ValueError("language-model weights do not fit the config:\n" + describe_problems(missing, [], misshaped))


def random_text_weights(config: TextConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 weights under HF names, reproducible across platforms (one stream per tensor, as
    `random_weights`): matrices ~ N(0, 1/fan_in), biases ~ 0.05 N(0, 1), norms ~ 1 + 0.1 N(0, 1), the
    embedding ~ N(0, 1) so that token rows are O(1) like the tower's rows."""
    weights = {}
    for name, shape in text_weight_shapes(config).items():
        w = seeded_normal(seed, "language_model." + name, shape)
        if name.endswith("norm.weight"):
            w = w * np.float32(0.1) + np.float32(1.0)
        elif name.endswith(".bias"):
            w *= np.float32(0.05)
        elif name != "embed_tokens.weight":
            w *= np.float32(1.0 / np.sqrt(shape[1]))
        weights[name] = w
    return weights


def split_model_weights(state_dict) -> tuple[dict, dict]:
    """A whole model's tensors by HF name (either layout) -> (tower weights, language-model weights), each
    under the names above. A name of neither part is a ValueError naming it (nothing is dropped)."""
    vision, text, unknown = {}, {}, []
    for name, value in state_dict.items():
        prefix = next((p for p in VISION_PREFIXES if name.startswith(p)), None)
        if prefix is not None:
            vision[name[len(prefix):]] = value
            continue
        if name == "lm_head.weight":
            text[name] = value
            continue
        prefix = next((p for p in TEXT_PREFIXES if name.startswith(p)), None)
        if prefix is None:
            unknown.append(name)
        else:
            text[name[len(prefix):]] = value
    if unknown:
        raise ValueError(f"{len(unknown)} tensors belong to neither the tower nor the language model: "
                         f"{', '.join(unknown[:10])}")
    return vision, text
