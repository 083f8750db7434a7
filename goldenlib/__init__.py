"""The goldens: what they hold, how they are built and checked against HF, and every error bound.

* :mod:`goldenlib.cases` - the ONE case registry (``CASES``: image, tower-only and scenario cases)
  and the towers run on them (``TOWERS``); adding a case is one entry there.
* :mod:`goldenlib.tolerances` - the error metric (``rel_error``) and every bound of the project.
* :mod:`goldenlib.build` - one case built in memory and cross-checked against HF (the generator's
  and the parity scenarios' code).
* :mod:`goldenlib.image_goldens`, :mod:`goldenlib.tower_goldens` - the reference's stages of each kind.
* :mod:`goldenlib.hf_image`, :mod:`goldenlib.hf_vision` - the same stages as HF / Pillow compute them.
* :mod:`goldenlib.position_goldens`, :mod:`goldenlib.hf_positions` - the positions cases (placeholder
  expansion, mRoPE position ids, text rotary): the reference's stages and HF's.
* :mod:`goldenlib.model_folders`, :mod:`goldenlib.model_goldens`, :mod:`goldenlib.checkpoint_golden`,
  :mod:`goldenlib.shard_weights`, :mod:`goldenlib.hf_model` - whole models to the logits: the tiny models and
  their HF folders, the ``lm_*`` cases, a golden of any checkpoint folder (``generate_golden.py --model``),
  weights read from the shards on use, HF's whole model with hooks.
* :mod:`goldenlib.store` - the files: safetensors per case, sha256 manifest, atomic replacement.
* :mod:`goldenlib.rewrite` - which goldens a regeneration rewrites (only what moved beyond its bound).
* :mod:`goldenlib.verified` - ``golden/VERIFIED.json``: what the goldens were last verified with.
* :mod:`goldenlib.drift` - the ``--check`` drift report.
* :mod:`goldenlib.blas` - the OpenBLAS kernel the float64 goldens were computed with.
"""
