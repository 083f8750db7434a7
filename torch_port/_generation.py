"""Generation for the fused Qwen2.5-VL model with torchtune's KV caches: greedy or sampled.

Sampling is torchtune's: ``torchtune.generation.sample`` (logits / temperature, top-k pruning,
softmax, then the exponential-race draw ``argmax(probs / q)``), with ``q`` drawn per step as
torchtune's ``generate`` draws it: ``torch.empty(b, vocab).exponential_(1, generator=rng)``. So a
seeded ``rng`` gives the same tokens torchtune's own loop would give for the same logits.
Temperature 0 is greedy (argmax), HF's ``generate(do_sample=False)``.

Positions follow HF's ``generate``: the prompt gets its mRoPE positions (``qwen2_5_vl_rope_index``),
and the k-th new token (k = 0, 1, ...) of a row gets ``last prompt position + 1 + k`` on each axis
(HF 5.24 extends ``position_ids[..., -1:]`` by one per step). A prompt ending in text has the same
last position on the three axes and its maximum there, so this is also ``cache_position +
rope_deltas`` (``rope_deltas = max + 1 - prompt_len``), the route of HF's uncached-positions
forward; the two differ only when a video's time positions run past the text after it (time
positions step by ``tokens_per_second * second_per_grid_ts``, the text after a video by
``max(h, w) / merge``): measured against HF's ``generate``, the last position is what it uses.

Caches: ``model.decoder.setup_caches(b, dtype, decoder_max_seq_len=s + max_new_tokens)`` (the
fused model's own ``setup_caches`` cannot size them), deleted again on the way out (also on error)
so that the model trains or runs uncached afterwards. With caches, torchtune's attention needs an
explicit ``[b, q, cache_len]`` boolean mask: causal over the filled slots, False past them.

New tokens are embedded with the token embedding directly (not through the fusion forward), so
a generated placeholder id is an ordinary embedding row, as in HF, not a request for vision rows.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
from torch import nn
from torchtune.generation import sample
from torchtune.modules.common_utils import delete_kv_caches

from ._rope_index import qwen2_5_vl_rope_index

__all__ = ["generate"]


def _prompt_positions(model: nn.Module, tokens: torch.Tensor, encoder_input) -> torch.Tensor:
    """``[3, b, s]`` positions of an unpadded prompt, from the grids in ``encoder_input``."""
    enc = encoder_input or {}
    ids = model.token_ids
    types = (tokens == ids["image"]).long() + 2 * (tokens == ids["video"]).long()
    image = enc.get("image", {}).get("grid_thw")
    video = enc.get("video", {}).get("grid_thw")
    return qwen2_5_vl_rope_index(tokens, types, image, video, spatial_merge_size=model.encoder.spatial_merge_size)[0]


def _check_sampling(temperature, top_k, rng) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0 \
            or temperature == float("inf"):
        raise ValueError(f"temperature must be a finite number >= 0 (0 is greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be None or a positive int, got {top_k!r}")
    if rng is not None and not isinstance(rng, torch.Generator):
        raise ValueError(f"rng must be a torch.Generator or None, got {type(rng).__name__}")


def _next_token(logits: torch.Tensor, temperature: float, top_k: Optional[int], rng) -> torch.Tensor:
    """``[b]`` next ids from ``[b, vocab]`` float logits: argmax at temperature 0, else torchtune's sample."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    q = torch.empty(logits.shape, device=logits.device).exponential_(1, generator=rng)  # as torchtune's generate
    return sample(logits.clone(), temperature=float(temperature), top_k=top_k, q=q)[:, 0].long()


