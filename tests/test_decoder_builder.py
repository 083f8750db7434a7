"""The text decoder is built from torchtune's modules, not patched after the fact.

* ``qwen2_5_vl_decoder`` / ``lora_qwen2_5_vl_decoder`` make the same parameters as torchtune's
  ``qwen2`` / ``lora_qwen2`` with the same sizes and seed (names, shapes, values: the same modules
  created in the same order), so checkpoints and torchtune's tools see a Qwen2 decoder;
* what differs is built in: one ``Qwen2_5_VLRotaryPositionalEmbeddings`` object in every layer,
  HF's RMSNorm rounding under the text model's own class, and the output projected once and then
  chunked (a method of the class, nothing set on the instance);
* one decoder layer traces under ``torch._dynamo`` with ``[3, b, s]`` positions in a single graph:
  the rotary reads no position value on the host (no ``int(tensor)``, no ``.item()``).

What the decoder computes is checked against HF in test_fused_model / test_training_step.
"""

import pytest
import torch

from torchtune.models.qwen2._component_builders import lora_qwen2, qwen2
from torchtune.modules import MultiHeadAttention, TransformerSelfAttentionLayer
from torchtune.modules.peft import LoRALinear

import torch_port

SIZES = dict(vocab_size=97, num_layers=3, num_heads=4, num_kv_heads=2, embed_dim=64, intermediate_dim=96,
             max_seq_len=64, norm_eps=1e-6, rope_base=1e6)
LORA = dict(lora_rank=4, lora_alpha=8.0, lora_dropout=0.0)
ATTN = ["q_proj", "v_proj", "output_proj"]


def _seeded(build, *args, **kwargs):
    torch.manual_seed(0)
    return build(*args, **kwargs)


def _same_parameters(ours, theirs):
    mine, tune = ours.state_dict(), theirs.state_dict()
    assert list(mine) == list(tune)
    for key in tune:
        assert mine[key].shape == tune[key].shape and torch.equal(mine[key], tune[key]), key


@pytest.mark.parametrize("tied", [True, False])
def test_decoder_has_qwen2s_parameters(tied):
    ours = _seeded(torch_port.qwen2_5_vl_decoder, **SIZES, mrope_section=[2, 3, 3], tie_word_embeddings=tied)
    theirs = _seeded(qwen2, **SIZES, tie_word_embeddings=tied)
    _same_parameters(ours, theirs)


@pytest.mark.parametrize("mlp,output", [(False, False), (True, True)])
def test_lora_decoder_has_lora_qwen2s_parameters(mlp, output):
    ours = _seeded(torch_port.lora_qwen2_5_vl_decoder, ATTN, mlp, output, **SIZES, mrope_section=[2, 3, 3],
                   tie_word_embeddings=False, **LORA)
    theirs = _seeded(lora_qwen2, ATTN, mlp, output, **SIZES, tie_word_embeddings=False, **LORA)
    _same_parameters(ours, theirs)
    layer = ours.layers[0]
    assert isinstance(layer.attn.q_proj, LoRALinear) and not isinstance(layer.attn.k_proj, LoRALinear)
    assert isinstance(layer.mlp.w1, LoRALinear) == mlp and isinstance(ours.output, LoRALinear) == output


@pytest.mark.parametrize("lora", [False, True])
def test_decoder_is_built_not_patched(lora):
    if lora:
        decoder = torch_port.lora_qwen2_5_vl_decoder(ATTN, True, **SIZES, mrope_section=[2, 3, 3],
                                                     tie_word_embeddings=True, **LORA)
    else:
        decoder = torch_port.qwen2_5_vl_decoder(**SIZES, mrope_section=[2, 3, 3], tie_word_embeddings=True)
    assert type(decoder) is torch_port.Qwen2_5_VLTextDecoder
    assert "chunked_output" not in vars(decoder)  # the class's method, not one set on the instance
    rope = decoder.layers[0].attn.pos_embeddings
    assert isinstance(rope, torch_port.Qwen2_5_VLRotaryPositionalEmbeddings) and rope.mrope_section == [2, 3, 3]
    norms = [decoder.norm]
    for layer in decoder.layers:
        assert type(layer) is TransformerSelfAttentionLayer and type(layer.attn) is MultiHeadAttention
        assert layer.attn.pos_embeddings is rope  # one rotary shared by every layer
        norms += [layer.sa_norm, layer.mlp_norm]
    assert all(type(norm) is torch_port.Qwen2_5_VLRMSNorm and norm.eps == 1e-6 for norm in norms)
    # one RMSNorm class for the text model and the vision tower, under each old name too
    assert torch_port.Qwen2_5_VLTextRMSNorm is torch_port.Qwen2_5_VisionRMSNorm is torch_port.Qwen2_5_VLRMSNorm


