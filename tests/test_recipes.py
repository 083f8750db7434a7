"""torchtune's stock recipes fine-tune Qwen2.5-VL from an HF folder and write one HF loads back (CPU, tiny model).

A tiny random ``Qwen2_5_VLForConditionalGeneration`` is written as an HF folder (sharded
safetensors, config.json, preprocessor and tokenizer files; vocabulary large enough for Qwen's
real special ids), with a JSON chat dataset of four images (samples 2, 3 repeat samples 0, 1,
so with ``batch_size: 2`` and no shuffling step 2 sees step 1's batch again). The project's own
YAML configs are run with command-line overrides (the tiny folder, CPU, float32, 2 steps, and a
model builder that reads the folder's config.json instead of the released sizes), the way
``tune run`` parses them:

* ``full_finetune_single_device`` (configs/qwen2_5_vl_3b_full.yaml): loss finite and lower at
  step 2; the saved ``epoch_0`` folder loads in HF with logits equal to the trained model's;
* ``lora_finetune_single_device`` (configs/qwen2_5_vl_3b_lora.yaml): the same with the merged
  weights, against the LoRA model rebuilt from the base weights + the saved adapter;
* ``tune run`` itself (the executable, from the project root, no PYTHONPATH) on the shipped 3B full,
  LoRA and QLoRA configs with activation checkpointing on (the tower checkpointed too): the logged
  step-1 loss equals HF's ``labels=`` loss on the same batch (float32, TRAIN_LOSS_VS_HF_BOUND);
* a batch of an image chat and a text-only chat (the stock recipe in this process) gives HF's loss;
* the 2-process distributed runs are in tests/test_distributed.py (same folder: tests/recipe_fixtures.py).
"""

from pathlib import Path

import pytest
import torch

import recipe_fixtures as rf
from goldenlib.tolerances import FUSED_LOGITS_VS_HF_BOUND, TRAIN_LOSS_VS_HF_BOUND, rel_error
from recipe_fixtures import (
    CONFIGS,
    logged_losses as _losses,
    parse_recipe_config as _parse,
    recipe_overrides as _overrides,
    stock_recipe_class as _recipe_class,
)
from tiny_tokenizer import SPECIAL_IDS


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """(HF folder, dataset JSON, image folder): a tied tiny model, 3 safetensors shards, 4 samples."""
    return rf.shared_recipe_folder(tmp_path_factory)


