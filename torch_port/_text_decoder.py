"""The two modules the Qwen2.5-VL text model needs beyond torchtune's: its RMSNorm and its decoder.

* ``Qwen2_5_VLTextRMSNorm``: HF's ``Qwen2_5_VLRMSNorm`` rounding. torchtune's ``RMSNorm`` multiplies
  the float32 normal by the (bf16) scale in float32, one rounding, and ``F.rms_norm`` warns on the
  dtype mix; HF normalises in float32, casts back to the input dtype, then multiplies by the
  weight in the model dtype. Same parameter name as torchtune's (``scale``).
* ``Qwen2_5_VLTextDecoder``: torchtune's ``TransformerDecoder`` whose ``chunked_output`` runs the
  output projection once and then chunks, see :meth:`Qwen2_5_VLTextDecoder.chunked_output`.

Built by ``qwen2_5_vl_decoder`` / ``lora_qwen2_5_vl_decoder``; imports torchtune.
"""

from typing import List

import torch
from torch import nn
from torchtune.modules import TransformerDecoder

__all__ = ["Qwen2_5_VLTextDecoder", "Qwen2_5_VLTextRMSNorm"]


class Qwen2_5_VLTextRMSNorm(nn.Module):
    """``scale * (x / sqrt(mean(x**2) + eps))`` with the statistics in float32 and the product in
    ``x``'s dtype, as HF's text norms.

    Args:
        dim (int): size of the normalised (last) dimension.
        eps (float): added to the mean square (HF: ``rms_norm_eps``).
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.to(torch.float32)
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.scale * xf.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{tuple(self.scale.shape)}, eps={self.eps}"


class Qwen2_5_VLTextDecoder(TransformerDecoder):
    """torchtune's ``TransformerDecoder`` (same constructor, state dict and forward) with the chunked
    output projected once."""

    def chunked_output(self, last_hidden_state: torch.Tensor) -> List[torch.Tensor]:
        """``[b, s, dim]`` -> ``num_output_chunks`` tensors ``[b, s / chunks, vocab]`` in the model dtype,
        split as torchtune splits (``.chunk(num_output_chunks, dim=1)``).

        torchtune projects chunk by chunk; the backward then forms the ``[vocab, dim]`` weight
        gradient once per chunk from thin products and sums them (with a 151936 vocabulary, 1.5 s of
        a 5 s training step on 2 cores). The float32 upcast, which the chunks exist to bound, still
        happens chunk by chunk in ``CEWithChunkedOutputLoss``.
        """
        return list(self.output(last_hidden_state).chunk(self.num_output_chunks, dim=1))
