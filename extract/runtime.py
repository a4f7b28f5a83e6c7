"""Where and in what precision encoders run: device and compute-dtype resolution, autocast, layer selection.

* :func:`resolve_device`: ``auto`` -> ``cuda`` / ``cuda:N`` (one per torchrun process) / ``cpu``.
* :func:`resolve_compute_dtype`: ``auto`` -> ``bfloat16`` / ``float16`` on a GPU, ``float32`` on the CPU.
* :func:`autocast`: the one autocast context every feature set computes under.
* :func:`hidden_states`: one forward pass of a transformers model, keeping only the selected layers
  (shared by :mod:`extract.hf` and :mod:`extract.bert`).

torch is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Sequence

from .feature_set import check_compute_dtype


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` if a GPU is visible, else ``cpu``. Under torchrun, ``cuda:N`` with
    ``N = LOCAL_RANK mod (visible GPUs)``: one process per GPU, or several processes sharing the GPUs
    (``--nproc-per-node 2`` on a one-GPU machine puts both on ``cuda:0``)."""
    import torch

    if device == "auto":
        if not torch.cuda.is_available():
            return "cpu"
        local = os.environ.get("LOCAL_RANK")
        if local is None or not local.isdigit():
            return "cuda"
        return f"cuda:{int(local) % max(1, torch.cuda.device_count())}"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for but no CUDA GPU is visible (use --device cpu)")
    return device


def resolve_compute_dtype(compute_dtype: str, device: str) -> str:
    """``auto`` -> ``bfloat16`` on a bf16-capable GPU, ``float16`` on an older GPU, ``float32`` on CPU;
    any other value as :func:`~extract.feature_set.check_compute_dtype` says (CPU always computes in float32)."""
    if compute_dtype != "auto":
        return check_compute_dtype(device, compute_dtype)
    if not device.startswith("cuda"):
        return "float32"
    import torch

    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def autocast(device: str, compute_dtype: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on CUDA for bfloat16/float16; a no-op context for float32 or CPU."""
    import torch

    if str(device).startswith("cuda") and compute_dtype != "float32":
        return torch.autocast("cuda", dtype=getattr(torch, compute_dtype))
    return contextlib.nullcontext()


def hidden_states(model: Any, layers: Sequence[int], **inputs: Any) -> dict[int, Any]:
    """Run ``model(**inputs)`` once and return ``{layer: hidden_states[layer]}`` (tensors [batch, T, D]).

    Asks transformers (>= 5) for the selected layers only (``output_hidden_states=[…]``, which keeps the
    others out of memory) and falls back to all of them on models that do not take a selection.
    """
    layers = list(layers)
    try:
        out = model(**inputs, output_hidden_states=layers)
        hs = out.hidden_states
        if hs is None or any(i >= len(hs) or hs[i] is None for i in layers):
            raise TypeError("hidden-state selection not supported")
    except TypeError:
        out = model(**inputs, output_hidden_states=True)
        hs = out.hidden_states
    return {i: hs[i] for i in layers}
