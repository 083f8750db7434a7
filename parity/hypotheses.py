"""Why one stage differs on its own: precision (a rounding explains it) or formula (nothing does).

A stage whose LOCAL error (the implementation's stage against the spec recomputed in float64 from the
implementation's own input to it) is beyond its tolerance is recomputed again under each hypothesis
(``goldenlib.local_stages.Variant``):

* precision: the stage's inputs, its weights, both, its intermediate operands (attention q/k/v,
  the MLP's activation output) or its output rounded to bfloat16 or float16, the rest in float64;
* formula: another RMSNorm eps (1e-5 for 1e-6), another activation (the tanh GELU or quick GELU for
  the merger's exact GELU; GELU forms for the blocks' SiLU).

* order: a window block's attention applied to rows left in merge-block order (no window_index
  permutation before block 0).

A hypothesis explains the stage when the implementation's stage sits within ``threshold`` of its
recomputation (the stage's float32 local bound, or HF's own float32 error at that stage as the golden
records it, whichever is larger) and much closer than to the spec. Precision is named only then;
otherwise the difference is the stage's formula, named when a formula hypothesis explains it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from goldenlib.local_lm_stages import LMVariant, recompute_lm
from goldenlib.local_stages import Variant, recompute
from goldenlib.tolerances import rel_error

LOW_PRECISIONS = ("float16", "bfloat16")
# Where each rounding happens, in words (the attribution names it).
ROUNDINGS = {
    ("inputs",): "its inputs rounded to {dtype}",
    ("weights",): "its weights rounded to {dtype}",
    ("inputs", "weights"): "its inputs and weights rounded to {dtype}",
    ("operands",): "its {operands} rounded to {dtype}",
    ("output",): "its output rounded to {dtype}",
    ("inputs", "weights", "output"): "its inputs, weights and output rounded to {dtype}",
}
OPERANDS = {"attn_residual": "q, k, v", "block_output": "the MLP's activation output",
            "output": "the merger's GELU output"}
ALTERNATIVE_EPS = (1e-5, 1e-8)
ALTERNATIVE_ACTS = {"gelu": ("gelu_pytorch_tanh", "quick_gelu"), "silu": ("gelu", "gelu_pytorch_tanh", "quick_gelu")}
ACT_NAMES = {"gelu_pytorch_tanh": "GELU's tanh approximation", "quick_gelu": "quick GELU (x * sigmoid(1.702 x))",
             "gelu": "the exact GELU"}
# A hypothesis must bring the error down at least this much to explain it (not just sit in the noise).
MIN_GAIN = 4.0


@dataclass
class Explanation:
    kind: str  # "precision", "formula" or "order"
    what: str  # in words: "inputs and weights rounded to float16", "RMSNorm eps 1e-05"
    residual: float  # the stage's rel error against the hypothesis' recomputation
    variant: Variant

    @property
    def line(self):
        return f"{self.kind}: {self.what} (residual {self.residual:.2g})"


def precision_variants(kind):
    """(what, Variant) for every rounding hypothesis of a stage of ``kind``."""
    out = []
    for dtype in LOW_PRECISIONS:
        for fields, text in ROUNDINGS.items():
            if fields == ("operands",) and kind not in OPERANDS:
                continue
            what = text.format(dtype=dtype, operands=OPERANDS.get(kind, ""))
            out.append((what, Variant(**{field: dtype for field in fields})))
        if kind == "attn_residual":
            out.append((f"its k and v rounded to {dtype} (a {dtype} K/V, as flash attention kernels keep it)",
                        Variant(operands=dtype, kv_only=True)))
    return out


def valued_in(values, dtype):
    """Whether every value is a ``dtype`` number (what a stage computed in that dtype and widened holds)."""
    from goldenlib.local_stages import round_to

    return bool(np.array_equal(round_to(values, dtype), values))


def computed_in(values, kind, local_error, bounds):
    """The low precision a stage was evidently computed in: its values are all that dtype's numbers
    and its local error is within that dtype's local bound (``bounds(kind, dtype)``); else None."""
    for dtype in ("float16", "bfloat16"):
        bound = bounds(kind, dtype)
        if bound is not None and local_error <= bound and valued_in(values, dtype):
            return dtype
    return None


def formula_variants(kind, act):
    """(what, Variant) for every formula hypothesis of a stage of ``kind`` (``act``: the spec's activation)."""
    out = []
    if kind in ("attn_residual", "block_output", "merger.ln_q"):
        out += [(f"RMSNorm eps {eps:g} (the spec: 1e-06)", Variant(eps=eps)) for eps in ALTERNATIVE_EPS]
    if kind in ("block_output", "output"):
        out += [(f"the activation is {ACT_NAMES.get(a, a)} where the spec has {ACT_NAMES.get(act, act)}",
                 Variant(act=a)) for a in ALTERNATIVE_ACTS.get(act, ())]
    return out