@torch.no_grad()
def generate(
    model: nn.Module,
    tokens: torch.Tensor,
    *,
    encoder_input: Optional[Dict[str, Dict[str, torch.Tensor]]] = None,
    input_pos: Optional[torch.Tensor] = None,
    max_new_tokens: int,
    stop_tokens: Optional[Sequence[int]] = None,
    temperature: float = 0.0,
    top_k: Optional[int] = None,
    rng: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Greedy decoding (argmax each step, HF's ``generate(do_sample=False)``) or torchtune's sampling.

    Args:
        model: ``Qwen2_5_VLEarlyFusionModel`` (no caches set up).
        tokens (torch.Tensor): ``[b, s]`` prompt ids, no padding (every row has s real tokens).
        encoder_input (dict | None): the model's ``encoder_input`` for the prompt.
        input_pos (torch.Tensor | None): ``[3, b, s]`` prompt positions; None computes them with
            ``qwen2_5_vl_rope_index`` from the grids (a video there gets one second per grid, the
            rope-index default: pass ``input_pos`` for other frame rates).
        max_new_tokens (int): at most this many new tokens per row (>= 1).
        stop_tokens (Sequence[int] | None): a row is done once it emits one of these (kept in the
            output); generation ends when every row is done; a done row is then filled with the
            stop token it emitted.
        temperature (float): 0 (default) is greedy; above 0 each token is drawn as torchtune's
            ``generation.sample`` draws it (logits divided by ``temperature``).
        top_k (int | None): sample among the ``top_k`` most likely tokens only (None: all).
        rng (torch.Generator | None): the generator of the draws (``q`` of each step, as
            torchtune's ``generate(rng=...)``); None uses torch's global generator.

    Returns:
        torch.Tensor: int64 ``[b, s + n]``, the prompt followed by the ``n <= max_new_tokens`` new
        tokens (HF's layout).

    Raises:
        ValueError: bad ``tokens`` / ``input_pos`` shapes, ``max_new_tokens`` < 1, a negative or
            non-finite ``temperature``, ``top_k`` < 1, an ``rng`` that is not a ``torch.Generator``,
            or caches already set up on the model.
    """
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    _check_sampling(temperature, top_k, rng)
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2 or tokens.shape[1] == 0:
        shape = list(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must be a non-empty [b, s] tensor, got {shape}")
    b, s = tokens.shape
    if input_pos is None:
        input_pos = _prompt_positions(model, tokens, encoder_input)
    if tuple(input_pos.shape) != (3, b, s):
        raise ValueError(f"input_pos must be [3, b, s] = {[3, b, s]}, got {list(input_pos.shape)}")
    decoder = model.decoder
    if decoder.caches_are_setup():
        raise ValueError("the model already has KV caches; generate sets up and deletes its own")
    total = s + max_new_tokens
    if total > decoder.max_seq_len:
        raise ValueError(f"prompt length {s} + max_new_tokens {max_new_tokens} = {total} exceeds the "
                         f"decoder's max_seq_len {decoder.max_seq_len}")
    device = tokens.device
    stops = torch.tensor(sorted(set(stop_tokens or ())), dtype=torch.long, device=device)
    dtype = next(decoder.parameters()).dtype
    causal = torch.tril(torch.ones(total, total, dtype=torch.bool, device=device))  # [cache, cache]
    next_pos = input_pos[:, :, -1:] + 1  # [3, b, 1]: HF generate's position of the first new token
    out = [tokens]
    done = torch.zeros(b, dtype=torch.bool, device=device)
    was_training = model.training
    model.eval()
    decoder.setup_caches(b, dtype, decoder_max_seq_len=total)
    try:
        mask = causal[None, :s].expand(b, s, total)
        logits = model(tokens, mask=mask, encoder_input=encoder_input, input_pos=input_pos)
        for k in range(max_new_tokens):
            token = _next_token(logits[:, -1], temperature, top_k, rng)  # [b]
            if stops.numel():
                token = torch.where(done, out[-1][:, -1], token)  # a done row repeats its stop token
                done |= torch.isin(token, stops)
            out.append(token[:, None])
            if k == max_new_tokens - 1 or bool(done.all()):
                break
            pos = next_pos + k
            mask = causal[None, s + k: s + k + 1].expand(b, 1, total)
            logits = decoder(model.tok_embeddings(token[:, None]), mask=mask, input_pos=pos)
    finally:
        delete_kv_caches(model)
        model.train(was_training)
    return torch.cat(out, dim=1)
