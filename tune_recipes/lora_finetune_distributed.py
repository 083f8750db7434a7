"""torchtune's stock ``lora_finetune_distributed`` recipe (see tune_recipes/__init__.py)."""

if __name__ == "__main__":
    from tune_recipes import run_stock_recipe

    run_stock_recipe("lora_finetune_distributed")
