"""Implementations under test: what the parity checks run against the goldens.

An implementation is any object with these methods, all taking and returning NumPy arrays in
the ORIGINAL patch order (rows of ``pixel_values``); results are compared in float64:

* ``name`` (str), ``dtype`` (str: "float32", "bfloat16", "float16" or "float64"), ``device`` (str)
* ``forward(pixel_values, grid_thw) -> dict``: the whole tower from ``pixel_values``, every stage
  named as in the goldens (``patch_embed``, ``rotary_cos``, ..., ``blocks.{i}.attn_residual``,
  ``blocks.{i}.output``, ``merger.ln_q``, ``output``): the ACCUMULATED path.
* ``patch_embed(pixel_values) -> array``
* ``block(i, x, grid_thw) -> {"attn_residual": ..., "output": ...}``: block ``i`` alone on ``x``
  (the attention half's result and the whole block's), for teacher forcing.
* ``merger(x, grid_thw) -> {"merger.ln_q": ..., "output": ...}``: the merger alone on ``x``.

:class:`PortImplementation` (the torch port, the default) and :class:`ReferenceImplementation`
(the NumPy reference, float64 by default: used to isolate interpolation from precision) are the
two built in; ``load_implementation("module:function", ...)`` loads any other factory with the
signature ``function(config, weights, dtype, device)``.
"""

from __future__ import annotations

import contextlib
import importlib

import numpy as np

DTYPES = ("float32", "bfloat16", "float16")


def _numpy(t):
    return t.detach().to("cpu").double().numpy() if hasattr(t, "detach") else np.asarray(t)


@contextlib.contextmanager
def _recording(encoder, blocks):
    """Forward hooks on the port's public submodules; yields the dict they fill (detached):
    ``patch_embed``, ``rotary`` (cos, sin), ``merger.ln_q`` and, for each block ``i`` in ``blocks``,
    ``blocks.{i}.input`` / ``.attn`` / ``.output`` (window order, as the blocks see them)."""
    seen, handles = {}, []

    def keep(name):
        def hook(module, args, out):
            seen[name] = tuple(o.detach() for o in out) if isinstance(out, tuple) else out.detach()
        return hook

    def keep_input(name):
        def hook(module, args):
            seen[name] = args[0].detach()
        return hook

    try:
        handles.append(encoder.patch_embed.register_forward_hook(keep("patch_embed")))
        handles.append(encoder.rope.register_forward_hook(keep("rotary")))
        handles.append(encoder.merger.ln_q.register_forward_hook(keep("merger.ln_q")))
        for i in blocks:
            layer = encoder.layers[i]
            handles.append(layer.register_forward_pre_hook(keep_input(f"blocks.{i}.input")))
            handles.append(layer.attn.register_forward_hook(keep(f"blocks.{i}.attn")))
            handles.append(layer.register_forward_hook(keep(f"blocks.{i}.output")))
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def port_stages(encoder, pixel_values, grid_thw):
    """Run the port's encoder once and return ``(output, stages)``: every golden stage of it,
    recorded by forward hooks and put back in original order (``layout.patch_inverse``).

    ``blocks.{i}.attn_residual`` is the block's input plus its attention's output, the same sum
    the block computes."""
    layout = encoder.layout(grid_thw, pixel_values.device)
    with _recording(encoder, range(len(encoder.layers))) as seen:
        out = encoder(pixel_values, grid_thw)
    back = layout.patch_inverse  # window-order row -> original row
    stages = {"patch_embed": seen["patch_embed"]}
    stages["rotary_cos"], stages["rotary_sin"] = seen["rotary"]
    stages.update(window_index=layout.window_index, cu_seqlens=layout.cu_seqlens,
                  cu_window_seqlens=layout.cu_window_seqlens)
    for i in range(len(encoder.layers)):
        stages[f"blocks.{i}.attn_residual"] = (seen[f"blocks.{i}.input"] + seen[f"blocks.{i}.attn"])[back]
        stages[f"blocks.{i}.output"] = seen[f"blocks.{i}.output"][back]
    stages["merger.ln_q"] = seen["merger.ln_q"][back]
    stages["output"] = out.detach()
    return out, stages


def port_block(encoder, i, x, grid_thw):
    """Block ``i`` of the port alone on ``x`` ``[N, hidden]`` (original order), composed from the
    encoder's public parts: ``{"attn_residual": ..., "output": ...}`` in original order."""
    layout = encoder.layout(grid_thw, x.device)
    if x.shape[0] != layout.num_patches:
        raise ValueError(f"x has {x.shape[0]} rows but grid_thw describes {layout.num_patches} patches")
    cos, sin = encoder.rotary(layout)
    order = layout.patch_order
    with _recording(encoder, [i]) as seen:
        out = encoder.layers[i](x[order], cos[order], sin[order], encoder.segments(i, layout))
    back = layout.patch_inverse
    return {"attn_residual": (seen[f"blocks.{i}.input"] + seen[f"blocks.{i}.attn"])[back], "output": out[back]}


