"""torchtune's stock ``full_finetune_distributed`` on CPU processes: the recipe after ``_cpu_workarounds.install()``.

A workaround, for CPU runs only (see tune_recipes/_cpu_workarounds.py: two calls of torchtune 0.6.1
that assume a CUDA-like device); on GPUs use ``tune_recipes/full_finetune_distributed.py``.
"""

if __name__ == "__main__":
    from tune_recipes import run_stock_recipe
    from tune_recipes._cpu_workarounds import install

    from tune_recipes._torchao_compat import install as install_torchao_compat

    install_torchao_compat()  # before torchtune.training is imported by the workaround
    install()
    run_stock_recipe("full_finetune_distributed")
