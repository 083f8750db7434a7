"""The module the Qwen2.5-VL text model needs beyond torchtune's and its RMSNorm (``_rms_norm``): its decoder.

* ``Qwen2_5_VLTextDecoder``: torchtune's ``TransformerDecoder`` whose ``chunked_output`` runs the
  output projection once and then chunks, see :meth:`Qwen2_5_VLTextDecoder.chunked_output`.

Built by ``qwen2_5_vl_decoder`` / ``lora_qwen2_5_vl_decoder``; imports torchtune.
"""

from typing import List

import torch
from torchtune.modules import TransformerDecoder

__all__ = ["Qwen2_5_VLTextDecoder"]


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
