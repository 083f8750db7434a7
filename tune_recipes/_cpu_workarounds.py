"""Runtime stand-ins for the two calls that stop torchtune 0.6.1's distributed recipes on CPU (a workaround).

``recipes/full_finetune_distributed.py`` (and ``lora_finetune_distributed.py``) run on CPU with the
gloo backend up to two calls that assume a CUDA-like device:

* ``_setup_model`` ends with ``training.get_memory_stats(device=self._device)`` on rank 0 whatever
  ``log_peak_memory_stats`` says; ``torchtune/training/memory.py``'s ``get_memory_stats`` raises
  ``ValueError("Logging memory stats is not supported on CPU devices")``, and the
  ``training.log_memory_stats(memory_stats)`` after it reads CUDA's keys (``peak_memory_alloc``, ...);
* ``train()`` starts with ``training.cleanup_before_training()``, which calls
  ``get_torch_device_namespace().empty_cache()`` - ``torch.cpu.empty_cache``, which torch does not have.

``install()`` swaps those three names of ``torchtune.training`` (the recipes look them up there at call
time) for versions that do nothing device-specific on CPU and call torchtune's own otherwise. No file
of torchtune is changed; this is a workaround for CPU test runs, not something a GPU run needs.
"""

import gc

__all__ = ["install"]


def install() -> None:
    """Replace ``torchtune.training.get_memory_stats`` / ``log_memory_stats`` / ``cleanup_before_training``
    with CPU-tolerant ones (idempotent)."""
    from torchtune import training
    from torchtune.utils import get_torch_device_namespace

    if getattr(training.get_memory_stats, "_cpu_tolerant", False):
        return
    stock_stats, stock_log, stock_cleanup = (training.get_memory_stats, training.log_memory_stats,
                                             training.cleanup_before_training)

    def get_memory_stats(device, reset_stats: bool = True) -> dict:
        if device.type == "cpu":
            return {}  # nothing to report: torchtune tracks device (CUDA-like) memory only
        return stock_stats(device, reset_stats=reset_stats)

    def log_memory_stats(stats: dict, *args, **kwargs) -> None:
        if stats:  # empty: the CPU case above
            stock_log(stats, *args, **kwargs)

    def cleanup_before_training() -> None:
        if not hasattr(get_torch_device_namespace(), "empty_cache"):  # torch.cpu: no device cache
            gc.collect()
            return
        stock_cleanup()

    get_memory_stats._cpu_tolerant = True
    training.get_memory_stats = get_memory_stats
    training.log_memory_stats = log_memory_stats
    training.cleanup_before_training = cleanup_before_training
