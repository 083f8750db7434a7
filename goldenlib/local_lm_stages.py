"""One language-model stage recomputed on its own, in float64, from given inputs: the spec's formula or a
variant of it (the language side of ``goldenlib.local_stages``; the same use: local verdicts of a dump
and the hypotheses that tell precision, formula, positions and order apart).

Stage inputs (whole-model golden names):

    mrope_cos, mrope_sin             <- position_ids
    lm.inputs_embeds                 <- input_ids, visual.output (images), visual_video.output (videos)
    lm.layers.{i}.attn_residual      <- lm.inputs_embeds (i = 0) or lm.layers.{i-1}.output, mrope_cos, mrope_sin
    lm.layers.{i}.output             <- lm.layers.{i}.attn_residual (the layer's MLP half)
    lm.norm                          <- lm.layers.{last}.output
    lm.logits                        <- lm.norm
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reference.language import causal_mask, embed, layer_weights, lm_head, swiglu_mlp, text_attention
from reference.model import text_positions
from reference.mrope import mrope_cos_sin
from reference.vision import rms_norm

from .local_stages import round_to, round_tree


@dataclass(frozen=True)
class LMVariant:
    """How a language-model stage is recomputed; the default is the spec. Roundings as
    ``goldenlib.local_stages.Variant``; ``eps``: another RMSNorm eps; ``positions_1d``: the rotary of
    plain positions 0..s-1 on all three rows (HF 5.x without ``mm_token_type_ids``); ``sections_rotated``:
    section i of the rotary takes position row (i + 1) % 3; ``sections``: another split of the frequencies
    between the three rows (``mrope_section`` permuted); ``scatter_shift``: the vision rows written k
    rows after their placeholders."""

    inputs: str | None = None
    weights: str | None = None
    output: str | None = None
    eps: float | None = None
    positions_1d: bool = False
    sections_rotated: bool = False
    sections: tuple | None = None  # another split of the rotary's frequencies between t, h, w
    scatter_shift: int = 0


LM_SPEC = LMVariant()


def lm_stage_inputs(stage, num_layers):
    """The stages ``stage`` is computed from, or None when it is not a stage recomputed here."""
    if stage in ("mrope_cos", "mrope_sin"):
        return ("position_ids",)
    if stage == "lm.inputs_embeds":
        return ("input_ids",)  # and the towers' outputs, where the case has them (optional inputs)
    if stage.startswith("lm.layers."):
        _, _, i, half = stage.split(".")
        i = int(i)
        if half == "attn_residual":
            return ("lm.inputs_embeds" if i == 0 else f"lm.layers.{i - 1}.output", "mrope_cos", "mrope_sin")
        return (f"lm.layers.{i}.attn_residual",)
    if stage == "lm.norm":
        return (f"lm.layers.{num_layers - 1}.output",)
    if stage == "lm.logits":
        return ("lm.norm",)
    return None


def _cos_sin(position_ids, text, variant):
    sections = tuple(text.mrope_section if variant.sections is None else variant.sections)
    positions = np.asarray(position_ids, np.int64)
    if variant.positions_1d:
        positions = text_positions(*positions.shape[1:])
    if variant.sections_rotated:
        positions = positions[[1, 2, 0]]  # section i reads row (i + 1) % 3
    return mrope_cos_sin(positions, text.head_dim, sections, theta=text.rope_theta, dtype=np.float64)


def _embeds(inputs, weights, config, variant):
    ids = np.asarray(inputs["input_ids"])
    x = embed(ids, weights["embed_tokens.weight"], np.float64)
    for token_id, tower in ((config.image_token_id, "visual.output"), (config.video_token_id, "visual_video.output")):
        if tower not in inputs:
            continue
        where = np.argwhere(ids == token_id)  # [n, 2] row-major over the batch, as HF's masked_scatter
        rows = np.asarray(inputs[tower], np.float64)
        if len(where) != len(rows):
            return None
        b, s = where[:, 0], np.clip(where[:, 1] + variant.scatter_shift, 0, ids.shape[1] - 1)
        x[b, s] = rows
    return x


def recompute_lm(stage, inputs, weights, config, variant=LM_SPEC):
    """``stage`` of the whole model (``config``: ``reference.ModelConfig``) recomputed in float64 from
    ``inputs`` ({stage: array}) with the language model's ``weights`` (``reference.text_weights`` names),
    as ``variant`` says; None when it is not recomputed here or an input is missing."""
    text, v = config.text, variant
    needed = lm_stage_inputs(stage, text.num_hidden_layers)
    if needed is None or any(name not in inputs for name in needed):
        return None
    eps = text.rms_norm_eps if v.eps is None else v.eps
    if stage in ("mrope_cos", "mrope_sin"):
        cos, sin = _cos_sin(inputs["position_ids"], text, v)
        return round_to(cos if stage == "mrope_cos" else sin, v.output)
    if stage == "lm.inputs_embeds":
        out = _embeds(inputs, weights, config, v)
        return None if out is None else round_to(out, v.output)
    x = round_to(inputs[needed[0]], v.inputs)
    if stage.startswith("lm.layers."):
        i = int(stage.split(".")[2])
        layer = round_tree(layer_weights(weights, i, np.float64), v.weights)
        if stage.endswith(".attn_residual"):
            cos, sin = (np.asarray(inputs[name], np.float64) for name in ("mrope_cos", "mrope_sin"))
            if v.positions_1d or v.sections_rotated or v.sections is not None:
                cos, sin = _cos_sin(inputs["position_ids"], text, v) if "position_ids" in inputs else (None, None)
                if cos is None:
                    return None
            allowed = causal_mask(x.shape[1], inputs.get("attention_mask"))
            out = x + text_attention(rms_norm(x, **layer["input_layernorm"], eps=eps), cos, sin, allowed,
                                     **layer["self_attn"], num_heads=text.num_attention_heads,
                                     num_kv_heads=text.num_key_value_heads)
        else:
            out = x + swiglu_mlp(rms_norm(x, **layer["post_attention_layernorm"], eps=eps), **layer["mlp"])
    elif stage == "lm.norm":
        out = rms_norm(x, round_to(weights["norm.weight"], v.weights), eps=eps)
    else:
        head = weights["embed_tokens.weight"] if text.tie_word_embeddings else weights["lm_head.weight"]
        out = lm_head(x, round_to(head, v.weights), np.float64)
    return round_to(out, v.output)
