"""Qwen2.5-VL's language model (`Qwen2_5_VLTextModel` + `lm_head`) in NumPy.

Data flow (b = batch, s = sequence, h = hidden, heads / kv heads of head_dim d, V = vocabulary):

    inputs_embeds [b, s, h]  (token rows, the tower's rows already scattered into the placeholders)
    -> num_hidden_layers x decoder_layer:
         x + attention(rms_norm(x))   grouped-query, causal, mRoPE on q and k  ("attn_residual")
         x + swiglu_mlp(rms_norm(x))                                          ("output")
    -> rms_norm ("norm") -> lm_head [b, s, V] ("logits")

Precision: HF computes RMSNorm's mean of squares and the rotary tables in float32 whatever the model
dtype (so HF's "float64" model is not a float64 computation); the reference computes everything in
the `dtype` passed (float64 by default).

Weights come from a mapping under the names of `reference.text_weights`; each layer's tensors are read
and cast to `dtype` when that layer runs, and the embedding and lm_head are read by rows, so a mapping
that reads tensors on demand never holds the whole model in `dtype`.
"""

from __future__ import annotations

import numpy as np

from .activations import silu
from .mrope import apply_mrope, mrope_cos_sin
from .text_config import TextConfig
from .text_weights import check_text_weights
from .vision import linear, rms_norm

LOGIT_ROWS = 8192  # vocabulary rows of lm_head read (and cast) at a time


# ---------------------------------------------------------------- embedding and the vision rows


def embed(input_ids, weight, dtype=np.float64):  # [b, s] -> [b, s, h]
    ids, where = np.unique(input_ids, return_inverse=True)  # read each distinct row once
    return np.asarray(weight[ids], dtype=dtype)[where.reshape(np.shape(input_ids))]


def scatter_vision_rows(x, input_ids, token_id, rows, what="image"):  # [b, s, h], [n, h] -> [b, s, h]
    """The i-th placeholder (token_id), counted row-major over the batch, becomes the i-th vision row
    (HF: masked_scatter). A count that differs is a ValueError naming both counts."""
    mask = np.asarray(input_ids) == token_id  # [b, s]
    if int(mask.sum()) != len(rows):
        raise ValueError(f"{int(mask.sum())} {what} placeholder tokens (id {token_id}) in input_ids but the tower "
                         f"gave {len(rows)} {what} rows; they must be equal")
    x = x.copy()
    x[mask] = rows
    return x


# ---------------------------------------------------------------- attention


def causal_mask(seq, attention_mask=None):  # -> [b or 1, 1, s, s] bool, True = may attend
    allowed = np.tril(np.ones((seq, seq), dtype=bool))[None, None]  # query i sees keys 0..i
    if attention_mask is not None:  # padded keys are hidden from every query
        allowed = allowed & (np.asarray(attention_mask) != 0)[:, None, None, :]
    return allowed


def masked_softmax(scores, allowed):  # [..., s, s] -> [..., s, s]
    """Softmax over the allowed keys only; a query that may attend to nothing (a padded query on the
    left of the sequence) gets all-zero weights (HF's value there is not specified)."""
    scores = np.where(allowed, scores, -np.inf)
    top = scores.max(axis=-1, keepdims=True)
    e = np.exp(scores - np.where(np.isfinite(top), top, 0.0))  # exp(-inf) = 0 at hidden keys
    total = e.sum(axis=-1, keepdims=True)
    return e / np.where(total > 0, total, 1.0)


