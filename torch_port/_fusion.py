"""The fused Qwen2.5-VL model: torchtune's ``EarlyFusionModel`` with one vision encoder for images and videos.

torchtune 0.6.1's ``EarlyFusionModel`` keeps one encoder per special token and requires
``encoder_input.keys() == encoders.keys()``. Qwen2.5-VL runs images and videos through the same
vision tower, and registering it twice (``{"image": enc, "video": enc}``) would write its weights
twice in ``state_dict()``. So this subclass registers the tower once, under ``encoders.image``
(state-dict keys ``encoders.image.*``), and routes both modalities through it:

* ``<|image_pad|>`` tokens (``image_token_id``, 151655) take the tower's rows for
  ``encoder_input["image"]``, ``<|video_pad|>`` tokens (``video_token_id``, 151656) the rows for
  ``encoder_input["video"]``; either key may be absent, ``encoder_input=None`` is text only;
* the number of placeholder tokens must equal the tower's output rows (``sum(t*h*w) / merge**2``),
  checked before the tower runs: a ValueError names both counts.

``input_pos`` is the ``[3, b, s]`` mRoPE position ids (``qwen2_5_vl_rope_index``), passed through
torchtune's decoder unchanged to the ``Qwen2_5_VLRotaryPositionalEmbeddings`` of every layer.

Two things a training run needs from the forward, whatever the batch holds:

* Under a process group of several ranks (FSDP, DDP) the tower runs exactly once per forward.
  Images and videos of a batch go through it in one call (rows of the images, then of the videos);
  a batch with neither runs it on one dummy merge block of zeros whose output is added with weight 0
  (the logits and the loss are unchanged, the tower's gradients are zeros). Every rank then
  all-gathers and reduce-scatters the tower's parameters the same number of times, also when one
  rank's batch is text only (otherwise the ranks' collectives no longer pair up and the run hangs).
  In one process a text-only batch skips the tower, as HF does: its gradients stay None, so the
  optimizer leaves it alone. ``vision_dummy_pass`` True / False overrides that choice.
* Activation checkpointing of the tower follows the decoder's: torchtune's recipes call
  ``training.set_activation_checkpointing(model, auto_wrap_policy={TransformerSelfAttentionLayer})``,
  which wraps the decoder layers only (the vision blocks are plain torch modules); when a decoder
  layer is so wrapped, the tower checkpoints its blocks too (``Qwen2_5_VisionEncoder.activation_checkpointing``).
  ``vision_activation_checkpointing`` True / False overrides that.
"""

from typing import Any, Dict, Optional

import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper
from torchtune.modules import TransformerDecoder
from torchtune.modules.model_fusion import EarlyFusionModel

__all__ = ["Qwen2_5_VLEarlyFusionModel"]

MODALITIES = ("image", "video")


