"""torchtune's stock ``full_finetune_distributed`` recipe (see tune_recipes/__init__.py)."""

if __name__ == "__main__":
    from tune_recipes import run_stock_recipe

    run_stock_recipe("full_finetune_distributed")
