"""The one stage vocabulary: every stage name a golden stores, its kind and its place in the pipeline.

``parity/`` (the verdicts), ``goldenlib/`` (drift report, metadata) and ``generate_golden.py`` all read
stage names, kinds and order from here; nothing else spells them out.

Names (``docs/golden-format.md``): image stages per image (``resized``; ``resized.1`` for a second
image), the processor's outputs, the positions stages, then each tower's stages under the tower's
name (``tiny_a.blocks.0.output``). Kinds are the keys of the tolerance table
(``goldenlib.tolerances.PARITY_TOLERANCES``) plus ``positions`` (exact integers) and ``text_rotary``.
"""

from __future__ import annotations

# The image / video processor, per image, in pipeline order (``input``: the decoded file, not compared;
# ``sampled`` and ``padded``: a video's frames; ``rescaled_normalized``: the torchvision backend's fused step).
IMAGE_PIPELINE = ("input", "rgb", "sampled", "resized", "rescaled", "rescaled_normalized", "normalized", "padded")
# What a port's image stages are compared on (the input is given, not computed).
IMAGE_STAGES = IMAGE_PIPELINE[1:]
# The processor's outputs (one per case, all images together).
PROCESSOR_OUTPUTS = ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts")
PIXEL_OUTPUTS = ("pixel_values", "pixel_values_videos")
# What the language model sees: the positions cases' stages, pipeline order; all integers but the text rotary.
POSITION_STAGES = ("input_ids", "attention_mask", "expanded_input_ids", "mm_token_type_ids", "position_ids", "deltas",
                   "mrope_cos", "mrope_sin")
TEXT_ROTARY = ("mrope_cos", "mrope_sin")
# A tower's stages before its blocks, in trace order; then blocks.{i}.attn_residual, blocks.{i}.output; then the merger.
TOWER_HEAD = ("patch_embed", "rotary_cos", "rotary_sin", "window_index", "cu_seqlens", "cu_window_seqlens")
TOWER_TAIL = ("merger.ln_q", "output")
BLOCK_STAGES = ("attn_residual", "output")
# The language model's stages (whole-model goldens), after the towers: layer i's two halves, then the head.
LM_HEAD = ("lm.inputs_embeds",)
LM_LAYER_STAGES = ("attn_residual", "output")
LM_TAIL = ("lm.norm", "lm.logits")
LM_KINDS = {"lm.inputs_embeds": "lm_embeds", "lm.norm": "lm_norm", "lm.logits": "lm_logits"}
LM_LAYER_KINDS = {"attn_residual": "lm_attn_residual", "output": "lm_layer_output"}
# The towers of a whole model: the images' run and the videos' run (HF runs them apart).
MODEL_TOWERS = ("visual", "visual_video")
# Integer tower stages (and second_per_grid_ts, a float computed from integers): exact.
INDEX_STAGES = ("window_index", "cu_seqlens", "cu_window_seqlens", "image_grid_thw", "video_grid_thw",
                "second_per_grid_ts")
# Kinds compared exactly whatever the dtype.
EXACT_KINDS = ("image", "index", "positions")


def block_stages(depth):
    """blocks.{i}.attn_residual, blocks.{i}.output for every block, in order."""
    return tuple(f"blocks.{i}.{s}" for i in range(depth) for s in BLOCK_STAGES)


def tower_stages(depth):
    """Every stage a tower of ``depth`` blocks traces, in trace order (unprefixed)."""
    return TOWER_HEAD + block_stages(depth) + TOWER_TAIL


def tower_stage_order(stages, depth):
    """The unprefixed tower stage names among ``stages``, in trace order."""
    return [s for s in tower_stages(depth) if s in stages]


def is_lm_stage(stage):
    return stage.startswith("lm.")