class Qwen2_5_VLEarlyFusionModel(EarlyFusionModel):
    """Qwen2.5-VL as an ``EarlyFusionModel``: decoder + one vision encoder serving images and videos.

    Args:
        decoder (TransformerDecoder): the Qwen2 decoder with mRoPE in every layer.
        encoder (nn.Module): ``Qwen2_5_VisionEncoder``, ``(pixel_values [N, C*tp*p*p], grid_thw [n, 3])
            -> [N / merge**2, embed_dim]``; registered once, as ``encoders.image``.
        image_token_id (int): the ``<|image_pad|>`` id (HF config ``image_token_id``).
        video_token_id (int): the ``<|video_pad|>`` id (HF config ``video_token_id``).
        decoder_trainable (bool): train the decoder and the token embedding. Default True (unlike
            ``EarlyFusionModel``, whose default freezes it): pass False to freeze.
        encoder_trainable (bool): train the vision encoder. Default True; pass False to freeze.

    Attributes:
        vision_activation_checkpointing (bool | None): checkpoint the vision blocks; None (default)
            does so exactly when the decoder's layers are wrapped for activation checkpointing.
        vision_dummy_pass (bool | None): run the tower on a zero-weight dummy block when a batch has
            no vision input; None (default) does so exactly under a process group of several ranks.
    """

    def __init__(
        self,
        decoder: TransformerDecoder,
        encoder: nn.Module,
        *,
        image_token_id: int,
        video_token_id: int,
        decoder_trainable: bool = True,
        encoder_trainable: bool = True,
    ) -> None:
        if image_token_id == video_token_id:
            raise ValueError(f"image_token_id and video_token_id must differ, both are {image_token_id}")
        super().__init__(
            decoder,
            {"image": encoder},
            {"image": int(image_token_id)},
            decoder_trainable=decoder_trainable,
            encoders_trainable=encoder_trainable,
            fusion_trainable=True,  # no fusion-only parameters in Qwen2.5-VL
        )
        self.token_ids = {"image": int(image_token_id), "video": int(video_token_id)}
        self.vision_activation_checkpointing: Optional[bool] = None
        self.vision_dummy_pass: Optional[bool] = None

    @property
    def encoder(self) -> nn.Module:
        """The vision encoder (one module, used for images and videos)."""
        return self.encoders["image"]

    def _checkpoint_vision(self) -> bool:
        """Whether the vision blocks are checkpointed now (see the class attribute)."""
        if self.vision_activation_checkpointing is not None:
            return bool(self.vision_activation_checkpointing)
        return any(isinstance(layer, CheckpointWrapper) for layer in self.decoder.layers)

    def _dummy_pass(self) -> bool:
        """Whether a batch without vision input still runs the tower (see the module docstring)."""
        if self.vision_dummy_pass is not None:
            return bool(self.vision_dummy_pass)
        dist = torch.distributed
        return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1

    def _dummy_vision_input(self, device: torch.device) -> Dict[str, torch.Tensor]:
        """One merge block of zero patches (``grid_thw`` ``[[1, merge, merge]]``): one tower output row."""
        merge = self.encoder.spatial_merge_size
        embed = self.encoder.patch_embed
        return {"pixel_values": torch.zeros(merge * merge, embed.patch_dim, dtype=embed.proj.weight.dtype,
                                            device=device),
                "grid_thw": torch.tensor([[1, merge, merge]], device=device)}

    def _vision_rows(self, encoder_input: Dict[str, Dict[str, Any]], device: torch.device):
        """``{modality: [n_rows, out] rows}`` from one tower call, or ``{}`` with the dummy pass's
        output (None when no tower call is needed: no vision input and no dummy pass)."""
        present = [m for m in MODALITIES if m in encoder_input]
        if not present and not self._dummy_pass():
            return {}, None
        inputs = [encoder_input[m] for m in present] or [self._dummy_vision_input(device)]
        pixels = torch.cat([torch.as_tensor(inp["pixel_values"]).reshape(-1, self.encoder.patch_embed.patch_dim)
                            for inp in inputs]) if len(inputs) > 1 else inputs[0]["pixel_values"]
        grids = torch.cat([torch.as_tensor(inp["grid_thw"]).view(-1, 3) for inp in inputs]) \
            if len(inputs) > 1 else inputs[0]["grid_thw"]
        self.encoder.activation_checkpointing = self._checkpoint_vision()
        rows = self.encoder(pixels, grids)
        if not present:
            return {}, rows
        counts = [self._encoder_rows(m, encoder_input[m]) for m in present]
        return dict(zip(present, rows.split(counts))), None

    def _encoder_rows(self, modality: str, inp: Dict[str, Any]) -> int:
        """Output rows of the encoder for one modality's input: ``sum(t*h*w) / merge**2``."""
        if not isinstance(inp, dict) or set(inp) != {"pixel_values", "grid_thw"}:
            got = sorted(inp) if isinstance(inp, dict) else type(inp).__name__
            raise ValueError(
                f'encoder_input["{modality}"] must be a dict with keys pixel_values and grid_thw, got {got}'
            )
        grid = torch.as_tensor(inp["grid_thw"])
        if grid.ndim != 2 or grid.shape[1] != 3:
            raise ValueError(f'encoder_input["{modality}"]["grid_thw"] must be [n, 3], got {list(grid.shape)}')
        merge_unit = self.encoder.spatial_merge_size**2
        return int(grid.prod(dim=-1).sum()) // merge_unit

    def forward(
        self,
        tokens: torch.Tensor,
        *,
        mask: Optional[torch.Tensor] = None,
        encoder_input: Optional[Dict[str, Dict[str, Any]]] = None,
        input_pos: Optional[torch.Tensor] = None,
        **kwargs: Dict[str, Any],
    ) -> torch.Tensor:
        """Logits for ``tokens``.

        Args:
            tokens (torch.Tensor): ``[b, s]`` token ids, with one placeholder per vision row.
            mask (torch.Tensor | BlockMask | None): ``[b, s, s]`` boolean attention mask (True
                attends), or the flex-attention ``BlockMask`` of a packed batch; None means causal.
                Packed batches (``padded_collate_qwen2_5_vl`` of ``Qwen2_5_VLPackedDataset`` items)
                bring a block-causal mask and each sample's own ``input_pos``, so nothing here
                depends on packing.
            encoder_input (dict | None): ``{"image": {"pixel_values", "grid_thw"}, "video": {...}}``,
                either key optional; None for text only.
            input_pos (torch.Tensor | None): ``[3, b, s]`` mRoPE position ids (``[b, s]`` and None
                work too: the same position on the three axes).
            **kwargs: accepted and unused, as in ``EarlyFusionModel`` (``encoder_mask`` etc.).

        Returns:
            torch.Tensor: ``[b, s, vocab]`` logits (a list if the decoder outputs hidden states
            or chunks, as torchtune's decoder does).

        Raises:
            ValueError: an unknown modality, or placeholder counts that do not match the grids.
        """
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be [b, s], got {list(tokens.shape)}")
        encoder_input = encoder_input or {}
        unknown = sorted(set(encoder_input) - set(MODALITIES))
        if unknown:
            raise ValueError(f"encoder_input has unknown keys {unknown}; expected a subset of {list(MODALITIES)}")
        for modality in MODALITIES:
            placeholders = int((tokens == self.token_ids[modality]).sum())
            if modality not in encoder_input:
                if placeholders:
                    raise ValueError(
                        f"tokens hold {placeholders} {modality} placeholders (id {self.token_ids[modality]}) "
                        f'but encoder_input has no "{modality}" (0 {modality} rows)'
                    )
                continue
            rows = self._encoder_rows(modality, encoder_input[modality])
            if rows != placeholders:
                raise ValueError(
                    f"tokens hold {placeholders} {modality} placeholders (id {self.token_ids[modality]}) "
                    f"but the {modality} grids give {rows} encoder rows"
                )

        is_text = ~torch.isin(tokens, torch.tensor(list(self.token_ids.values()), device=tokens.device))
        text_embeds = self.tok_embeddings(tokens[is_text])  # [num_text, d]
        b, s = tokens.shape
        fused = torch.zeros(b, s, text_embeds.shape[-1], dtype=text_embeds.dtype, device=text_embeds.device)
        fused = fused.masked_scatter(is_text.unsqueeze(-1), text_embeds)
        vision, dummy = self._vision_rows(encoder_input, tokens.device)
        for modality, rows in vision.items():  # [n_rows, d] each, in placeholder order
            fused = fused.masked_scatter((tokens == self.token_ids[modality]).unsqueeze(-1), rows.to(fused.dtype))
        if dummy is not None:  # weight 0: the tower takes part in forward and backward, the values do not
            fused = fused + dummy.sum().to(fused.dtype) * 0
        return self.decoder(fused, mask=mask, input_pos=input_pos)
