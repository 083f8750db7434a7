"""Converted weights -> a module built on the meta device, checked: every problem named by the key it came from.

One error lists every missing, unexpected and misshaped key; non-finite tensors are refused by
name; parameters are cast and assigned where they go, and mRoPE's frequency buffers rebuilt there.
"""

from __future__ import annotations

import torch

from ._convert_weights import hf_key_name

__all__ = ["check_finite", "load_checked"]

def check_finite(state_dict: dict[str, torch.Tensor]) -> None:
    """Refuse weights holding NaN or Inf, naming every such tensor (they would poison every output)."""
    bad = []
    for key, value in state_dict.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            nan, inf = int(torch.isnan(value).sum()), int(torch.isinf(value).sum())
            bad.append(f"{key!r} ({nan} NaN, {inf} Inf)")
    if bad:
        raise ValueError(f"non-finite values in {len(bad)} weight tensor(s): " + ", ".join(bad))


def load_checked(module, converted: dict, origin: dict, problems: list, *, what: str,
                 dtype: torch.dtype, device, copy: bool) -> None:
    """Load ``converted`` (port keys -> tensors) into ``module`` (built on meta) after checking it.

    Every missing, misshaped and unexpected key (plus the caller's ``problems``) goes into one
    ValueError, non-finite tensors into another (:func:`check_finite`), each named by the key it
    came from (``origin``: port key -> source key; missing keys by their HF name). Parameters are
    cast to ``dtype`` on ``device`` and assigned; meta buffers with a ``rope_init`` (mRoPE's
    frequencies) are rebuilt there.
    """
    expected = module.state_dict()
    for key, value in expected.items():
        if key not in converted:
            problems.append(f"missing key {key!r} (HF {hf_key_name(key)!r})")
        elif tuple(converted[key].shape) != tuple(value.shape):
            problems.append(f"shape mismatch for {origin[key]!r}: got {tuple(converted[key].shape)}, "
                            f"expected {tuple(value.shape)} (as {key!r})")
    problems += [f"unexpected key {origin[k]!r} (as {k!r})" for k in converted if k not in expected]
    if problems:
        raise ValueError(f"{what} does not fit the config ({len(problems)} problems):\n  " + "\n  ".join(problems))
    check_finite({origin[k]: v for k, v in converted.items()})
    params = {k: v.detach().to(device=device, dtype=dtype, copy=copy) for k, v in converted.items()}
    module.load_state_dict(params, strict=True, assign=True)
    # non-persistent buffers (mRoPE's frequencies) were built on meta: rebuild them where the weights are
    for sub in module.modules():
        if hasattr(sub, "rope_init") and any(b.is_meta for b in sub.buffers(recurse=False)):
            sub.rope_init(device=torch.device(device))
    leftover = [name for name, t in list(module.named_parameters()) + list(module.named_buffers()) if t.is_meta]
    if leftover:
        raise RuntimeError(f"tensors left on the meta device after loading: {leftover}")
