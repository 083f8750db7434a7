"""torchtune's stock ``full_finetune_distributed`` on CPU processes: the recipe after ``_cpu_workarounds.install()``.

A workaround, for CPU runs only (see tune_recipes/_cpu_workarounds.py: two calls of torchtune 0.6.1
that assume a CUDA-like device); on GPUs run ``tune run --nproc_per_node N full_finetune_distributed``.
"""

if __name__ == "__main__":
    from tune_recipes import run_stock_recipe
    from tune_recipes._cpu_workarounds import install

    install()
    run_stock_recipe("full_finetune_distributed")