def stage_kind(stage):
    """The tolerance kind of an unprefixed stage name (``blocks.3.output`` -> ``block_output``,
    ``lm.layers.2.output`` -> ``lm_layer_output``)."""
    if is_lm_stage(stage):
        kind = LM_LAYER_KINDS.get(stage.rsplit(".", 1)[-1]) if stage.startswith("lm.layers.") else LM_KINDS.get(stage)
        if kind is None:
            raise ValueError(f"unknown stage {stage!r}")
        return kind
    root = stage.split(".")[0]
    if root in INDEX_STAGES:
        return "index"
    if root in IMAGE_STAGES + PIXEL_OUTPUTS:
        return "image"
    if root in TEXT_ROTARY:
        return "text_rotary"
    if root in POSITION_STAGES:
        return "positions"
    if stage.startswith("rotary_"):
        return "rotary"
    if stage.startswith("blocks."):
        return "attn_residual" if stage.endswith(".attn_residual") else "block_output"
    if stage in ("patch_embed", "merger.ln_q", "output"):
        return stage
    raise ValueError(f"unknown stage {stage!r}")


def is_image_stage(stage):
    """Whether ``stage`` (unprefixed) belongs to the image/video processor (not a tower, not positions)."""
    return stage.split(".")[0] in IMAGE_PIPELINE + PROCESSOR_OUTPUTS


def image_index(stage):
    """The image number of a per-image stage (``resized.1`` -> 1; ``resized`` -> 0)."""
    _, _, index = stage.partition(".")
    return int(index) if index.isdigit() else 0


def split_tower(name, towers):
    """(tower or None, unprefixed stage) of a golden name, ``towers`` being the tower names."""
    head, _, rest = name.partition(".")
    return (head, rest) if head in towers and rest else (None, name)


def tower_depths(names):
    """{tower: depth} of the towers whose stages ``names`` holds (a prefix with a ``patch_embed``,
    ``blocks.{i}`` or ``merger`` stage; depth: the last block stored + 1), in name order."""
    depths = {}
    for name in names:
        head, _, rest = name.partition(".")
        if head == "lm" or not rest:
            continue
        if rest.startswith("blocks."):
            depths[head] = max(depths.get(head, 0), int(rest.split(".")[1]) + 1)
        elif rest in TOWER_HEAD + TOWER_TAIL:
            depths.setdefault(head, 0)
    return dict(sorted(depths.items()))


def pipeline_rank(name, towers):
    """Where golden name ``name`` sits in the pipeline (a sort key, comparable across cases): image
    stages image by image, the processor's outputs, the positions stages, then each tower
    (``towers``: {name: depth}, in that order) in trace order, then the language model; names not in
    the vocabulary last."""
    if is_lm_stage(name):
        parts = name.split(".")
        if name in LM_HEAD:
            return (4, 0, 0, 0)
        if parts[1] == "layers" and len(parts) == 4 and parts[2].isdigit():
            return (4, 1, int(parts[2]), LM_LAYER_STAGES.index(parts[3]) if parts[3] in LM_LAYER_STAGES else 9)
        return (4, 2, LM_TAIL.index(name) if name in LM_TAIL else 9, 0)
    tower, base = split_tower(name, towers)
    if tower is not None:
        order = tower_stages(towers[tower])
        return (3, list(towers).index(tower), order.index(base) if base in order else len(order), 0)
    root = base.split(".")[0]
    if root in IMAGE_PIPELINE and base not in POSITION_STAGES:
        return (0, image_index(base), IMAGE_PIPELINE.index(root), 0)
    if root in PROCESSOR_OUTPUTS:
        return (1, PROCESSOR_OUTPUTS.index(root), 0, 0)
    if root in POSITION_STAGES:
        return (2, POSITION_STAGES.index(root), 0, 0)
    return (5, 0, 0, 0)


def pipeline_order(names, towers=None):
    """Golden names in pipeline order (:func:`pipeline_rank`; unknown names last, sorted); ``towers``
    ({name: depth}) as the names show them (:func:`tower_depths`) when not given."""
    towers = tower_depths(names) if towers is None else towers
    return sorted(names, key=lambda name: (pipeline_rank(name, towers), name))


def case_stages(names):
    """The stage list a golden's metadata states: ``names`` (its tensors) in pipeline order."""
    return pipeline_order(list(names))
