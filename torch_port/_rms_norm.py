"""The one RMSNorm of Qwen2.5-VL, for the vision tower and the text model alike (HF's ``Qwen2_5_VLRMSNorm``).

HF normalises in float32, casts back to the input dtype, then multiplies by the weight in the
model dtype (so float16 cannot overflow in the variance). torchtune's ``RMSNorm`` multiplies the
float32 normal by the (bf16) scale in float32, one rounding, and ``F.rms_norm`` warns on the dtype
mix: hence a class of its own, with a name of its own so that, dropped into torchtune, it never
stands in for ``torchtune.modules.RMSNorm``. The parameter is torchtune's ``scale``.

``Qwen2_5_VisionRMSNorm`` and ``Qwen2_5_VLTextRMSNorm``, the names the tower and the text model
have always used, are this class.
"""

import torch
from torch import nn

__all__ = ["Qwen2_5_VLRMSNorm", "Qwen2_5_VLTextRMSNorm", "Qwen2_5_VisionRMSNorm"]


class Qwen2_5_VLRMSNorm(nn.Module):
    """``scale * (x / sqrt(mean(x**2) + eps))`` with the statistics in float32 and the product in
    ``x``'s dtype, as HF's ``Qwen2_5_VLRMSNorm``.

    Args:
        dim (int): size of the normalised (last) dimension.
        eps (float): added to the mean square (vision: 1e-6; text: HF's ``rms_norm_eps``).
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.to(torch.float32)
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)  # [..., dim]
        return self.scale * xf.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{tuple(self.scale.shape)}, eps={self.eps}"


Qwen2_5_VisionRMSNorm = Qwen2_5_VLRMSNorm
Qwen2_5_VLTextRMSNorm = Qwen2_5_VLRMSNorm