def test_chunked_output_projects_once_and_chunks_as_torchtune():
    decoder = torch_port.qwen2_5_vl_decoder(**SIZES, mrope_section=[2, 3, 3], tie_word_embeddings=False).eval()
    tokens = torch.randint(0, 97, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = decoder(tokens)
        decoder.set_num_output_chunks(4)
        calls = []
        hook = decoder.output.register_forward_hook(lambda module, args, out: calls.append(tuple(args[0].shape)))
        chunks = decoder(tokens)
        hook.remove()
    assert calls == [(2, 10, 64)]  # the projection ran once, on the whole sequence
    # torchtune's split of a length-10 sequence into 4 chunks (3, 3, 3, 1), the same values
    assert [c.shape for c in chunks] == [c.shape for c in whole.chunk(4, dim=1)]
    assert torch.equal(torch.cat(chunks, dim=1), whole)


def test_sizes_refused_by_name():
    with pytest.raises(ValueError, match="num_heads 4 is not divisible by num_kv_heads 3"):
        torch_port.qwen2_5_vl_decoder(**{**SIZES, "num_kv_heads": 3}, mrope_section=[2, 3, 3], tie_word_embeddings=True)
    with pytest.raises(ValueError, match=r"mrope_section \[2, 3, 4\] must sum to head_dim // 2 = 8"):
        torch_port.qwen2_5_vl_decoder(**SIZES, mrope_section=[2, 3, 4], tie_word_embeddings=True)
    with pytest.raises(ValueError, match="tied model has no output projection"):
        torch_port.lora_qwen2_5_vl_decoder(ATTN, False, True, **SIZES, mrope_section=[2, 3, 3],
                                           tie_word_embeddings=True, **LORA)
    with pytest.raises(ValueError, match="use_dora=True is not supported"):
        torch_port.lora_qwen2_5_vl_decoder(ATTN, **SIZES, mrope_section=[2, 3, 3], tie_word_embeddings=True,
                                           use_dora=True, **LORA)


@pytest.mark.parametrize("offset", [0, 1000], ids=["in_max_seq_len", "past_max_seq_len"])
def test_one_layer_traces_without_graph_breaks(offset):
    """torch._dynamo.explain on one decoder layer, [3, b, s] mRoPE positions (within and past the
    decoder's max_seq_len, which once took two paths chosen on the host): one graph, no break."""
    decoder = torch_port.qwen2_5_vl_decoder(**SIZES, mrope_section=[2, 3, 3], tie_word_embeddings=True).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 10, 64, generator=g)
    pos = torch.randint(0, 50, (3, 2, 10), generator=g) + offset
    with torch.no_grad():
        want = decoder.layers[0](x, input_pos=pos)
        explained = torch._dynamo.explain(decoder.layers[0])(x, input_pos=pos)
    assert explained.graph_break_count == 0, [r.reason for r in explained.break_reasons]
    assert explained.graph_count == 1
    torch._dynamo.reset()
    with torch.no_grad():
        compiled = torch.compile(decoder.layers[0], backend="eager", fullgraph=True)
        assert torch.equal(compiled(x, input_pos=pos), want)
    torch._dynamo.reset()


@pytest.mark.hardware("cuda")
def test_rotary_forward_never_syncs_on_cuda():
    """On a GPU the rotary reads no value back to the host: CUDA's sync debug mode turns any
    synchronizing call (``.item()``, ``int(tensor)``, a device-to-host copy) into an error."""
    decoder = torch_port.qwen2_5_vl_decoder(**SIZES, mrope_section=[2, 3, 3], tie_word_embeddings=True).cuda()
    rope = decoder.layers[0].attn.pos_embeddings
    x = torch.randn(2, 10, 4, 16, device="cuda")
    for pos in (torch.randint(0, 50, (3, 2, 10), device="cuda"), torch.randint(0, 50, (2, 10), device="cuda") + 1000):
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            out = rope(x, input_pos=pos)
        finally:
            torch.cuda.set_sync_debug_mode(0)
        assert out.is_cuda and out.shape == x.shape
