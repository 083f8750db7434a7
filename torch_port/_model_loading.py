"""Load a whole HF Qwen2.5-VL (config dict + state dict) into the fused torchtune model.

Config layouts accepted (both are what HF's ``Qwen2_5_VLConfig`` reads):

* released ``config.json``: text fields at the top level, ``rope_theta`` and
  ``rope_scaling = {"type"/"rope_type": "mrope"|"default", "mrope_section": [...]}``, ``vision_config``;
* transformers 5.x ``Qwen2_5_VLConfig(...).to_dict()``: ``text_config`` with ``rope_parameters``.

Rules (every error names the field and value):

* the text sizes ``vocab_size``, ``hidden_size``, ``intermediate_size``, ``num_hidden_layers``,
  ``num_attention_heads``, ``num_key_value_heads`` must be given: HF would fill them with its class
  defaults (the 72B's sizes), this loader refuses to guess, as the vision loader does;
* other fields take HF's class defaults: ``rms_norm_eps`` 1e-5, ``rope_theta`` 1e6, ``mrope_section``
  [16, 24, 24], ``max_position_embeddings`` 32768, ``tie_word_embeddings`` False (the outer value or,
  as HF's backward-compatibility rule, the text config's), image / video ids 151655 / 151656;
* refused, because the port does not implement them: a rope type other than default/mrope,
  ``use_sliding_window`` true or ``sliding_attention`` layers, ``attention_dropout`` != 0 (HF
  applies it in training), ``hidden_act`` other than silu, a ``head_dim`` other than
  hidden_size / num_attention_heads (HF's text attention ignores it; its rotary would not);
* the vision config follows ``_config.encoder_kwargs`` (the reference's rules);
* weights: one error lists every missing, unexpected and misshaped key (HF names); non-finite
  weights are refused by name; a tied model's ``lm_head.weight``, when present, must equal the
  embedding and is dropped.
"""

import torch

from ._checkpoint import load_checked
from ._component_builders import qwen2_5_vision_encoder, qwen2_5_vl
from ._config import encoder_kwargs
from ._convert_weights import _DECODER, _OUTPUT, drop_tied_output, qwen2_5_vl_hf_to_tune_with_origin

__all__ = ["load_hf_model", "text_kwargs"]

TEXT_REQUIRED = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
)
# HF Qwen2_5_VLTextConfig class defaults, quoted when a required field is missing
HF_TEXT_DEFAULTS = {
    "vocab_size": 152064,
    "hidden_size": 8192,
    "intermediate_size": 29568,
    "num_hidden_layers": 80,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
}
_ROPE_TYPES = ("default", "mrope")


def _text_config(config: dict) -> dict:
    text = config.get("text_config")
    if text is None:
        return config  # released layout: text fields at the top level
    if hasattr(text, "to_dict"):
        text = text.to_dict()
    if not isinstance(text, dict):
        raise ValueError(f"text_config must be a dict, got {type(text).__name__}")
    return text


