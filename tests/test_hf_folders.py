"""golden/hf/: the golden towers and the whole-model goldens' tiny models as HF checkpoint folders
(issue 28: a porter runs their own converter on them; issue 29: the lm_* models)."""

import shutil

import numpy as np
import pytest
import torch

from goldenlib import hf_folders, store
from goldenlib.hf_model import parts
from goldenlib.model_folders import SHIPPED, VOCAB_SIZE
from goldenlib.tolerances import HF_CROSSCHECK_BOUND, rel_error

ROOT = store.GOLDEN_DIR / hf_folders.SUBFOLDER


def test_every_shipped_folder_matches_the_manifest():
    hf_folders.verify()
    assert sorted(p.name for p in ROOT.iterdir()) == sorted(SHIPPED)


def test_a_changed_file_is_named(tmp_path):
    shutil.copytree(store.GOLDEN_DIR, tmp_path / "golden")
    config = tmp_path / "golden" / "hf" / "tiny_a" / "config.json"
    config.write_text(config.read_text().replace('"depth": 4', '"depth": 3'))
    with pytest.raises(store.GoldenIntegrityError, match="tiny_a/config.json does not match"):
        hf_folders.verify(tmp_path / "golden")


@pytest.mark.parametrize("tower, case", [("tiny_a", "photo_astronaut"), ("tiny_b", "two_images")])
def test_tower_folder_holds_the_golden_tower(tower, case):
    """from_pretrained on the folder, its tower on the case's pixel values: the golden's output."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(ROOT / tower, dtype=torch.float32).eval()
    visual, _ = parts(model)
    tensors, _ = store.read_case(case)
    with torch.no_grad():
        out = visual(torch.from_numpy(tensors["pixel_values"]), grid_thw=torch.from_numpy(tensors["image_grid_thw"]))
    out = getattr(out, "pooler_output", out)
    assert rel_error(out, tensors[f"{tower}.output"]) <= HF_CROSSCHECK_BOUND


def test_model_folder_loads_with_its_processor():
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    processor = AutoProcessor.from_pretrained(ROOT / "lm_tied")
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(ROOT / "lm_tied")
    image = np.zeros((56, 56, 3), np.uint8)
    inputs = processor(text="<|vision_start|><|image_pad|><|vision_end|>hi", images=[image], return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape[-1] == VOCAB_SIZE and torch.isfinite(logits).all()
