"""Per-fold feature standardisation from training-set frame statistics.

The statistics of a fold are the mean and standard deviation of every feature over all frames of the
fold's training utterances (frame-level, not utterance-level), summed from the store's cached per-utterance
sums, so fitting one costs O(N × D) whatever the number of frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .data import StoreData

MIN_STD = 1e-6
"""Features whose training-set std is below this are left unscaled (std taken as 1)."""


@dataclass(frozen=True)
class Standardizer:
    """``(x - mean) / std`` per feature. ``mean``, ``std``: float32 [D] tensors (CPU)."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def identity(cls, dims: int) -> "Standardizer":
        return cls(torch.zeros(dims), torch.ones(dims))

    def to(self, device: str | torch.device) -> "Standardizer":
        return Standardizer(self.mean.to(device), self.std.to(device))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [..., D] float32 -> standardised [..., D]."""
        return (x - self.mean) / self.std

    def numpy(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mean.cpu().numpy(), self.std.cpu().numpy()

    def state(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean.cpu(), "std": self.std.cpu()}


def fit_standardizer(store: StoreData, rows: Sequence[int] | np.ndarray, enabled: bool = True) -> Standardizer:
    """Frame-level mean/std of ``store`` over the utterances ``rows`` (identity when not ``enabled``)."""
    if not enabled:
        return Standardizer.identity(store.dims)
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        raise ValueError(f"{store.path}: cannot fit normalisation statistics on zero utterances")
    st = store.stats()
    n = float(st.count[rows].sum())
    mean = st.sum[rows].sum(0) / n
    var = np.maximum(st.sumsq[rows].sum(0) / n - mean * mean, 0.0)
    std = np.sqrt(var)
    std = np.where(std > MIN_STD, std, 1.0)
    return Standardizer(torch.from_numpy(mean.astype(np.float32)), torch.from_numpy(std.astype(np.float32)))