def text_kwargs(config) -> dict:
    """HF ``Qwen2_5_VLConfig`` dict (either layout) -> ``qwen2_5_vl`` keyword arguments (without the encoder).

    Raises:
        ValueError: a missing size or a field the port does not honour, named with its value.
    """
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict (an HF Qwen2_5_VLConfig), got {type(config).__name__}")
    text = _text_config(config)
    missing = [name for name in TEXT_REQUIRED if text.get(name) is None]
    if missing:
        raise ValueError(
            f"text config lacks {missing}; HF would silently use its defaults "
            f"{ {name: HF_TEXT_DEFAULTS[name] for name in missing} }, refusing to guess"
        )
    for name in TEXT_REQUIRED:
        value = text[name]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"text config {name} must be a positive int, got {value!r}")
    rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in _ROPE_TYPES:
        raise ValueError(f"text config rope type {rope_type!r} is not supported; only {list(_ROPE_TYPES)}")
    if text.get("use_sliding_window") or "sliding_attention" in (text.get("layer_types") or []):
        raise ValueError(
            f"text config use_sliding_window={text.get('use_sliding_window')!r} / layer_types with "
            "sliding_attention: sliding-window attention is not implemented by the port"
        )
    if text.get("attention_dropout", 0.0) not in (0, 0.0, None):
        raise ValueError(f"text config attention_dropout={text['attention_dropout']!r}: only 0 is supported")
    if text.get("hidden_act", "silu") != "silu":
        raise ValueError(f"text config hidden_act={text['hidden_act']!r}: only 'silu' is supported")
    hidden, heads = text["hidden_size"], text["num_attention_heads"]
    if hidden % heads:
        raise ValueError(f"text config hidden_size={hidden} is not divisible by num_attention_heads={heads}")
    if text.get("head_dim") not in (None, hidden // heads):
        raise ValueError(f"text config head_dim={text['head_dim']!r} differs from hidden_size / "
                         f"num_attention_heads = {hidden // heads}, which HF's text attention uses")
    tied = bool(config.get("tie_word_embeddings") or text.get("tie_word_embeddings"))
    return {
        "vocab_size": text["vocab_size"],
        "num_layers": text["num_hidden_layers"],
        "num_heads": heads,
        "num_kv_heads": text["num_key_value_heads"],
        "embed_dim": hidden,
        "intermediate_dim": text["intermediate_size"],
        "max_seq_len": int(text.get("max_position_embeddings") or 32768),
        "norm_eps": float(text.get("rms_norm_eps", 1e-5)),
        "rope_base": float(rope.get("rope_theta", text.get("rope_theta", 1_000_000.0))),
        "mrope_section": list(rope.get("mrope_section", (16, 24, 24))),
        "tie_word_embeddings": tied,
        "image_token_id": int(config.get("image_token_id", 151655)),
        "video_token_id": int(config.get("video_token_id", 151656)),
    }


def load_hf_model(
    config_dict,
    state_dict: dict[str, torch.Tensor],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    max_seq_len: int | None = None,
):
    """Build ``Qwen2_5_VLEarlyFusionModel`` from an HF config dict and load an HF state dict into it.

    Args:
        config_dict (dict): HF ``Qwen2_5_VLConfig`` as a dict, released or transformers-5 layout.
        state_dict (dict[str, torch.Tensor]): HF weights, released or transformers-5 key layout
            (``qwen2_5_vl_hf_to_tune``); a tied checkpoint may lack ``lm_head.weight``.
        dtype (torch.dtype): parameter dtype (float32 by default, whatever the checkpoint's); the
            parameters are copies, never the caller's tensors.
        device: where the parameters go.
        max_seq_len (int | None): KV-cache / rotary-table length; default the config's
            ``max_position_embeddings``.

    Returns:
        Qwen2_5_VLEarlyFusionModel: in eval mode, every parameter trainable.

    Raises:
        ValueError: config fields (see the module docstring), or weights: every missing, unexpected
            and misshaped key in one error, non-finite values by key.
    """
    kwargs = text_kwargs(config_dict)
    if max_seq_len is not None:
        kwargs["max_seq_len"] = max_seq_len
    config = config_dict.to_dict() if hasattr(config_dict, "to_dict") else config_dict
    if not isinstance(config.get("vision_config"), dict):
        raise ValueError("config has no vision_config dict")
    with torch.device("meta"):  # no memory, no init: every parameter comes from the state dict
        model = qwen2_5_vl(encoder=qwen2_5_vision_encoder(**encoder_kwargs(config["vision_config"])), **kwargs)

    converted, origin = qwen2_5_vl_hf_to_tune_with_origin(state_dict)
    problems = []
    if kwargs["tie_word_embeddings"] and not drop_tied_output(converted):
        problems.append(f"{origin[_DECODER + _OUTPUT]!r} differs from the token embedding in a tied model "
                        "(tie_word_embeddings is true)")
    load_checked(model, converted, origin, problems, hf_name=_hf_name, what="HF state dict", dtype=dtype,
                 device=device, copy=True)
    # non-persistent buffers (the mRoPE tables) were built on meta: rebuild them where the weights are
    for module in model.modules():
        if hasattr(module, "rope_init") and any(b.is_meta for b in module.buffers(recurse=False)):
            module.rope_init(device=torch.device(device))
    leftover = [name for name, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftover:
        raise RuntimeError(f"tensors left on the meta device after loading: {leftover}")
    return model.eval()


def _hf_name(tune_key: str) -> str:
    from ._convert_weights import qwen2_5_vl_tune_to_hf

    try:
        return next(iter(qwen2_5_vl_tune_to_hf({tune_key: torch.empty(0)})))
    except ValueError:
        return tune_key
