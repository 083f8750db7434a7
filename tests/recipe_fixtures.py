"""Shared pieces of the recipe tests: the tiny HF folder + dataset, the config overrides, the parser,
the ``tune`` command and HF's loss on a recipe batch.

Used by tests/test_recipes.py (single-device stock recipes) and tests/test_distributed.py
(2-process runs). The folder and the in-process single-device run are made once per test session
(``shared_recipe_folder``, ``full_single_device_run``): both test files compare against them.
"""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from checkpoint_folder import PREPROCESSOR_JSON
from hf_tiny_vl import config_dict, random_hf_model
from tiny_tokenizer import SPECIAL_IDS, hf_tiny_tokenizer, write_tiny_tokenizer

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
MIXED_JSON = "train_mixed.json"  # next to train.json: image, text-only, image, text-only
TEXT_ONLY = {"conversations": [{"from": "human", "value": "Say something."},
                               {"from": "gpt", "value": "A dog and a red cat."}]}
TUNE = Path(sys.executable).with_name("tune")  # the tune command of this environment
QUESTIONS = ["What is in this image?", "Describe the picture."]
ANSWERS = ["A red square.", "A cat and a dog."]


def tiny_hf_config(name: str) -> dict:
    """hf_tiny_vl's config ``name`` with Qwen's real vocabulary size and special ids (a name of its
    own: tests/test_qlora.py swaps it for a config with an NF4-sized decoder)."""
    return config_dict(name, qwen_ids=True)


def write_recipe_folder(root: Path):
    """(HF folder, dataset JSON, image folder) under ``root``: a tied tiny model, 3 safetensors
    shards, 4 samples (samples 2, 3 repeat 0, 1, so an unshuffled batch-2 run sees step 1's batch
    again at step 2)."""
    from PIL import Image

    folder = root / "Qwen2.5-VL-tiny"
    model = random_hf_model(tiny_hf_config("tied_gqa"), seed=0)  # hf_tiny_vl's init: logits not all near zero
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
    # batch 2: an image chat next to a text-only one; on 2 ranks of 1 sample rank 1 has no image
    (data / MIXED_JSON).write_text(json.dumps([samples[0], TEXT_ONLY] * 2))
    return folder, data / "train.json", data


def shared_recipe_folder(tmp_path_factory):
    """``write_recipe_folder`` once per session (test_recipes and test_distributed share it)."""
    return _recipe_folder(tmp_path_factory.getbasetemp())


@functools.cache
def _recipe_folder(basetemp: Path):  # cached on the session's temporary root: once per session
    root = basetemp / "shared_recipe_folder"
    root.mkdir()
    return write_recipe_folder(root)


def full_single_device_run(tmp_path_factory, data_json: str = "train.json"):
    """The stock ``full_finetune_single_device`` in this process on the shared folder, the 3B full
    config with ``recipe_overrides`` (batch 2, 2 steps), once per session and dataset file:
    (recipe, output folder, logged losses)."""
    return _full_single_device_run(tmp_path_factory.getbasetemp(), data_json)


@functools.cache
def _full_single_device_run(basetemp: Path, data_json: str):
    folder, _, data_dir = _recipe_folder(basetemp)
    out = basetemp / f"full_single_{Path(data_json).stem}"
    out.mkdir()
    cfg = parse_recipe_config(CONFIGS / "qwen2_5_vl_3b_full.yaml", recipe_overrides(
        folder, data_dir / data_json, data_dir, out, model_component="torch_port.qwen2_5_vl_from_hf_config"))
    recipe = stock_recipe_class("full_finetune_single_device", "FullFinetuneRecipeSingleDevice")(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.train()
    recipe.cleanup()
    return recipe, out, logged_losses(out / "logs")


def tune_run(args: list, log: Path, timeout: int = 300) -> None:
    """``tune run <args>`` (the executable) from the project root, no PYTHONPATH; output in ``log``.
    The timeout bounds a hang (a 2-process run whose collectives do not pair up)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WORLD_SIZE", "RANK", "LOCAL_RANK")}
    with open(log, "w") as out:
        proc = subprocess.run([str(TUNE), "run", *map(str, args)], cwd=ROOT, env=env, stdout=out,
                              stderr=subprocess.STDOUT, timeout=timeout)
    assert proc.returncode == 0, f"tune run {args[:4]} exited {proc.returncode}:\n" + log.read_text()[-6000:]


def hf_batch_loss(model_dir: Path, samples: list) -> float:
    """HF's ``labels=`` loss (float32, eager) on the recipe's right-padded batch of ``samples``
    (Qwen2_5_VLTransform samples): HF computes its own positions from the attention mask."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    import torch_port

    batch = torch_port.padded_collate_qwen2_5_vl(samples)
    tokens = batch["tokens"]
    attention = torch.zeros_like(tokens)
    for row, sample in enumerate(samples):
        attention[row, :len(sample["tokens"])] = 1
    image = batch["encoder_input"].get("image", {})
    hf = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32,
                                                            attn_implementation="eager")
    with torch.no_grad():
        return hf(input_ids=tokens, attention_mask=attention,
                  mm_token_type_ids=(tokens == SPECIAL_IDS["<|image_pad|>"]).long(), labels=batch["labels"],
                  pixel_values=image.get("pixel_values"), image_grid_thw=image.get("grid_thw")).loss.item()


def recipe_samples(folder: Path, data_json: Path, data_dir: Path, n: int = 2) -> list:
    """The first ``n`` samples of the dataset as the recipe transforms them."""
    import torch_port

    transform = torch_port.Qwen2_5_VLTransform(str(folder / "vocab.json"), str(folder / "merges.txt"),
                                               str(folder / "tokenizer.json"))
    ds = torch_port.qwen2_5_vl_chat_dataset(transform, data_files=str(data_json), image_dir=str(data_dir))
    return [ds[i] for i in range(n)]


def recipe_overrides(folder, data_json, data_dir, out_dir, *, model_component: str, lr: float = 2e-3) -> list[str]:
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


def parse_recipe_config(config: Path, overrides: list[str]):
    """The recipe's config as ``tune run`` builds it (torchtune's own parser and merge)."""
    from torchtune.config._parse import TuneRecipeArgumentParser, _merge_yaml_and_cli_args

    yaml_args, cli_args = TuneRecipeArgumentParser().parse_known_args(["--config", str(config), *overrides])
    return _merge_yaml_and_cli_args(yaml_args, cli_args)


def logged_losses(log_dir: Path) -> list[float]:
    """Per-step losses from a recipe's DiskLogger file (``Step N | loss:X lr:... ``)."""
    (log_file,) = sorted(Path(log_dir).glob("log_*.txt"))
    losses = []
    for line in log_file.read_text().splitlines():
        fields = dict(part.split(":", 1) for part in line.split("|", 1)[1].split() if ":" in part)
        losses.append(float(fields["loss"]))
    return losses


def stock_recipe_class(recipe: str, name: str):
    """A class of torchtune's stock recipe file (``tune run`` runs the same file; torchtune's
    ``recipes`` folder refuses to be imported as a package)."""
    import importlib.util

    from tune_recipes import stock_recipe_path

    path = stock_recipe_path(recipe)
    spec = importlib.util.spec_from_file_location(f"_tune_recipe_{recipe}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)