class PortImplementation:
    """``torch_port`` loaded from HF-named weights through ``load_hf_vision`` at ``dtype`` on ``device``."""

    def __init__(self, config, weights, dtype="float32", device="cpu"):
        import torch

        from torch_port import load_hf_vision

        self.torch = torch
        self.name = "torch_port"
        self.dtype, self.device = dtype, device
        self.torch_dtype = getattr(torch, dtype)
        state = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in weights.items()}
        self.encoder = load_hf_vision(config.to_dict(), state, dtype=self.torch_dtype, device=device)

    def _in(self, x):
        # float64 goldens are cast to the activation dtype, as the port's caller would give them
        return self.torch.from_numpy(np.ascontiguousarray(x)).to(self.device, self.torch_dtype)

    def _grid(self, grid_thw):
        return self.torch.as_tensor(np.asarray(grid_thw), dtype=self.torch.int64)

    def forward(self, pixel_values, grid_thw):
        with self.torch.no_grad():
            pv = self.torch.from_numpy(np.ascontiguousarray(pixel_values, dtype=np.float32)).to(self.device)
            _, stages = port_stages(self.encoder, pv, self._grid(grid_thw).to(self.device))
        return {key: _numpy(value) for key, value in stages.items()}

    def patch_embed(self, pixel_values):
        with self.torch.no_grad():
            pv = self.torch.from_numpy(np.ascontiguousarray(pixel_values, dtype=np.float32)).to(self.device)
            return _numpy(self.encoder.patch_embed(pv))

    def block(self, i, x, grid_thw):
        with self.torch.no_grad():
            stages = port_block(self.encoder, i, self._in(x), self._grid(grid_thw).to(self.device))
        return {key: _numpy(value) for key, value in stages.items()}

    def merger(self, x, grid_thw):
        # merge blocks are whole in both row orders: the merger runs on original-order rows as is
        with self.torch.no_grad():
            h = self._in(x)
            return {"merger.ln_q": _numpy(self.encoder.merger.ln_q(h)), "output": _numpy(self.encoder.merger(h))}

    def close(self):
        del self.encoder


class ReferenceImplementation:
    """The NumPy reference (``reference.vision_forward`` and its parts) at ``dtype`` (float64 by default)."""

    def __init__(self, config, weights, dtype="float64", device="cpu"):
        if device != "cpu":
            raise ValueError("the NumPy reference runs on the CPU only")
        self.name, self.dtype, self.device = "reference", dtype, "cpu"
        self.np_dtype = np.dtype(dtype)
        self.config, self.weights = config, weights

    def forward(self, pixel_values, grid_thw):
        import reference

        trace = {}
        reference.vision_forward(pixel_values, grid_thw, self.weights, self.config, dtype=self.np_dtype, trace=trace)
        return trace

    def patch_embed(self, pixel_values):
        import reference

        weight = np.asarray(self.weights["patch_embed.proj.weight"], self.np_dtype)
        return reference.patch_embed(np.asarray(pixel_values, self.np_dtype), weight)

    def _layout(self, grid_thw):
        from reference import vision

        c = self.config
        cos, sin = vision.rotary_cos_sin(grid_thw, c.head_dim, spatial_merge_size=c.spatial_merge_size,
                                         theta=c.rope_theta, dtype=self.np_dtype)
        win, cu_window = vision.window_index(grid_thw, window_size=c.window_size, patch_size=c.patch_size,
                                             spatial_merge_size=c.spatial_merge_size)
        return cos, sin, win, cu_window, vision.full_cu_seqlens(grid_thw)

    def block(self, i, x, grid_thw):
        from reference import vision

        c = self.config
        cos, sin, win, cu_window, cu_full = self._layout(grid_thw)
        rows = vision.patch_rows(win, c.merge_unit)  # window order
        tree = vision.cast(vision.nest_weights(self.weights, c)["blocks"][i], self.np_dtype)
        trace = {}
        out = vision.vision_block(np.asarray(x, self.np_dtype)[rows], cos[rows], sin[rows],
                                  cu_full if i in c.fullatt_block_indexes else cu_window, **tree,
                                  num_heads=c.num_heads, act=c.hidden_act, trace=trace)
        return {"attn_residual": vision.unpermute(trace["attn_residual"], rows), "output": vision.unpermute(out, rows)}

    def merger(self, x, grid_thw):
        from reference import vision

        tree = vision.cast(vision.nest_weights(self.weights, self.config)["merger"], self.np_dtype)
        trace = {}
        out = vision.patch_merger(np.asarray(x, self.np_dtype), **tree, merge_unit=self.config.merge_unit, trace=trace)
        return {"merger.ln_q": trace["ln_q"], "output": out}

    def close(self):
        pass


def cuda_available():
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def load_implementation(spec, config, weights, dtype="float32", device="cpu"):
    """``"port"`` (default), ``"reference"``, or ``"package.module:factory"``."""
    if spec in (None, "port"):
        return PortImplementation(config, weights, dtype, device)
    if spec == "reference":
        return ReferenceImplementation(config, weights, dtype, device)
    module, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"--impl {spec!r}: expected 'port', 'reference' or 'module:factory'")
    return getattr(importlib.import_module(module), attr)(config, weights, dtype, device)
