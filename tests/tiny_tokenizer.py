"""A tiny byte-level BPE vocabulary in Qwen's format (``vocab.json`` + ``merges.txt``), written by tests.

No model hub: the 256 byte symbols (GPT-2's byte-to-unicode alphabet, as Qwen's tokenizers use),
merges that spell a few whole words, and Qwen2.5's special tokens at their released ids
(151643 ``<|endoftext|>`` ... 151664), so the vision ids a model sees are the real ones
(``<|image_pad|>`` 151655, ``<|video_pad|>`` 151656). Both torchtune's ``Qwen2_5Tokenizer`` and
HF's ``Qwen2Tokenizer`` read these two files; a special token listed in ``vocab.json`` keeps that id
when HF adds it as a special token.
"""

from __future__ import annotations

import json
from pathlib import Path

# Qwen2.5 (and Qwen2.5-VL) added tokens, in id order from 151643
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
]
FIRST_SPECIAL_ID = 151643
SPECIAL_IDS = {token: FIRST_SPECIAL_ID + k for k, token in enumerate(SPECIAL_TOKENS)}

# Words merged into single tokens (as the byte-level pre-tokenizer sees them: a leading space is 'Ġ')
WORDS = ["system", "user", "assistant", "You", " are", " a", " helpful", " assistant", ".", " What",
         " is", " in", " this", " image", "?", " Describe", " the", " picture", " and", " video", " A",
         " cat", " dog", " red", " square", "\n"]


def byte_symbols() -> dict[int, str]:
    """byte -> printable unicode symbol: printable Latin-1 bytes map to themselves, the other 68
    bytes to code points 256, 257, ... in byte order (the byte-level BPE alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _symbols(word: str) -> list[str]:
    table = byte_symbols()
    return [table[b] for b in word.encode("utf-8")]


def tiny_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """``(vocab, merges)``: bytes 0..255, then one token per merge (each word grows left to right),
    then the special tokens at their Qwen ids."""
    table = byte_symbols()
    vocab = {table[b]: b for b in range(256)}
    merges: list[tuple[str, str]] = []
    for word in WORDS:
        symbols = _symbols(word)
        left = symbols[0]
        for right in symbols[1:]:
            if left + right not in vocab:
                merges.append((left, right))
                vocab[left + right] = len(vocab)
            left += right
    vocab.update(SPECIAL_IDS)
    return vocab, merges


def write_tiny_tokenizer(folder) -> tuple[Path, Path]:
    """Write ``vocab.json`` and ``merges.txt`` into ``folder``; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = tiny_vocab()
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_path.write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return vocab_path, merges_path


def hf_tiny_tokenizer(folder):
    """HF's ``Qwen2Tokenizer`` (tokenizers backend) on the files in ``folder``, with Qwen's special
    tokens registered as special (so the text never splits them), pad and eos as in Qwen2.5-VL."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    folder = Path(folder)
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]  # after "#version"
    merges = [tuple(line.split()) for line in lines if line]
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": [AddedToken(t, special=True) for t in SPECIAL_TOKENS]})
    return tok
