"""Shared pieces of the recipe tests: the tiny HF folder + dataset, the config overrides, the parser.

Used by tests/test_recipes.py (single-device stock recipes) and tests/test_distributed.py
(2-process runs). Importing this installs the torchao compat names (tune_recipes/_torchao_compat.py)
before anything imports ``torchtune.training``.
"""

import json
from pathlib import Path

import torch

from tune_recipes._torchao_compat import install as _install_torchao_compat

_install_torchao_compat()

from checkpoint_folder import PREPROCESSOR_JSON  # noqa: E402
from hf_tiny_vl import config_dict, random_hf_model  # noqa: E402
from tiny_tokenizer import SPECIAL_IDS, hf_tiny_tokenizer, write_tiny_tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
VOCAB = 151680  # past the last Qwen special id (151664), so the transform's real ids fit
QUESTIONS = ["What is in this image?", "Describe the picture."]
ANSWERS = ["A red square.", "A cat and a dog."]


def tiny_hf_config(name: str) -> dict:
    """hf_tiny_vl's config ``name`` with Qwen's real vocabulary size and special ids."""
    config = config_dict(name)
    config.update(vocab_size=VOCAB, bos_token_id=SPECIAL_IDS["<|endoftext|>"],
                  eos_token_id=SPECIAL_IDS["<|im_end|>"], pad_token_id=SPECIAL_IDS["<|endoftext|>"],
                  vision_start_token_id=SPECIAL_IDS["<|vision_start|>"],
                  vision_end_token_id=SPECIAL_IDS["<|vision_end|>"],
                  image_token_id=SPECIAL_IDS["<|image_pad|>"], video_token_id=SPECIAL_IDS["<|video_pad|>"])
    return config


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
    return folder, data / "train.json", data


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

    _install_torchao_compat()  # as tune_recipes.<recipe> does before running the stock file
    path = stock_recipe_path(recipe)
    spec = importlib.util.spec_from_file_location(f"_tune_recipe_{recipe}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)
