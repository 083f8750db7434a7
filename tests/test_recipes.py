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
* ``tune run --nproc_per_node 2 full_finetune_distributed`` (configs/qwen2_5_vl_7b_full.yaml,
  ``device: cpu``, gloo): losses and saved weights equal to the single-process run on the same data.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("torchtune")
from tune_recipes._torchao_compat import install as _install_torchao_compat  # noqa: E402

_install_torchao_compat()  # before anything imports torchtune.training (the checkpointer, the recipes)

from checkpoint_folder import PREPROCESSOR_JSON  # noqa: E402
from goldenlib.tolerances import FUSED_LOGITS_VS_HF_BOUND, rel_error  # noqa: E402
from hf_tiny_vl import TINY_VL_CONFIGS, config_dict  # noqa: E402
from tiny_tokenizer import SPECIAL_IDS, hf_tiny_tokenizer, write_tiny_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
VOCAB = 151680  # past the last Qwen special id (151664), so the transform's real ids fit
QUESTIONS = ["What is in this image?", "Describe the picture."]
ANSWERS = ["A red square.", "A cat and a dog."]


def _tiny_hf_config(name: str) -> dict:
    config = config_dict(name)
    config.update(vocab_size=VOCAB, bos_token_id=SPECIAL_IDS["<|endoftext|>"],
                  eos_token_id=SPECIAL_IDS["<|im_end|>"], pad_token_id=SPECIAL_IDS["<|endoftext|>"],
                  vision_start_token_id=SPECIAL_IDS["<|vision_start|>"],
                  vision_end_token_id=SPECIAL_IDS["<|vision_end|>"],
                  image_token_id=SPECIAL_IDS["<|image_pad|>"], video_token_id=SPECIAL_IDS["<|video_pad|>"])
    return config


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """(HF folder, dataset JSON, image folder): a tied tiny model, 3 safetensors shards, 4 samples."""
    from PIL import Image
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    root = tmp_path_factory.mktemp("recipes")
    folder = root / "Qwen2.5-VL-tiny"
    torch.manual_seed(0)
    config = Qwen2_5_VLConfig(**_tiny_hf_config("tied_gqa"))
    model = Qwen2_5_VLForConditionalGeneration(config).float()
    with torch.no_grad():  # hf_tiny_vl.hf_model's init: logits not all near zero
        for name, p in model.named_parameters():
            if "norm" in name or "ln_q" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * (0.1 if p.ndim == 1 else 0.2))
    model.save_pretrained(folder, max_shard_size="15MB")
    write_tiny_tokenizer(folder)
    hf_tiny_tokenizer(folder).save_pretrained(folder)  # tokenizer.json: the special tokens' ids
    write_tiny_tokenizer(folder)  # vocab.json + merges.txt as Qwen2_5_VLTransform reads them
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_JSON))
    data = root / "data"
    (data / "images").mkdir(parents=True)
    rng = torch.Generator().manual_seed(1)
    samples = []
    for k, (question, answer) in enumerate(zip(QUESTIONS, ANSWERS)):
        pixels = torch.randint(0, 256, (56 + 28 * k, 56, 3), generator=rng, dtype=torch.uint8).numpy()
        Image.fromarray(pixels).save(data / "images" / f"{k}.png")
        samples.append({"conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}],
                        "image": f"images/{k}.png"})
    (data / "train.json").write_text(json.dumps(samples + samples))  # step 2 repeats step 1's batch
    return folder, data / "train.json", data


def _overrides(folder, data_json, data_dir, out_dir, *, model_component: str, lr: float = 2e-3) -> list[str]:
    """What turns a project config into the tiny CPU run (everything else is the YAML's)."""
    return [
        f"model_dir={folder}", f"output_dir={out_dir}",
        f"model._component_={model_component}", f"model.config={folder / 'config.json'}",
        f"dataset.data_files={data_json}", f"dataset.image_dir={data_dir}",
        "device=cpu", "dtype=fp32", "batch_size=2", "gradient_accumulation_steps=1", "epochs=1",
        "max_steps_per_epoch=2", "shuffle=False", "seed=0", "compile=False",
        f"optimizer.lr={lr}", "optimizer.weight_decay=0.0", "clip_grad_norm=null",
        "enable_activation_checkpointing=False", "log_peak_memory_stats=False",
    ]


def _parse(config: Path, overrides: list[str]):
    """The recipe's config as ``tune run`` builds it (torchtune's own parser and merge)."""
    from torchtune.config._parse import TuneRecipeArgumentParser, _merge_yaml_and_cli_args

    yaml_args, cli_args = TuneRecipeArgumentParser().parse_known_args(["--config", str(config), *overrides])
    return _merge_yaml_and_cli_args(yaml_args, cli_args)


def _recipe_class(recipe: str, name: str):
    """A class of torchtune's stock recipe file (``tune run`` runs the same file; torchtune's
    ``recipes`` folder refuses to be imported as a package)."""
    import importlib.util

    from tune_recipes import stock_recipe_path
    from tune_recipes._torchao_compat import install

    install()  # as tune_recipes.<recipe> does before running the stock file
    path = stock_recipe_path(recipe)
    spec = importlib.util.spec_from_file_location(f"_tune_recipe_{recipe}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def _run_in_process(recipe_cls, cfg):
    """``recipe_main`` of a stock recipe, returning the recipe (its trained model) instead of exiting."""
    recipe = recipe_cls(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.train()
    recipe.cleanup()
    return recipe


def _losses(log_dir: Path) -> list[float]:
    """Per-step losses from the recipe's DiskLogger file (``Step N | loss:X lr:... ``)."""
    (log_file,) = sorted(Path(log_dir).glob("log_*.txt"))
    losses = []
    for line in log_file.read_text().splitlines():
        fields = dict(part.split(":", 1) for part in line.split("|", 1)[1].split() if ":" in part)
        losses.append(float(fields["loss"]))
    return losses


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
    FullFinetuneRecipeSingleDevice = _recipe_class("full_finetune_single_device", "FullFinetuneRecipeSingleDevice")
    folder, data_json, data_dir = tiny_folder
    out = tmp_path_factory.mktemp("full_single")
    cfg = _parse(CONFIGS / "qwen2_5_vl_3b_full.yaml",
                 _overrides(folder, data_json, data_dir, out, model_component="torch_port.qwen2_5_vl_from_hf_config"))
    return _run_in_process(FullFinetuneRecipeSingleDevice, cfg), out


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
