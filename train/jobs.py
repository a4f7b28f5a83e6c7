"""What one fit is: a job (training rows + seed), the fitted model it gives, and where it runs.

Shared by the engines (:mod:`train.trainer`), the worker pool (:mod:`train.parallel`) and the dispatch
(:mod:`train.fitting`), so none of them imports another in a circle.

A job's randomness is fixed by ``(seed, stream)``: the head's initialisation and dropout come from
``torch.manual_seed(job.torch_seed)``, the batch order from ``numpy.random.default_rng([seed, stream])``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .data import Inputs
from .heads import Head, head_class
from .normalization import Standardizer


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch sees no CUDA device (use --device auto or cpu)")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda[:N]")
    return device


class TrainingDiverged(RuntimeError):
    """Training of a job went non-finite (loss or weights NaN/Inf); the message says where and what to do."""


@dataclass(eq=False)
class Job:
    """One model to fit: ``train`` (int64 store rows), ``seed``, ``stream`` (fold index), ``fold`` (its name,
    for messages; ``None`` outside cross-validation)."""

    train: np.ndarray
    seed: int
    stream: int = 0
    fold: str | None = None

    def describe(self) -> str:
        """``fold Ses03 (seed 1)``, or ``seed 0, 96 training utterances`` outside cross-validation."""
        if self.fold is not None:
            return f"fold {self.fold} (seed {self.seed})"
        return f"seed {self.seed}, {len(self.train)} training utterances"

    def rng(self) -> np.random.Generator:
        return np.random.default_rng([int(self.seed), int(self.stream)])

    @property
    def torch_seed(self) -> int:
        return int(np.random.SeedSequence([int(self.seed), int(self.stream)]).generate_state(1, np.uint32)[0])


@dataclass(eq=False)
class FittedModel:
    """A trained head with what it needs to predict: standardisers (audio[, text]) and class names.

    ``seconds``: wall time of its own fit (in whichever process fitted it; a share of the batched fit for
    pooled heads trained together)."""

    head_name: str
    head: Head
    standardizers: tuple[Standardizer, ...]
    classes: tuple[str, ...]
    epochs: int
    steps: int
    extra: dict = field(default_factory=dict)
    seconds: float = 0.0


def head_in_dims(head_name: str, inputs: Inputs) -> int | tuple[int, int]:
    """The ``in_dims`` argument of :func:`train.heads.build_head` for these inputs (checks the text store
    is there)."""
    if head_class(head_name).bimodal:
        if inputs.text is None:
            raise ValueError(f"head {head_name!r} needs a text store (--text) besides {inputs.audio.path}")
        return (inputs.audio.dims, inputs.text.dims)
    return inputs.audio.dims
