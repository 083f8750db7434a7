"""A torchtune checkpointer for HF Qwen2.5-VL folders: what ``tune run`` configs name as ``checkpointer``.

torchtune 0.6.1's ``FullModelHFCheckpointer`` dispatches on a fixed ``ModelType`` enum with no
Qwen2.5-VL member, so this class implements the same interface (``load_checkpoint()`` ->
``{"model": state_dict, ...}``, ``save_checkpoint(state_dict, epoch, intermediate_checkpoint,
adapter_only)``) with this port's whole-checkpoint conversion:

* load: the safetensors shards of the folder (from ``model.safetensors.index.json``, a single
  ``model.safetensors``, or ``checkpoint_files``), through ``qwen2_5_vl_hf_to_tune``; a tied
  model's ``lm_head.weight`` (when present) must equal the embedding and is dropped, as the tied
  model has no such parameter;
* save: ``qwen2_5_vl_tune_to_hf`` (the released key layout), shards named as torchtune names them
  (each tensor in the shard it was read from) + ``model.safetensors.index.json``, every other file
  of the input folder copied (``config.json``, the processor and tokenizer files), so
  ``Qwen2_5_VLForConditionalGeneration.from_pretrained(<output_dir>/epoch_<n>)`` loads it;
* adapters and recipe state as torchtune's HF checkpointer: ``adapter_model.pt`` (torchtune keys;
  no PEFT conversion, as torchtune does for its own vision model) and ``recipe_state/recipe_state.pt``;
* atomic: an epoch folder is written under a temporary name and renamed when complete; files are
  written to a temporary name and renamed, so a crash never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch
from safetensors.torch import save_file

from torchtune import training
from torchtune.training.checkpointing._checkpointer import _CheckpointerInterface
from torchtune.training.checkpointing._utils import (
    ADAPTER_MODEL_FNAME,
    RECIPE_STATE_DIRNAME,
    SAFETENSOR_INDEX_FNAME,
    SHARD_FNAME,
    check_outdir_not_in_ckptdir,
    get_adapter_checkpoint_path,
    get_model_checkpoint_path,
    get_recipe_checkpoint_path,
    safe_torch_load,
)
from torchtune.utils import get_logger

from ._convert_weights import drop_tied_output, qwen2_5_vl_hf_to_tune, qwen2_5_vl_tune_to_hf
from ._hf_config import tied_embeddings, vision_fields
from ._hf_files import read_json, read_tensors, weight_files

__all__ = ["Qwen2_5_VLHFCheckpointer"]

log = get_logger("INFO")

MODEL_TYPE = "QWEN2_5_VL"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")  # never copied from the input folder
_INDEX_FILES = (SAFETENSOR_INDEX_FNAME, "pytorch_model.bin.index.json")


def _atomic_write(path: Path, write) -> None:
    """``write(tmp_path)`` then rename onto ``path`` (same folder, so the rename is atomic)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class Qwen2_5_VLHFCheckpointer(_CheckpointerInterface):
    """Read and write HF Qwen2.5-VL checkpoint folders for torchtune recipes.

    Args:
        checkpoint_dir (str): the HF folder (``config.json``, safetensors shards, processor files).
        output_dir (str): where ``epoch_<n>/`` folders (and ``recipe_state/``) are written; must not
            be inside ``checkpoint_dir``.
        checkpoint_files (list[str] | dict | None): shard names, or torchtune's
            ``{"filename_format", "max_filename"}``; None reads them from the folder's index.
        model_type (str): ``"QWEN2_5_VL"`` (the only type; the key exists because recipes read it).
        adapter_checkpoint, recipe_checkpoint (str | None): as torchtune's ``FullModelHFCheckpointer``
            (resume: default ``output_dir/epoch_<last>/adapter_model.pt``, ``output_dir/recipe_state/``).
        resume_from_checkpoint (bool): deprecated torchtune name of ``should_load_recipe_state``.
        safe_serialization (bool): must be True (safetensors only).
        should_load_recipe_state (bool): also load the adapter and recipe state of a previous run.
    """

    def __init__(
        self,
        checkpoint_dir: str,
        output_dir: str,
        checkpoint_files: Optional[Union[List[str], Dict[str, str]]] = None,
        model_type: str = MODEL_TYPE,
        adapter_checkpoint: Optional[str] = None,
        recipe_checkpoint: Optional[str] = None,
        resume_from_checkpoint: bool = False,
        safe_serialization: bool = True,
        should_load_recipe_state: bool = False,
    ) -> None:
        if model_type != MODEL_TYPE:
            raise ValueError(f"model_type must be {MODEL_TYPE!r} for this checkpointer, got {model_type!r}")
        if not safe_serialization:
            raise ValueError("safe_serialization=False (pickled .bin shards) is not supported; "
                             "this checkpointer writes safetensors only")
        self._should_load_recipe_state = bool(should_load_recipe_state or resume_from_checkpoint)
        self._checkpoint_dir = Path(checkpoint_dir)
        self._output_dir = Path(output_dir)
        config_path = self._checkpoint_dir / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"{config_path} not found: checkpoint_dir must be an HF Qwen2.5-VL folder")
        check_outdir_not_in_ckptdir(ckpt_dir=self._checkpoint_dir, out_dir=self._output_dir)
        self._output_dir.mkdir(parents=True, exist_ok=True)
        self._config = read_json(config_path)
        self._weight_map: Dict[str, str] = {}  # HF key -> shard number "0001", filled by load_checkpoint
        if checkpoint_files is None:
            checkpoint_files = self._files_from_folder()
        self._adapter_checkpoint = get_adapter_checkpoint_path(
            output_dir=self._output_dir, adapter_checkpoint=adapter_checkpoint,
            should_load_recipe_state=self._should_load_recipe_state, pattern=r"^epoch_(\d+)",
        )
        self._recipe_checkpoint = get_recipe_checkpoint_path(
            output_dir=self._output_dir, recipe_checkpoint=recipe_checkpoint,
            should_load_recipe_state=self._should_load_recipe_state,
        )
        self._checkpoint_paths = get_model_checkpoint_path(
            checkpoint_files=checkpoint_files, checkpoint_dir=self._checkpoint_dir,
            output_dir=self._output_dir, should_load_recipe_state=self._should_load_recipe_state,
            has_adapter_checkpoint=self._adapter_checkpoint is not None,
        )
        bad = [str(p) for p in self._checkpoint_paths if p.suffix != ".safetensors"]
        if bad:
            raise ValueError(f"only safetensors weights are read (no pickle files), got {bad}")

    def _files_from_folder(self) -> List[str]:
        return [path.name for path in weight_files(self._checkpoint_dir)]

    @property
    def tied(self) -> bool:
        return tied_embeddings(self._config)

    def load_checkpoint(self) -> Dict[str, Any]:
        """-> ``{"model": port state dict}`` (+ ``"adapter"`` and the recipe state when resuming).

        Raises:
            ValueError: unmappable keys (named), or a tied checkpoint whose ``lm_head.weight``
                differs from the embedding.
        """
        merged: Dict[str, torch.Tensor] = {}
        self._weight_map = {}
        for number, path in enumerate(self._checkpoint_paths, start=1):
            shard = read_tensors([path])
            self._weight_map.update({key: f"{number:04}" for key in shard})
            merged.update(shard)
        model = qwen2_5_vl_hf_to_tune(merged)
        if self.tied and not drop_tied_output(model):
            raise ValueError("lm_head.weight differs from the token embedding although "
                             f"{self._checkpoint_dir / 'config.json'} has tie_word_embeddings true")
        out: Dict[str, Any] = {training.MODEL_KEY: model}
        if self._adapter_checkpoint:
            out[training.ADAPTER_KEY] = safe_torch_load(self._adapter_checkpoint)
        if self._should_load_recipe_state:
            out.update(safe_torch_load(self._recipe_checkpoint, mmap=False))
        return out

    def _patch_geometry(self) -> dict:
        vision = vision_fields(self._config.get("vision_config") or {})
        return {name: vision[name] for name in ("in_channels", "temporal_patch_size", "patch_size")}

    def _write_model(self, folder: Path, model_state: Dict[str, torch.Tensor]) -> None:
        hf = qwen2_5_vl_tune_to_hf(model_state, **self._patch_geometry())
        if self.tied:
            hf.pop("lm_head.weight", None)  # a tied model has none (the recipe's state dict has none either)
        shards: Dict[str, Dict[str, torch.Tensor]] = {}
        for key, value in hf.items():  # keys new to the folder (none for a full model) go to the last shard
            number = self._weight_map.get(key, max(self._weight_map.values(), default="0001"))
            shards.setdefault(number, {})[key] = value.detach().cpu().contiguous()
        names = {n: SHARD_FNAME.format(cpt_idx=n.zfill(5), num_shards=str(len(shards)).zfill(5)) + ".safetensors"
                 for n in shards}
        total = 0
        for number, tensors in shards.items():
            save_file(tensors, str(folder / names[number]), metadata={"format": "pt"})
            total += sum(t.numel() * t.element_size() for t in tensors.values())
        index = {"metadata": {"total_size": total},
                 "weight_map": {k: names[n] for n, tensors in shards.items() for k in tensors}}
        (folder / SAFETENSOR_INDEX_FNAME).write_text(json.dumps(index, indent=2))

    def _copy_folder_files(self, folder: Path) -> None:
        for path in sorted(self._checkpoint_dir.iterdir()):
            if path.is_file() and not path.name.endswith(_WEIGHT_SUFFIXES) and path.name not in _INDEX_FILES:
                shutil.copy2(path, folder / path.name)

    def save_checkpoint(
        self,
        state_dict: Dict[str, Any],
        epoch: int,
        intermediate_checkpoint: bool = False,
        adapter_only: bool = False,
    ) -> None:
        """Write ``output_dir/epoch_<epoch>/`` (HF layout) and, if intermediate, the recipe state.

        Args:
            state_dict (dict): ``"model"`` (port keys; merged LoRA weights for LoRA runs),
                optionally ``"adapter"``, ``"adapter_config"`` and the recipe state keys.
            epoch (int): names the folder.
            intermediate_checkpoint (bool): also write ``recipe_state/recipe_state.pt`` (everything
                but the model, adapter and adapter config).
            adapter_only (bool): write the adapter only (no model shards).

        Raises:
            ValueError: ``adapter_only`` without an ``"adapter"`` entry, or no ``"model"`` otherwise.
        """
        if adapter_only and training.ADAPTER_KEY not in state_dict:
            raise ValueError("adapter_only=True but the state dict has no 'adapter' entry")
        if not adapter_only and training.MODEL_KEY not in state_dict:
            raise ValueError(f"state dict has no 'model' entry (keys: {sorted(state_dict)})")
        final = self._output_dir / f"epoch_{epoch}"
        staging = Path(tempfile.mkdtemp(dir=self._output_dir, prefix=f".epoch_{epoch}.", suffix=".partial"))
        try:
            if not adapter_only:
                self._write_model(staging, state_dict[training.MODEL_KEY])
            if training.ADAPTER_KEY in state_dict:
                torch.save(state_dict[training.ADAPTER_KEY], staging / f"{ADAPTER_MODEL_FNAME}.pt")
                log.info("Qwen2.5-VL adapter saved in torchtune format (adapter_model.pt); no PEFT conversion")
            self._copy_folder_files(staging)
            if final.exists():  # an earlier save of this epoch: replace it whole
                old = final.with_name(f".{final.name}.old-{os.getpid()}")
                os.replace(final, old)
                os.replace(staging, final)
                shutil.rmtree(old)
            else:
                os.replace(staging, final)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        log.info(f"Qwen2.5-VL checkpoint saved to {final}")
        if intermediate_checkpoint:
            recipe_state = {k: v for k, v in state_dict.items()
                            if k not in (training.MODEL_KEY, training.ADAPTER_KEY, training.ADAPTER_CONFIG)}
            path = self._output_dir / RECIPE_STATE_DIRNAME / "recipe_state.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, lambda tmp: torch.save(recipe_state, tmp))
