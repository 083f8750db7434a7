"""``python -m tune_recipes <tune arguments>``: torchtune's ``tune`` CLI after the torchao compat step.

torchtune 0.6.1's ``tune`` command itself imports ``torchtune.training`` (via ``tune download``),
so with torchao 0.17 it fails before parsing its arguments; this runs the same CLI after
``_torchao_compat.install()``. Single-device runs take the stock recipe names
(``run full_finetune_single_device``: runpy in this process); multi-process runs name the
``tune_recipes.<recipe>`` module, so that every ``torchrun`` worker installs the names too.
"""

from tune_recipes._torchao_compat import install

install()

from torchtune._cli.tune import main  # noqa: E402

if __name__ == "__main__":
    main()
