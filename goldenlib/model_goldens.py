"""Whole-model goldens: the tiny models of `goldenlib.model_folders` on a prompt with one image, two
images, a video, and text only, every stage from the image stages to the logits.

A case is built exactly as a porter's own-checkpoint golden (`goldenlib.checkpoint_golden`): the model's
HF folder is written to a temporary directory, and the folder, the prompt and the media go through the
reference (float64) and through HF (AutoProcessor: equal outputs; the float32 model fed
mm_token_type_ids: every float stage within `HF_CROSSCHECK_BOUND`) before anything is returned. The
image stages are left out (the `tv_*` cases hold them): the stored inputs start at `pixel_values`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

from reference.preprocess import TORCHVISION_STAGES as IMAGE_STAGES

from .processor_settings import processor_settings
from .stage_vocabulary import case_stages
from .tolerances import HF_CROSSCHECK_BOUND


@dataclass(frozen=True)
class ModelPrompt:
    """The inputs of a whole-model case: a tiny model, a prompt, uint8 images / clips."""

    model: str  # a name in goldenlib.model_folders.MODELS
    prompt: str
    images: tuple = ()
    videos: tuple = ()


def build_model_case(case):
    """(tensors, metadata, report) of a ``kind="model"`` case; report as ``goldenlib.build.build_case``'s:
    [(case, model, {("sdpa", stage): rel. error vs HF float32})]."""
    from .checkpoint_golden import checkpoint_golden
    from .hf_image import versions
    from .model_folders import MODELS, PREPROCESSOR, write_model_folder

    inputs = case.inputs()
    model = MODELS[inputs.model]
    with tempfile.TemporaryDirectory() as folder:
        write_model_folder(inputs.model, folder)
        tensors, metadata, errors = checkpoint_golden(folder, inputs.prompt, images=inputs.images,
                                                      videos=inputs.videos, bound=HF_CROSSCHECK_BOUND)
    # the image stages are the tv_* cases' business; here the model's inputs start at pixel_values
    tensors = {name: value for name, value in tensors.items() if name.split(".")[0] not in IMAGE_STAGES}
    metadata.update(case=case.name, description=case.description, model=inputs.model, seed=model.seed,
                    checkpoint=f"goldenlib.model_folders.write_model_folder({inputs.model!r}, folder)",
                    weights=f"reference.random_weights(config.vision, {model.seed}) and "
                            f"reference.random_text_weights(config.text, {model.seed}), not stored",
                    versions=versions(), stages=case_stages(tensors), processor=processor_settings("image", {
                        "backend": "torchvision", **{k: PREPROCESSOR[k] for k in ("min_pixels", "max_pixels")}}),
                    **case.metadata)
    return tensors, metadata, [(case.name, inputs.model, {("sdpa", stage): error for stage, error in errors.items()})]