def _run_in_process(recipe_cls, cfg):
    """``recipe_main`` of a stock recipe, returning the recipe (its trained model) instead of exiting."""
    recipe = recipe_cls(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.train()
    recipe.cleanup()
    return recipe


def _sample_batch(folder, data_json, data_dir):
    """One collated batch of the dataset (both samples, right-padded), as the recipe builds it."""
    import torch_port

    transform = torch_port.Qwen2_5_VLTransform(str(folder / "vocab.json"), str(folder / "merges.txt"),
                                               str(folder / "tokenizer.json"))
    ds = torch_port.qwen2_5_vl_chat_dataset(transform, data_files=str(data_json), image_dir=str(data_dir))
    return [ds[0], ds[1]]


def _hf_logits(model_dir: Path, sample) -> torch.Tensor:
    """HF's logits for one transformed sample (HF computes its own positions)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    hf = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32,
                                                            attn_implementation="eager").eval()
    image = sample["encoder_input"]["image"]
    ids = torch.tensor([sample["tokens"]])
    types = (ids == SPECIAL_IDS["<|image_pad|>"]).long()  # what HF's processor returns with the ids
    with torch.no_grad():
        return hf(input_ids=ids, mm_token_type_ids=types, attention_mask=torch.ones_like(ids),
                  pixel_values=image["pixel_values"], image_grid_thw=image["grid_thw"]).logits


def _port_logits(model, sample) -> torch.Tensor:
    if hasattr(model.decoder, "num_output_chunks"):
        model.decoder.num_output_chunks = 0  # the recipe set chunked output for its loss; whole logits here
    with torch.no_grad():
        return model(torch.tensor([sample["tokens"]]), encoder_input=sample["encoder_input"],
                     input_pos=sample["input_pos"].unsqueeze(1))


@pytest.fixture(scope="module")
def full_run(tiny_folder, tmp_path_factory):
    recipe, out, _ = rf.full_single_device_run(tmp_path_factory)  # the stock recipe class in this process
    return recipe, out


@pytest.mark.slow
def test_full_finetune_single_device(tiny_folder, full_run):
    recipe, out = full_run
    losses = _losses(out / "logs")
    print(f"full_finetune_single_device losses: {losses}")
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    assert losses[1] < losses[0]  # the same batch again after one AdamW step
    saved = out / "epoch_0"
    assert (saved / "model.safetensors.index.json").is_file() and (saved / "config.json").is_file()
    assert (saved / "preprocessor_config.json").is_file() and (saved / "vocab.json").is_file()
    assert not list(out.glob(".epoch_*"))  # no staging folder left behind
    for sample in _sample_batch(*tiny_folder):
        err = rel_error(_port_logits(recipe._model, sample), _hf_logits(saved, sample))
        print(f"full: HF(epoch_0) vs trained torchtune model, logits rel err {err:.3g}")
        assert err <= FUSED_LOGITS_VS_HF_BOUND


@pytest.mark.slow
def test_lora_finetune_single_device(tiny_folder, tmp_path):
    import torch_port
    from safetensors.torch import load_file

    LoRARecipe = _recipe_class("lora_finetune_single_device", "LoRAFinetuneRecipeSingleDevice")
    folder, data_json, data_dir = tiny_folder
    overrides = _overrides(folder, data_json, data_dir, tmp_path, lr=1e-2,
                           model_component="torch_port.lora_qwen2_5_vl_from_hf_config") + ["lr_scheduler.num_warmup_steps=0"]
    cfg = _parse(CONFIGS / "qwen2_5_vl_3b_lora.yaml", overrides)
    recipe = _run_in_process(LoRARecipe, cfg)
    losses = _losses(tmp_path / "logs")
    print(f"lora_finetune_single_device losses: {losses}")
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    assert losses[1] < losses[0]
    trainable = {n for n, p in recipe._model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)  # adapters only; the tower has none
    saved = tmp_path / "epoch_0"
    adapter = torch.load(saved / "adapter_model.pt", weights_only=True)
    assert set(adapter) == {n for n in trainable}
    # the LoRA model as trained (base weights from the input folder + the saved adapter, not merged)
    lora = torch_port.lora_qwen2_5_vl_from_hf_config(folder / "config.json", **{
        k: cfg.model[k] for k in ("lora_attn_modules", "apply_lora_to_mlp", "apply_lora_to_output",
                                  "lora_rank", "lora_alpha", "lora_dropout")})
    base = {}
    for shard in sorted(folder.glob("*.safetensors")):
        base.update(load_file(str(shard)))
    missing, unexpected = lora.load_state_dict({**torch_port.qwen2_5_vl_hf_to_tune(base), **adapter}, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    lora.eval()
    for sample in _sample_batch(*tiny_folder):
        err = rel_error(_port_logits(lora, sample), _hf_logits(saved, sample))
        print(f"lora: HF(merged epoch_0) vs LoRA model (base + adapter), logits rel err {err:.3g}")
        assert err <= FUSED_LOGITS_VS_HF_BOUND


def _tune_run_first_loss(tiny_folder, tmp_path, config: str, component: str, *extra: str) -> float:
    """``tune run <recipe> --config configs/<config>`` on the tiny folder, one step, activation
    checkpointing on; returns the logged step-1 loss."""
    folder, data_json, data_dir = tiny_folder
    recipe = "lora_finetune_single_device" if "lora" in config else "full_finetune_single_device"
    overrides = [o for o in _overrides(folder, data_json, data_dir, tmp_path / "out", model_component=component)
                 if not o.startswith(("enable_activation_checkpointing=", "max_steps_per_epoch="))]
    rf.tune_run([recipe, "--config", f"configs/{config}", *overrides, "enable_activation_checkpointing=True",
                 "max_steps_per_epoch=1", *extra], tmp_path / "tune_run.log")
    (loss,) = _losses(tmp_path / "out" / "logs")
    return loss


@pytest.mark.slow
@pytest.mark.parametrize("config, component, extra", [
    ("qwen2_5_vl_3b_full.yaml", "torch_port.qwen2_5_vl_from_hf_config", ()),
    ("qwen2_5_vl_3b_lora.yaml", "torch_port.lora_qwen2_5_vl_from_hf_config", ("lr_scheduler.num_warmup_steps=0",)),
])
def test_tune_run_first_step_loss_is_hf(tiny_folder, tmp_path, config, component, extra):
    folder, data_json, data_dir = tiny_folder
    loss = _tune_run_first_loss(tiny_folder, tmp_path, config, component, *extra)
    hf = rf.hf_batch_loss(folder, rf.recipe_samples(folder, data_json, data_dir))
    print(f"tune run ({config}, activation checkpointing): step-1 loss {loss:.7f}, HF {hf:.7f}, "
          f"rel diff {abs(loss - hf) / hf:.3g}")
    assert abs(loss - hf) <= TRAIN_LOSS_VS_HF_BOUND * abs(hf)


@pytest.mark.slow
def test_mixed_image_and_text_only_batch_single_device(tiny_folder, tmp_path_factory):
    folder, _, data_dir = tiny_folder
    _, _, losses = rf.full_single_device_run(tmp_path_factory, rf.MIXED_JSON)
    samples = rf.recipe_samples(folder, data_dir / rf.MIXED_JSON, data_dir)
    assert "image" in samples[0]["encoder_input"] and not samples[1]["encoder_input"]  # really mixed
    hf = rf.hf_batch_loss(folder, samples)
    print(f"mixed batch (image + text-only), one process: losses {losses}, HF step-1 loss {hf:.7f}")
    assert abs(losses[0] - hf) <= TRAIN_LOSS_VS_HF_BOUND * abs(hf)
    assert losses[1] < losses[0]


@pytest.mark.slow
def test_python_m_tune_recipes_is_the_tune_cli(tmp_path):
    """The older spelling ``python -m tune_recipes <args>`` still runs torchtune's CLI (now unpatched)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "tune_recipes", "ls"], cwd=rf.ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for recipe in ("full_finetune_single_device", "lora_finetune_single_device", "full_finetune_distributed"):
        assert recipe in proc.stdout
