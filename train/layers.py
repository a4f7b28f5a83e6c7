"""Every layer at once: the SUPERB featurizer, a learned softmax-weighted sum of an encoder's hidden layers.

An ``@all`` extraction (``ser-extract --feature hf:MODEL@all``) writes one store per hidden layer
(``<name>-l0.h5`` … ``<name>-lL.h5``), each [total_frames × D] with the same utterances and frame counts.
Instead of sweeping them one at a time, a run with ``--layer-sum`` stacks them side by side and learns
which to use:

* :func:`train.layer_stores.stack_layers` — the L layer stores as one :class:`~train.data.StoreData` whose frame rows are the
  layers' rows concatenated, [total_frames × L·D] (layer ``l`` in columns ``l·D:(l+1)·D``). Each store is
  read once (one HDF5 read per layer, then nothing during training); standardisation is per column, so
  every layer is standardised with its own training-fold statistics, as SUPERB normalises each layer.
* :class:`LayerSum` — ``x`` [B × T × L·D] -> ``Σ_l softmax(w)_l · x[..., l]`` [B × T × D], with ``w`` [L]
  learned with the head (initialised to 0: the plain layer average). The head after it is any registered
  head on D-dim frames (:func:`train.heads.build_head` inserts it when ``TrainConfig.layer_sum > 1``).
* :func:`pooled_view` — for the ``mean`` head, training does not need the frames: the mean over time of
  a weighted layer sum is the weighted sum of the per-layer means, and standardisation (per-column affine)
  commutes with the mean too. The view keeps one row per utterance (its mean over frames, [N × L·D]) and the
  frame-level statistics of the full store, so the fold's standardiser is the same as on the frames and
  the loss per step costs O(B × L·D) instead of O(B × T × L·D).

Disk and memory: the layer stores are what ``@all`` already writes for a layer sweep (no extra store);
memory is L times one layer's frames (RAVDESS, Whisper-base: 7 × 172 MB in float16), or only N × L·D
floats after :func:`pooled_view`. Reported per run: the softmax weights of every (seed, fold) model and
their mean (``layer_weights`` in ``metrics.json``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from .data import Inputs, StoreData, UttStats


def pooled_view(store: StoreData) -> StoreData:
    """``store`` with each utterance's frames replaced by their mean (one float32 row per utterance),
    keeping the frame-level :class:`~train.data.UttStats` of ``store``.

    For the ``mean`` head only: its output on the one-row utterance equals its output on the frames
    (mean of a per-column affine map of the frames = the map of their mean; see the module docstring), and
    :func:`train.normalization.fit_standardizer` reads the kept frame-level statistics, so folds are
    standardised exactly as on the frames.
    """
    st = store.stats()
    view = StoreData(path=store.path, provenance=store.provenance,
                     frames=torch.from_numpy(np.ascontiguousarray(st.mean, dtype=np.float32)),
                     offsets=np.arange(store.n + 1, dtype=np.int64), utt_ids=store.utt_ids, labels=store.labels,
                     speakers=store.speakers, sessions=store.sessions, transcripts=store.transcripts,
                     is_text=store.is_text)
    view._stats = UttStats(count=st.count, sum=st.sum, sumsq=st.sumsq, mean=st.mean, max=st.max)
    return view


def training_view(inputs: Inputs, head_name: str, layer_sum: int) -> Inputs:
    """The inputs a run of ``head_name`` over a ``layer_sum``-layer stack trains and predicts on: the
    :func:`pooled_view` of the audio store for the ``mean`` head (exact and T times cheaper), else
    ``inputs`` unchanged."""
    if layer_sum > 1 and head_name == "mean" and inputs.audio.offsets[-1] != inputs.audio.n:
        return Inputs(audio=pooled_view(inputs.audio), text=inputs.text, classes=inputs.classes, y=inputs.y)
    return inputs


def layer_weights_of(model: object) -> dict[str, list[float]]:
    """``{"layer_weights": [w_0, …, w_{L-1}]}`` (the softmax weights, in stacked order) of a fitted model
    whose head has a layer sum (``model.head.layer_sum``), else ``{}``: merged into a fold's record."""
    ls = getattr(getattr(model, "head", None), "layer_sum", None)
    if not isinstance(ls, LayerSum):
        return {}
    return {"layer_weights": [float(w) for w in ls.weights().detach().cpu()]}


def mean_layer_weights(folds: Sequence[dict]) -> dict[str, list[float]]:
    """``{"layer_weights": mean over the folds' weights}`` when the folds carry them (else ``{}``)."""
    ws = [f["layer_weights"] for f in folds if "layer_weights" in f]
    return {"layer_weights": np.mean(ws, axis=0).tolist()} if ws else {}


class LayerSum(nn.Module):
    """``x`` [B × T × L·D] -> ``Σ_l softmax(w)_l · x[:, :, l·D:(l+1)·D]`` [B × T × D]; ``w`` [L] starts at 0.

    Padded frames stay padded (the sum is frame-wise); masks are unchanged.
    """

    def __init__(self, n_layers: int, dims: int):
        super().__init__()
        self.n_layers, self.dims = int(n_layers), int(dims)
        self.logits = nn.Parameter(torch.zeros(self.n_layers))

    def weights(self) -> torch.Tensor:
        """The softmax weights [L] (sum to 1)."""
        return self.logits.softmax(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return torch.einsum("btld,l->btd", x.reshape(b, t, self.n_layers, self.dims), self.weights())
