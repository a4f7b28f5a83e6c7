"""Training configuration: one JSON-serialisable dataclass and the named schedules.

Schedules (``--schedule``):

``paper``
    Boigne et al. (2020), sec. 2.4: Adam, learning rate 1e-4, batch 16, 100 epochs, no early stopping.
``converged``
    Adam at learning rate 1e-3 and at least :data:`CONVERGED_MIN_STEPS` optimiser steps: the epoch count is
    raised from 100 until ``epochs × ceil(n_train / batch_size) ≥ 3000``, capped at 1000 epochs. The paper's
    schedule takes only ~700 steps at k = 25 per class (100 examples), which leaves the small-data runs
    under-trained; this schedule shows what the heads reach once the optimiser has converged.

Explicit overrides (``--epochs --lr --batch-size --dropout --class-weight``) replace the schedule's values; an explicit
``--epochs`` is taken literally (it also switches the step floor of ``converged`` off). Every value is
validated when the config is made (:meth:`TrainConfig.problem`): ``--lr nan``, a zero or negative learning
rate, ``--dropout nan`` and the like are refused with a one-line message before anything is trained.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

SCHEDULES = ("paper", "converged")
CLASS_WEIGHTS = ("none", "balanced")
ALIGNS = ("bilinear", "additive")
LSTM_IMPLS = ("dense", "packed")
RENAMED_KEYS = {"hidden": "mlp_hidden", "layers": "mlp_layers"}
"""Config keys of earlier releases -> today's (bundles and run folders written before keep loading)."""
MAX_LR = 1e30
"""Largest learning rate accepted: beyond about 3e37 Adam's float32 step (lr / (1 - beta1)) overflows."""
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
        mlp_hidden: width of the ``mlp`` head's frame-wise hidden layers (``hidden`` before this release).
        mlp_layers: number of hidden layers of the ``mlp`` head (``layers`` before this release).
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
        layer_sum: encoder layers stacked side by side in each frame row (``--layer-sum``; set from the
            stacked store, :mod:`train.layers`), combined by learned softmax weights before the head; 1 = one
            layer, no weights.
        class_weight: ``none`` (every utterance counts the same) or ``balanced``: the cross-entropy of an
            utterance of class c is weighted by ``n_train / (C × count_c)`` (counts over the job's own
            training rows; a class absent from them gets weight 0), as a weighted mean per batch
            (``Σ w_yi · CE_i / Σ w_yi``, PyTorch's ``F.cross_entropy(weight=…)``).
    """

    schedule: str = field(default="paper", metadata={"choices": SCHEDULES, "help": (
        "paper: 100 epochs at lr 1e-4 (Boigne et al.); converged: lr 1e-3 and >= 3000 steps.")})
    epochs: int = field(default=100, metadata={"help": "Passes over the training set (taken literally)."})
    lr: float = field(default=1e-4, metadata={"help": "Adam learning rate."})
    batch_size: int = field(default=16, metadata={"help": "Utterances per optimiser step."})
    dropout: float = field(default=0.2, metadata={"help": "Dropout probability after every layer of a head."})
    normalize: bool = field(default=True, metadata={"help": "Standardise features with each fold's training "
                                                            "statistics."})
    mlp_hidden: int = field(default=128, metadata={"help": "mlp head: width of the frame-wise hidden layers."})
    mlp_layers: int = field(default=1, metadata={"help": "mlp head: number of frame-wise hidden layers."})
    lstm_hidden: int = field(default=64, metadata={"help": "bimodal heads: LSTM size per direction."})
    align: str = field(default="bilinear", metadata={"choices": ALIGNS, "help": (
        "bimodal head: token-to-frame alignment scorer.")})
    audio_stride: int = field(default=2, metadata={"help": "bimodal head: average audio frames in windows of N "
                                                           "before the audio LSTM (1 = every frame)."})
    input_proj: int = field(default=64, metadata={"help": "bimodal head: project each modality to N dims before "
                                                          "its LSTM (0 = off)."})
    lstm_impl: str = field(default="dense", metadata={"choices": LSTM_IMPLS, "help": (
        "LSTM implementation (same outputs): dense (fused kernels) or packed.")})
    min_steps: int | None = field(default=None, metadata={"help": (
        "Raise the epochs until the run takes at least N optimiser steps (the converged schedule: 3000).")})
    max_epochs: int = field(default=CONVERGED_MAX_EPOCHS, metadata={"help": "Cap on the epochs raised by "
                                                                            "--min-steps."})
    batched_folds: bool = field(default=True, metadata={"help": "mean/meanmax: train every fold and seed at once "
                                                                "as one stacked model (same maths)."})
    bucket: bool = field(default=True, metadata={"help": "Frame-level heads: batch utterances of similar length "
                                                         "(less padding; batch order stays random)."})
    eval_batch: int = field(default=64, metadata={"help": "Utterances per evaluation batch (frame-level heads)."})
    class_weight: str = field(default="none", metadata={"choices": CLASS_WEIGHTS, "help": (
        "Loss weight per class: none, or balanced (n / (C × count of the class), from each fold's training "
        "rows; for imbalanced corpora).")})
    layer_sum: int = field(default=1, metadata={"flag": None})
    """Set by ``--layer-sum`` from the stacked store (the number of layers), never by a flag of its own."""

    def __post_init__(self) -> None:
        problem = self.problem()
        if problem:
            raise ValueError(problem)

    def problem(self) -> str | None:
        """The first invalid value, as a one-line message naming the option and the fix (``None``: valid).

        Refused: a learning rate that is not a positive finite number (``nan``, ``inf``, 0, negative), a
        dropout outside [0, 1) (``nan`` included), non-positive epochs/batch size/widths, unknown choices.
        """
        def positive_int(v: Any) -> bool:
            return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1

        if not (isinstance(self.lr, numbers.Real) and math.isfinite(self.lr) and self.lr > 0):
            return (f"learning rate (--lr) must be a positive finite number, got {self.lr!r}; "
                    f"the paper's schedule uses 1e-4, the converged one 1e-3")
        if self.lr > MAX_LR:
            return (f"learning rate (--lr) {self.lr:g} is too large: above {MAX_LR:g} the optimiser's float32 "
                    f"arithmetic overflows; the paper's schedule uses 1e-4, the converged one 1e-3")
        if not (isinstance(self.dropout, numbers.Real) and math.isfinite(self.dropout) and 0 <= self.dropout < 1):
            return f"dropout (--dropout) must be a probability in [0, 1), got {self.dropout!r}; the default is 0.2"
        for name, option in (("epochs", "--epochs"), ("batch_size", "--batch-size"), ("max_epochs", "--max-epochs"),
                             ("eval_batch", "--eval-batch"), ("audio_stride", "--audio-stride"),
                             ("mlp_hidden", "--mlp-hidden"), ("lstm_hidden", "--lstm-hidden")):
            value = getattr(self, name)
            if not positive_int(value):
                return f"{name}{f' ({option})' if option else ''} must be a positive integer, got {value!r}"
        if not (isinstance(self.mlp_layers, numbers.Integral) and self.mlp_layers >= 0):
            return f"mlp_layers (--mlp-layers) must be an integer >= 0, got {self.mlp_layers!r}"
        if not (isinstance(self.input_proj, numbers.Integral) and self.input_proj >= 0):
            return f"input_proj (--input-proj) must be an integer >= 0 (0 = off), got {self.input_proj!r}"
        if self.min_steps is not None and not (isinstance(self.min_steps, numbers.Integral) and self.min_steps >= 0):
            return f"min_steps (--min-steps) must be None or an integer >= 0, got {self.min_steps!r}"
        if self.lstm_impl not in LSTM_IMPLS:
            return f"lstm_impl (--lstm-impl) must be 'dense' or 'packed', got {self.lstm_impl!r}"
        if self.align not in ALIGNS:
            return f"align (--align) must be 'bilinear' or 'additive', got {self.align!r}"
        if not (isinstance(self.layer_sum, numbers.Integral) and not isinstance(self.layer_sum, bool)
                and self.layer_sum >= 1):
            return f"layer_sum must be an integer >= 1 (1 = one layer), got {self.layer_sum!r}"
        if self.class_weight not in CLASS_WEIGHTS:
            return (f"class weight (--class-weight) must be one of {', '.join(CLASS_WEIGHTS)}, got "
                    f"{self.class_weight!r}; 'balanced' weights each class by n / (C × its count)")
        return None

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
        d = {RENAMED_KEYS.get(k, k): v for k, v in d.items()}
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {sorted(unknown)}")
        return cls(**d)


def run_schedules(main: str, also_converged: bool) -> list[str]:
    """The schedules of a run with ``--also-converged``: ``main``, then ``converged`` when asked and not
    already the main one (``tables`` and ``sweep`` report one column set per schedule, in this order)."""
    return [main] + (["converged"] if also_converged and main != "converged" else [])


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
