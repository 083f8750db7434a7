"""Weight memory of the QLoRA models against bf16: ``qlora_qwen2_5_vl_3b`` / ``_7b`` as the configs build them.

The model of each size is built on the meta device (no memory) with the QLoRA config's adapters
(attention q/k/v/output and the MLP, rank 8) to list its parameters. Every base weight that
``quantize_base=True`` turns into NF4 is then measured: a real random bf16 tensor of its shape goes
through torchao's ``to_nf4`` (what ``LoRALinear(quantize_base=True)`` does) and the bytes of the
resulting tensor's parts (4-bit codes, int8 block scales, their float32 factors, the code table) are
counted, once per distinct shape. Everything else (embedding, norms, biases, adapters, the vision
tower, which QLoRA leaves in bf16) counts 2 bytes a weight. No timing. Usage::

    uv run python benchmarks/qlora_memory.py [--sizes 3b 7b]

prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NF4_PARTS = ("quantized_data", "quantized_scalers", "quantization_factor", "scaler_mean", "nf4")
ADAPTERS = dict(lora_attn_modules=["q_proj", "k_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True,
                apply_lora_to_output=False, lora_rank=8, lora_alpha=16)


def nf4_bytes(shape: tuple[int, ...]) -> int:
    """Bytes of torchao's NF4 tensor of a random bf16 weight of ``shape``."""
    import torch
    from torchao.dtypes.nf4tensor import to_nf4

    t = to_nf4(torch.randn(shape, dtype=torch.bfloat16, generator=torch.Generator().manual_seed(0)))
    return sum(getattr(t, part).nbytes for part in NF4_PARTS)


def measure(size: str) -> dict:
    import torch
    from torchtune.modules.peft import LoRALinear

    import torch_port

    with torch.device("meta"):
        model = getattr(torch_port, f"lora_qwen2_5_vl_{size}")(**ADAPTERS)  # shapes only
    quantized = {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, LoRALinear)}
    per_shape: dict[tuple[int, ...], int] = {}
    base = nf4 = rest = 0
    for name, p in model.named_parameters():
        if name in quantized:
            shape = tuple(p.shape)
            if shape not in per_shape:
                per_shape[shape] = nf4_bytes(shape)
            nf4 += per_shape[shape]
            base += 2 * p.numel()
        else:
            rest += 2 * p.numel()
    return {"size": size, "quantized": len(quantized), "base_bf16": base, "base_nf4": nf4, "rest": rest}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["3b", "7b"], choices=["3b", "7b"])
    args = parser.parse_args(argv)
    gib = 2 ** 30
    print("| model | NF4 linears | their weights bf16 GiB | NF4 GiB | NF4 / bf16 | rest (bf16) GiB "
          "| whole model bf16 GiB | whole model QLoRA GiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        r = measure(size)
        print(f"| {size.upper()} | {r['quantized']} | {r['base_bf16'] / gib:.3f} | {r['base_nf4'] / gib:.3f} | "
              f"{r['base_nf4'] / r['base_bf16']:.3f} | {r['rest'] / gib:.3f} | "
              f"{(r['base_bf16'] + r['rest']) / gib:.3f} | {(r['base_nf4'] + r['rest']) / gib:.3f} |", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
