"""Qwen2.5-VL vision encoder and image transform in torch, laid out like a torchtune model folder."""