def order_variants(stage, kind, config):
    """The window-order hypothesis of a window block's attention half."""
    if kind != "attn_residual" or int(stage.split(".")[1]) in config.fullatt_block_indexes:
        return []
    return [("the window segments applied to rows left in merge-block order (no window_index permutation before "
             "block 0): the window order", Variant(window_order=False))]


def _best(values, kind, local_error, threshold, bounds, candidates, variant_class):
    """The best :class:`Explanation` among ``candidates`` ((family, what, variant, recomputed stage), made
    lazily), or None; a stage evidently computed in a low precision (:func:`computed_in`) first."""
    low = computed_in(values, kind, local_error, bounds)
    if low is not None:
        return Explanation("precision", f"the stage computed in {low} (every value a {low} number, local error within "
                                        f"the {low} bound {bounds(kind, low):.2g})", local_error,
                           variant_class(output=low))
    best = None
    for family, what, variant, expected in candidates:
        if expected is None or np.shape(expected) != np.shape(values):
            continue
        residual = rel_error(values, expected)
        if residual <= threshold and residual * MIN_GAIN <= local_error and (best is None or residual < best.residual):
            best = Explanation(family, what, residual, variant)
    return best


def explain(stage, kind, values, local_error, inputs, weights, config, grid, threshold, act, bounds):
    """The best :class:`Explanation` of a tower stage whose local error is beyond its tolerance, or None
    (a formula difference nothing here names). ``values``: the implementation's stage (float64);
    ``inputs``: what it was computed from (its own where it has them); ``bounds(kind, dtype)``: the
    local bounds."""
    families = (("precision", precision_variants(kind)), ("formula", formula_variants(kind, act)),
                ("order", order_variants(stage, kind, config)))
    candidates = ((family, what, variant, recompute(stage, inputs, weights, config, grid, variant))
                  for family, variants in families for what, variant in variants)
    return _best(values, kind, local_error, threshold, bounds, candidates, Variant)


# ------------------------------------------------------------------ the language model's stages

LM_ROUNDINGS = {fields: text for fields, text in ROUNDINGS.items() if "operands" not in fields}


def lm_variants(stage, kind, spec_eps, spec_sections):
    """(family, what, LMVariant) for every hypothesis of a language-model stage (or the text rotary)."""
    out = []
    for dtype in LOW_PRECISIONS:
        for fields, text in LM_ROUNDINGS.items():
            if stage in ("lm.inputs_embeds", "mrope_cos", "mrope_sin") and fields != ("output",):
                continue  # a row lookup, a table of positions: only the output can be rounded
            out.append(("precision", text.format(dtype=dtype), LMVariant(**{f: dtype for f in fields})))
    if kind in ("lm_attn_residual", "lm_layer_output", "lm_norm"):
        out += [("formula", f"RMSNorm eps {eps:g} (the config's: {spec_eps:g})", LMVariant(eps=eps))
                for eps in (1e-5, 1e-6) if eps != spec_eps]
    if kind in ("lm_attn_residual", "text_rotary"):
        out.append(("formula", "the mRoPE sections take the position rows rotated (section i reads row (i + 1) % 3, "
                               "not t, h, w)", LMVariant(sections_rotated=True)))
        out += [("formula", f"mrope_section {list(p)} where the config says {list(spec_sections)}",
                 LMVariant(sections=p)) for p in sorted(set(itertools.permutations(spec_sections)))
                if p != tuple(spec_sections)]
    if kind == "lm_attn_residual":
        out.append(("positions", "1-D positions (0..s-1 on all three rows): HF 5.x called without "
                                 "mm_token_type_ids, or a port that ignores the grids", LMVariant(positions_1d=True)))
    if stage == "lm.inputs_embeds":
        out += [("order", f"the vision rows scattered {abs(k)} row(s) {'after' if k > 0 else 'before'} their "
                          "placeholders", LMVariant(scatter_shift=k)) for k in (1, -1)]
    return out


def explain_lm(stage, kind, values, local_error, inputs, weights, config, threshold, bounds):
    """The best :class:`Explanation` of a language-model stage (or text rotary table) whose local error is
    beyond its bound, or None (a formula difference nothing here names)."""
    variants = lm_variants(stage, kind, config.text.rms_norm_eps, tuple(config.text.mrope_section))
    candidates = ((family, what, variant, recompute_lm(stage, inputs, weights, config, variant))
                  for family, what, variant in variants)
    return _best(values, kind, local_error, threshold, bounds, candidates, LMVariant)
