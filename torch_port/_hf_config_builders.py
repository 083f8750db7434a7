"""Model builders that take their sizes from an HF ``config.json``: for configs of any size.

``qwen2_5_vl_3b`` / ``lora_qwen2_5_vl_3b`` fix the released sizes. A torchtune config for another
size (a fine-tuned variant, a tiny test model) names these instead, with the folder it trains::

    model:
      _component_: torch_port.qwen2_5_vl_from_hf_config
      config: /tmp/my-qwen2.5-vl/config.json

The fields are read by the same rules as ``load_hf_model`` (``text_kwargs`` / ``encoder_kwargs``:
missing sizes and unsupported options are refused by name). torchtune is imported when a model is built.
"""

import json
from pathlib import Path
from typing import List, Optional

from ._component_builders import qwen2_5_vision_encoder, qwen2_5_vl
from ._config import encoder_kwargs
from ._lora import lora_qwen2_5_vl
from ._model_loading import text_kwargs

__all__ = ["lora_qwen2_5_vl_from_hf_config", "qwen2_5_vl_from_hf_config"]


def _read(config) -> dict:
    if isinstance(config, dict):
        return config
    path = Path(config)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"HF config {path} not found")
    return json.loads(path.read_text())


def _sizes(config, max_seq_len: Optional[int]) -> dict:
    config = _read(config)
    if not isinstance(config.get("vision_config"), dict):
        raise ValueError("HF config has no vision_config dict")
    kwargs = text_kwargs(config)
    if max_seq_len is not None:
        kwargs["max_seq_len"] = max_seq_len
    kwargs["encoder"] = qwen2_5_vision_encoder(**encoder_kwargs(config["vision_config"]))
    return kwargs


def qwen2_5_vl_from_hf_config(config, *, max_seq_len: Optional[int] = None, **kwargs):
    """``qwen2_5_vl`` with the sizes of an HF config.

    Args:
        config (str | dict): ``config.json`` path, its folder, or the dict (either HF layout).
        max_seq_len (int | None): KV-cache / rotary-table length; default the config's.
        **kwargs: ``decoder_trainable``, ``encoder_trainable``.
    """
    return qwen2_5_vl(**_sizes(config, max_seq_len), **kwargs)


def lora_qwen2_5_vl_from_hf_config(
    config,
    lora_attn_modules: List[str],
    apply_lora_to_mlp: bool = False,
    apply_lora_to_output: bool = False,
    *,
    lora_rank: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    use_dora: bool = False,
    quantize_base: bool = False,
    max_seq_len: Optional[int] = None,
    encoder_trainable: bool = False,
):
    """``lora_qwen2_5_vl`` with the sizes of an HF config (``config`` as in ``qwen2_5_vl_from_hf_config``)."""
    return lora_qwen2_5_vl(
        lora_attn_modules, apply_lora_to_mlp, apply_lora_to_output, **_sizes(config, max_seq_len),
        lora_rank=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout, use_dora=use_dora,
        quantize_base=quantize_base, encoder_trainable=encoder_trainable,
    )
