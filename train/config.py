"""Training configuration: one JSON-serialisable dataclass and the named schedules.

Schedules (``--schedule``):

``paper``
    Boigne et al. (2020), sec. 2.4: Adam, learning rate 1e-4, batch 16, 100 epochs, no early stopping.
``converged``
    Adam at learning rate 1e-3 and at least :data:`CONVERGED_MIN_STEPS` optimiser steps: the epoch count is
    raised from 100 until ``epochs × ceil(n_train / batch_size) ≥ 3000``, capped at 1000 epochs. The paper's
    schedule takes only ~700 steps at k = 25 per class (100 examples), which leaves the small-data runs
    under-trained; this schedule shows what the heads reach once the optimiser has converged.

Explicit overrides (``--epochs --lr --batch-size --dropout``) replace the schedule's values; an explicit
``--epochs`` is taken literally (it also switches the step floor of ``converged`` off).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

SCHEDULES = ("paper", "converged")
CONVERGED_MIN_STEPS = 3000
CONVERGED_MAX_EPOCHS = 1000


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of one training run (heads, optimiser, data handling).

    Attributes:
        schedule: name of the schedule it came from (``paper`` | ``converged`` | ``custom``).
        epochs: passes over the training set (the minimum when ``min_steps`` is set).
        lr: Adam learning rate (betas 0.9/0.999, eps 1e-8, no weight decay).
        batch_size: utterances per optimiser step.
        dropout: drop probability applied after every layer of a head.
        normalize: standardise every feature with the training fold's frame-level mean/std.
        hidden: width of the ``mlp`` head's frame-wise hidden layers.
        layers: number of hidden layers of the ``mlp`` head.
        lstm_hidden: hidden size per direction of the ``bimodal`` head's LSTMs.
        align: ``bimodal`` token-to-frame attention scorer, ``bilinear`` (h_t · W · h_a) or ``additive``.
        audio_stride: ``bimodal``: audio frames are mean-pooled in windows of this many before the audio
            LSTM (2: 50 Hz Whisper -> 25 Hz, 100 Hz wav2vec -> 50 Hz; 1 = every frame).
        input_proj: ``bimodal``: frame-wise linear projection of each modality to this many dims before its
            LSTM (a low-rank LSTM input matrix; 0 = off).
        lstm_impl: ``dense`` (fused kernels, reversal within valid length) or ``packed``; same outputs.
        min_steps: raise ``epochs`` until the run takes at least this many optimiser steps (``None``: off).
        max_epochs: cap on the raised epoch count.
        batched_folds: train the folds/seeds of a pooled head (``mean``/``meanmax``) as one stacked model.
        bucket: group frame-level batches by length (less padding); the batch order stays random.
        eval_batch: utterances per evaluation batch (frame-level heads).
    """

    schedule: str = "paper"
    epochs: int = 100
    lr: float = 1e-4
    batch_size: int = 16
    dropout: float = 0.2
    normalize: bool = True
    hidden: int = 128
    layers: int = 1
    lstm_hidden: int = 64
    align: str = "bilinear"
    audio_stride: int = 2
    input_proj: int = 64
    lstm_impl: str = "dense"
    min_steps: int | None = None
    max_epochs: int = CONVERGED_MAX_EPOCHS
    batched_folds: bool = True
    bucket: bool = True
    eval_batch: int = 64

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"epochs, batch_size and lr must be positive: {self}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.lstm_impl not in ("dense", "packed"):
            raise ValueError(f"lstm_impl must be 'dense' or 'packed', got {self.lstm_impl!r}")
        if self.audio_stride < 1 or self.hidden < 1 or self.layers < 0 or self.lstm_hidden < 1 or self.input_proj < 0:
            raise ValueError(f"audio_stride, hidden and lstm_hidden must be positive, layers >= 0: {self}")
        if self.align not in ("bilinear", "additive"):
            raise ValueError(f"align must be 'bilinear' or 'additive', got {self.align!r}")

    def epochs_for(self, n_train: int) -> int:
        """Epochs to run on ``n_train`` training utterances (applies the ``min_steps`` floor and cap)."""
        if not self.min_steps:
            return self.epochs
        per_epoch = max(1, math.ceil(n_train / self.batch_size))
        return int(min(self.max_epochs, max(self.epochs, math.ceil(self.min_steps / per_epoch))))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {sorted(unknown)}")
        return cls(**d)


def schedule_config(name: str = "paper", **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` of schedule ``name`` with ``overrides`` (``None`` values are ignored).

    An explicit ``epochs`` override also clears ``min_steps`` (the epoch count is then taken literally).
    """
    if name == "paper":
        cfg = TrainConfig(schedule="paper", epochs=100, lr=1e-4, min_steps=None)
    elif name == "converged":
        cfg = TrainConfig(schedule="converged", epochs=100, lr=1e-3, min_steps=CONVERGED_MIN_STEPS,
                          max_epochs=CONVERGED_MAX_EPOCHS)
    else:
        raise ValueError(f"unknown schedule {name!r}; choose one of {SCHEDULES}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "epochs" in overrides and "min_steps" not in overrides:
        overrides["min_steps"] = None
    return replace(cfg, **overrides)
