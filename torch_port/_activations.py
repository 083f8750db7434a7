"""The MLP activations of the vision blocks, by HF ``hidden_act`` name (HF's ``ACT2FN``).

The same set of names as the NumPy reference's table; each computes what HF's module for that
name computes (tests compare both).
"""

import math
from typing import Callable

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "activation"]


class _NewGELU(nn.Module):
    """``gelu_new``: the tanh approximation of GELU written out, as GPT-2 / HF ``NewGELUActivation``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class _QuickGELU(nn.Module):
    """``quick_gelu``: ``x * sigmoid(1.702 x)``, as HF ``QuickGELUActivation``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "gelu": nn.GELU,  # exact (erf)
    "gelu_new": _NewGELU,
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
    "quick_gelu": _QuickGELU,
}


def activation(name: str) -> nn.Module:
    """A fresh activation module for an HF ``hidden_act`` name.

    Raises:
        ValueError: an unknown name.
    """
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"unsupported hidden_act {name!r}; supported: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()
