"""One training step of the fused model, done as torchtune's full-finetune recipe does it, against
HF's ``labels=`` loss on the same tiny random weights: the loss and the gradients of the token
embedding, one decoder layer and one vision block.

The recipe's step: ``labels = batch.pop("labels")``, ``logits = model(**batch)`` with the decoder
set to chunked output, labels shifted left by one with an ignore index appended, then
``CEWithChunkedOutputLoss`` (sum of float32 cross-entropy over the chunks / non-ignored count).
HF shifts inside its loss and averages over the non-ignored labels: the same quantity.

The batch: two right-padded rows (pad id 0, label -100), each an image prompt whose text before
and inside the vision run is masked (label -100), as the model transform masks a user turn.
"""

import pytest
import torch
from torchtune.data import CROSS_ENTROPY_IGNORE_IDX
from torchtune.modules.loss import CEWithChunkedOutputLoss

import torch_port
from goldenlib.tolerances import TRAIN_GRAD_VS_HF_BOUND, TRAIN_LOSS_VS_HF_BOUND, rel_error
from hf_tiny_vl import TINY_VL_CONFIGS, config_dict, hf_model, pixel_values, text_ids, token_types, vision_run

CHUNKS = 8  # the recipe's default number of output chunks


def _batch(seed=0):
    """tokens, labels, attention mask [2, s]; image grids [2, 3]; pixel values."""
    g = torch.Generator().manual_seed(seed)
    grids = [[1, 4, 6], [1, 2, 4]]
    rows, labels = [], []
    for grid, n_answer in zip(grids, (6, 9)):
        prompt = text_ids(3, g) + vision_run(grid) + text_ids(2, g)
        answer = text_ids(n_answer, g)
        rows.append(prompt + answer)
        labels.append([CROSS_ENTROPY_IGNORE_IDX] * len(prompt) + answer)
    s = max(map(len, rows))
    tokens = torch.zeros(2, s, dtype=torch.long)
    lab = torch.full((2, s), CROSS_ENTROPY_IGNORE_IDX, dtype=torch.long)
    attention_mask = torch.zeros(2, s, dtype=torch.long)
    for i, (row, label) in enumerate(zip(rows, labels)):
        tokens[i, : len(row)] = torch.tensor(row)
        lab[i, : len(row)] = torch.tensor(label)
        attention_mask[i, : len(row)] = 1
    grid = torch.tensor(grids)
    return tokens, lab, attention_mask, grid, pixel_values(grid, g)


def _tune_grads(model) -> dict:
    """Gradients by state-dict key (the fused model keeps the token embedding outside the decoder)."""
    out = {}
    for name, p in model.named_parameters():
        out["decoder.tok_embeddings.weight" if name == "tok_embeddings.weight" else name] = p.grad
    return out


@pytest.mark.parametrize("name", sorted(TINY_VL_CONFIGS))
def test_training_step_matches_hf(name):
    hf = hf_model(name).train()
    model = torch_port.load_hf_model(config_dict(name), hf.state_dict()).train()
    tokens, labels, attention_mask, grid, pv = _batch()

    expected = hf(input_ids=tokens, attention_mask=attention_mask, mm_token_type_ids=token_types(tokens),
                  pixel_values=pv, image_grid_thw=grid, labels=labels).loss
    expected.backward()

    # the recipe's step
    model.set_num_output_chunks(CHUNKS)
    loss_fn = CEWithChunkedOutputLoss(num_output_chunks=CHUNKS)
    pos = torch_port.qwen2_5_vl_rope_index(tokens, token_types(tokens), grid, None, None, attention_mask)[0]
    batch = {"tokens": tokens, "labels": labels, "input_pos": pos,
             "encoder_input": {"image": {"pixel_values": pv, "grid_thw": grid}}}
    labels = batch.pop("labels")
    logits = model(**batch)
    ignore = torch.full((labels.shape[0], 1), CROSS_ENTROPY_IGNORE_IDX, dtype=labels.dtype)
    labels = torch.hstack((labels[..., 1:], ignore))
    loss = loss_fn(logits, labels)
    loss.backward()

    loss_err = abs(loss.item() - expected.item()) / abs(expected.item())
    hf_grads = torch_port.qwen2_5_vl_hf_to_tune({n: p.grad for n, p in hf.named_parameters()})
    ours = _tune_grads(model)
    groups = {
        "token embedding": ["decoder.tok_embeddings.weight"],
        "decoder layer 1": [k for k in ours if k.startswith("decoder.layers.1.")],
        "vision block 0": [k for k in ours if k.startswith("encoders.image.layers.0.")],
    }
    print(f"{name}: loss {loss.item():.6f} vs HF {expected.item():.6f}, rel err {loss_err:.3g}")
    assert loss_err <= TRAIN_LOSS_VS_HF_BOUND
    for group, keys in groups.items():
        assert keys
        for key in keys:
            assert ours[key] is not None and hf_grads[key] is not None, key
            assert float(hf_grads[key].abs().max()) > 0, key  # the gradient reaches this parameter
        err = max(rel_error(ours[k], hf_grads[k]) for k in keys)
        print(f"{name}: {group} grad rel err {err:.3g} (max over {len(keys)} tensors)")
        assert err <= TRAIN_GRAD_VS_HF_BOUND, group
