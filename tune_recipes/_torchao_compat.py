"""Let ``torchtune.training`` import with torchao 0.17 (the project's pin): two names torchao removed.

torchtune 0.6.1's ``torchtune/training/quantization.py`` imports ``int4_weight_only`` and
``int8_dynamic_activation_int4_weight`` from ``torchao.quantization`` at module level; torchao
0.17 no longer has them (they became config classes), so ``import torchtune.training`` - and so
every stock recipe and torchtune's checkpointer module - fails with an ImportError. torchao 0.18
removes ``torchao.dtypes.nf4tensor``, which the rest of torchtune needs, so no newer torchao helps.
(torchao 0.15.0 still has both old names and ``nf4tensor``, checked in its wheel; 0.16.0 lacks the
names. The project keeps the 0.17.0 pin its issue asks for and bridges the two names here.)

``install()`` puts two stand-ins under those names in ``torchao.quantization`` (no file of
torchtune or torchao is changed). They are only called by torchtune's int4 / 8da4w quantizers
(``quantize.py``, QAT recipes), which this project does not use; calling one raises an error
that says so, so nothing runs with the wrong quantization.
"""

__all__ = ["install"]

_REMOVED = ("int4_weight_only", "int8_dynamic_activation_int4_weight")


def _removed(name: str):
    def stand_in(*args, **kwargs):
        import torchao

        raise NotImplementedError(
            f"torchao.quantization.{name} was removed in torchao {torchao.__version__}; torchtune 0.6.1's "
            "quantizers that call it are not supported in this environment (tune_recipes._torchao_compat)"
        )

    stand_in.__name__ = name
    return stand_in


def install() -> None:
    """Add the removed names to ``torchao.quantization`` where missing (idempotent)."""
    import torchao.quantization as quantization

    for name in _REMOVED:
        if not hasattr(quantization, name):
            setattr(quantization, name, _removed(name))
