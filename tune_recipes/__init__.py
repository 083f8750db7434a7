"""torchtune's stock recipes, run unchanged after one compatibility step (``tune run tune_recipes.<recipe>``).

``torchtune.training`` does not import with the project's torchao 0.17 (see
``tune_recipes/_torchao_compat.py``), and every stock recipe imports it first. Each module here
installs the compatibility names and then runs torchtune's own recipe file as ``__main__``
(``tune run`` takes a module path as a custom recipe; ``--nproc_per_node`` runs it with
``python -m`` in each process, so every rank gets the same step). Run from the project root::

    tune run tune_recipes.full_finetune_single_device --config configs/qwen2_5_vl_3b_full.yaml
    PYTHONPATH=. tune run --nproc_per_node 2 tune_recipes.full_finetune_distributed --config configs/qwen2_5_vl_7b_full.yaml

On CPU processes: ``full_finetune_distributed_cpu`` (the stock recipe after the runtime workaround of
``_cpu_workarounds``) and ``fsdp2_cpu`` (FSDP2 data-parallel training without the recipe).
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
    """Install the torchao compatibility names, then run torchtune's recipe file as ``__main__``."""
    from ._torchao_compat import install

    install()
    runpy.run_path(str(stock_recipe_path(name)), run_name="__main__")
