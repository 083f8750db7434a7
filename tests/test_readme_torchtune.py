"""The "Run Qwen2.5-VL in torchtune" lines of docs/torchtune.md, run exactly as written on the synthetic HF
folder (tests/hf_tiny_folder.py; only the folder path is substituted)."""

import re
from pathlib import Path

import torch

from hf_tiny_folder import write_hf_folder

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Run Qwen2.5-VL in torchtune"
FOLDER = '"Qwen2.5-VL-3B-Instruct/"'


def readme_lines() -> str:
    text = (ROOT / "docs" / "torchtune.md").read_text(encoding="utf-8")
    assert SECTION in text, f"docs/torchtune.md has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, f"expected one python block in the section, found {len(blocks)}"
    assert blocks[0].count(FOLDER) == 1
    return blocks[0]


def test_readme_torchtune_lines_run(tmp_path, monkeypatch):
    folder = write_hf_folder(tmp_path / "hf")
    code = readme_lines().replace(FOLDER, repr(str(folder)))
    monkeypatch.chdir(ROOT)  # the image path is relative to the repository
    ns: dict = {}
    exec(compile(code, "docs/torchtune.md (Run Qwen2.5-VL in torchtune)", "exec"), ns)
    model, prompt, ids, loss = ns["model"], ns["prompt"], ns["ids"], ns["loss"]
    assert ids.shape[0] == 1 and prompt["tokens"].shape[1] < ids.shape[1] <= prompt["tokens"].shape[1] + 32
    assert torch.isfinite(loss) and loss.item() > 0
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads) and any(bool(g.abs().sum() > 0) for g in grads)
    assert ns["optimizer"].state  # the step ran