def grouped_query_attention(q, k, v, allowed):  # [b, H, s, d], [b, K, s, d] x 2 -> [b, H, s, d]
    """Query heads j*H/K .. (j+1)*H/K - 1 share key/value head j (HF's repeat_kv)."""
    b, heads, s, d = q.shape
    groups = k.shape[1]
    q = q.reshape(b, groups, heads // groups, s, d) * d ** -0.5  # [b, K, H/K, s, d]: group the query heads
    scores = q @ k[:, :, None].swapaxes(-1, -2)  # [b, K, H/K, s, s]
    weights = masked_softmax(scores, allowed[:, :, None])
    return (weights @ v[:, :, None]).reshape(b, heads, s, d)


def text_attention(x, cos, sin, allowed, q_proj, k_proj, v_proj, o_proj, num_heads, num_kv_heads):
    b, s, h = x.shape  # [b, s, h] -> [b, s, h]
    d = h // num_heads
    q = linear(x, **q_proj).reshape(b, s, num_heads, d)  # [b, s, H, d]
    k = linear(x, **k_proj).reshape(b, s, num_kv_heads, d)  # [b, s, K, d]
    v = linear(x, **v_proj).reshape(b, s, num_kv_heads, d)
    q, k = apply_mrope(q, cos, sin), apply_mrope(k, cos, sin)  # the multimodal rotary on q and k only
    o = grouped_query_attention(*(a.transpose(0, 2, 1, 3) for a in (q, k, v)), allowed)  # [b, H, s, d]
    return linear(o.transpose(0, 2, 1, 3).reshape(b, s, h), **o_proj)


# ---------------------------------------------------------------- layers


def swiglu_mlp(x, gate_proj, up_proj, down_proj):  # [b, s, h] -> [b, s, h]
    return linear(silu(linear(x, **gate_proj)) * linear(x, **up_proj), **down_proj)  # via [b, s, inter]


def decoder_layer(x, cos, sin, allowed, input_layernorm, self_attn, post_attention_layernorm, mlp, *, eps,
                  num_heads, num_kv_heads, trace=None):  # [b, s, h] -> [b, s, h]
    x = x + text_attention(rms_norm(x, **input_layernorm, eps=eps), cos, sin, allowed, **self_attn,
                           num_heads=num_heads, num_kv_heads=num_kv_heads)
    if trace is not None:
        trace["attn_residual"] = x
    return x + swiglu_mlp(rms_norm(x, **post_attention_layernorm, eps=eps), **mlp)


def lm_head(x, weight, dtype=np.float64):  # [b, s, h] -> [b, s, V]
    """x @ weight.T, reading `LOGIT_ROWS` vocabulary rows of the weight at a time."""
    vocab = np.shape(weight)[0]
    logits = np.empty(x.shape[:-1] + (vocab,), dtype=dtype)
    for start in range(0, vocab, LOGIT_ROWS):
        rows = np.asarray(weight[start:start + LOGIT_ROWS], dtype=dtype)  # [rows, h]
        logits[..., start:start + len(rows)] = x @ rows.T
    return logits


# ---------------------------------------------------------------- the language model


def layer_weights(weights, i, dtype):
    """Layer i's tensors as a nested dict of `dtype` arrays (read now, when the layer runs)."""
    prefix, tree = f"layers.{i}.", {}
    for name in [n for n in weights.keys() if n.startswith(prefix)]:
        *path, leaf = name[len(prefix):].split(".")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = np.asarray(weights[name], dtype=dtype)
    return tree


def language_forward(inputs_embeds, position_ids, weights, config: TextConfig, *, attention_mask=None,
                     dtype=np.float64, trace=None):
    """inputs_embeds [b, s, h], position_ids [3, b, s] -> logits [b, s, V].

    `attention_mask` [b, s] (non-zero = real token) hides padded keys; `trace`, a dict, receives
    `mrope_cos`, `mrope_sin` and the `lm.*` stages.
    """
    check_text_weights(weights, config)
    c, stages = config, ({} if trace is None else trace)
    x = np.asarray(inputs_embeds, dtype=dtype)  # [b, s, h]
    cos, sin = mrope_cos_sin(position_ids, c.head_dim, c.mrope_section, theta=c.rope_theta, dtype=dtype)  # [b, s, d]
    allowed = causal_mask(x.shape[1], attention_mask)  # [b or 1, 1, s, s]
    stages.update({"mrope_cos": cos, "mrope_sin": sin, "lm.inputs_embeds": x})
    for i in range(c.num_hidden_layers):
        layer = {}
        x = decoder_layer(x, cos, sin, allowed, **layer_weights(weights, i, dtype), eps=c.rms_norm_eps,
                          num_heads=c.num_attention_heads, num_kv_heads=c.num_key_value_heads, trace=layer)
        stages[f"lm.layers.{i}.attn_residual"], stages[f"lm.layers.{i}.output"] = layer["attn_residual"], x
    x = rms_norm(x, np.asarray(weights["norm.weight"], dtype=dtype), eps=c.rms_norm_eps)
    stages["lm.norm"] = x
    head = weights["embed_tokens.weight"] if c.tie_word_embeddings else weights["lm_head.weight"]
    stages["lm.logits"] = logits = lm_head(x, head, dtype)
    return logits
