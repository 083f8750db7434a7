"""Launchers for torchtune's stock recipes where ``tune run <recipe>`` alone does not do.

With the pinned torchao 0.15.0, torchtune 0.6.1 imports unchanged, so the documented commands work
from the project root (``tune run`` adds the working directory to ``sys.path`` for one process;
torchrun's workers need ``PYTHONPATH=.``)::

    tune run full_finetune_single_device --config configs/qwen2_5_vl_3b_full.yaml
    PYTHONPATH=. tune run --nproc_per_node 8 full_finetune_distributed --config configs/qwen2_5_vl_7b_full.yaml
    tune run tune_recipes/generate.py --config configs/qwen2_5_vl_3b_generation.yaml

What is here:

* ``full_finetune_distributed_cpu``: the stock ``full_finetune_distributed`` on CPU processes, after
  the runtime workaround of ``_cpu_workarounds`` (two calls of the recipe assume a CUDA-like device);
* ``fsdp2_cpu``: FSDP2 data-parallel training without the recipe (the CPU reference run);
* ``generate``: generation from an HF folder and an image prompt (torchtune has no recipe for this model);
* ``full_finetune_single_device`` ... ``lora_finetune_distributed``: the stock recipe files run as
  ``__main__`` (``tune run tune_recipes.<recipe>``), kept so that existing commands keep working.
"""

import runpy
from pathlib import Path

__all__ = ["STOCK_RECIPES", "run_stock_recipe", "stock_recipe_path"]

STOCK_RECIPES = ("full_finetune_single_device", "lora_finetune_single_device", "full_finetune_distributed",
                 "lora_finetune_distributed")


def stock_recipe_path(name: str) -> Path:
    """The file of torchtune's recipe ``name`` (where ``tune run <name>`` finds it)."""
    import torchtune

    if name not in STOCK_RECIPES:
        raise ValueError(f"unknown recipe {name!r}; expected one of {list(STOCK_RECIPES)}")
    return Path(torchtune.__file__).resolve().parents[1] / "recipes" / f"{name}.py"


def run_stock_recipe(name: str) -> None:
    """Run torchtune's recipe file ``name`` as ``__main__``, unchanged (what ``tune run <name>`` runs)."""
    runpy.run_path(str(stock_recipe_path(name)), run_name="__main__")
