"""Batches: the order of training batches (random, optionally bucketed by length) and padded gathers.

A batch is gathered from a store's contiguous frame tensor with one index operation: ``x`` [B × T × D]
float32 (T = longest utterance in the batch), ``mask`` [B × T] bool (True on real frames). Padded positions
of ``x`` are zero; heads must not rely on that and mask explicitly.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from .data import StoreData
from .normalization import Standardizer

BUCKET_BATCHES = 50
"""Bucketed plans sort windows of this many batches by length, then shuffle the batches."""
STANDARDIZE_ONCE_MAX_BYTES = 1 << 30
""":func:`standardized_once` makes the float32 standardised copy of a store only up to this size (1 GiB, held
by each worker process for the length of one fit)."""


def gather_padded(store: StoreData, rows: np.ndarray | torch.Tensor, device: str | torch.device = "cpu",
                  standardizer: Standardizer | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames of utterances ``rows`` (B) of ``store``, padded: ``x`` [B × T × D] float32, ``mask`` [B × T] bool.

    ``standardizer`` (already on ``device``) is applied before padding positions are zeroed.
    """
    frames = store.frames_on(device)
    offsets = store.offsets_on(device)
    rows_t = torch.as_tensor(rows, dtype=torch.int64, device=offsets.device)
    starts = offsets[rows_t]
    lens = offsets[rows_t + 1] - starts
    t_max = int(lens.max())
    steps = torch.arange(t_max, device=offsets.device)
    mask = steps[None, :] < lens[:, None]
    index = starts[:, None] + torch.minimum(steps[None, :], lens[:, None] - 1)
    x = frames.index_select(0, index.reshape(-1)).view(len(rows_t), t_max, -1)
    x = x.float() if x.dtype != torch.float32 else x
    if standardizer is not None:
        x = x.sub_(standardizer.mean).div_(standardizer.std)   # in place: x is a fresh tensor here
    pad = torch.nonzero(~mask.reshape(-1)).squeeze(1)
    if pad.numel():  # zero only the padded frame rows (a broadcast masked_fill is several times slower)
        x.view(-1, x.shape[-1]).index_fill_(0, pad, 0.0)
    return x, mask


def standardized_once(store: StoreData, standardizer: Standardizer, device: str | torch.device = "cpu",
                      max_bytes: int | None = None) -> tuple[StoreData, Standardizer | None]:
    """The ``(store, standardizer)`` pair that a fit's training batches are gathered from.

    On CPU, when the float32 copy of ``store``'s frames [total_frames × D] takes at most ``max_bytes``: a
    copy of the store whose frames are converted to float32 and standardised once, and ``None`` (nothing
    left to apply per batch). Every value goes through the same float32 operations as in
    :func:`gather_padded` (``x.float()``, ``- mean``, ``/ std``), so each batch is the same to the bit,
    and a batch is then one gather instead of a gather, a conversion and two passes over it: on EmoDB's
    Whisper frames (16 utterances × ~140 frames × 512 dims) 0.8 instead of 1.1-1.5 ms per batch, for a
    copy made in 0.09 s per fit. Otherwise (a larger store, or a GPU, where these passes are cheap) the
    pair is returned unchanged. ``max_bytes``: default :data:`STANDARDIZE_ONCE_MAX_BYTES` (0 turns it off).
    """
    limit = STANDARDIZE_ONCE_MAX_BYTES if max_bytes is None else max_bytes
    if torch.device(device).type != "cpu" or store.frames.shape[0] * store.frames.shape[1] * 4 > limit:
        return store, standardizer
    frames = store.frames.to(torch.float32, copy=True).sub_(standardizer.mean).div_(standardizer.std)
    return replace(store, frames=frames, _stats=None, _on_device={}), None


def epoch_batches(rows: np.ndarray, batch_size: int, rng: np.random.Generator,
                  lengths: np.ndarray | None = None, bucket: bool = False) -> list[np.ndarray]:
    """One epoch of batches over ``rows`` (store row indices) in random order.

    Without ``bucket``: a random permutation cut into ``batch_size`` chunks (the last one may be short).
    With ``bucket`` (needs ``lengths``, indexed by store row): the permutation is cut into windows of
    :data:`BUCKET_BATCHES` batches, each window sorted by length and cut into batches, and the batches
    shuffled, so a batch holds utterances of similar length while the order stays random.
    """
    perm = rows[rng.permutation(len(rows))]
    if not bucket or lengths is None:
        return [perm[i:i + batch_size] for i in range(0, len(perm), batch_size)]
    window = batch_size * BUCKET_BATCHES
    batches: list[np.ndarray] = []
    for w in range(0, len(perm), window):
        chunk = perm[w:w + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def training_plan(rows: np.ndarray, epochs: int, batch_size: int, rng: np.random.Generator,
                  lengths: np.ndarray | None = None, bucket: bool = False) -> list[np.ndarray]:
    """All batches of ``epochs`` epochs, in order (see :func:`epoch_batches`)."""
    plan: list[np.ndarray] = []
    for _ in range(epochs):
        plan.extend(epoch_batches(rows, batch_size, rng, lengths, bucket))
    return plan


def eval_batches(rows: np.ndarray, lengths: np.ndarray, max_batch: int = 64,
                 max_frames: int = 1 << 16) -> list[np.ndarray]:
    """Evaluation batches: ``rows`` sorted by length, at most ``max_batch`` utterances and about
    ``max_frames`` padded frames per batch."""
    order = rows[np.argsort(lengths[rows], kind="stable")]
    batches: list[np.ndarray] = []
    i = 0
    while i < len(order):
        j = i + 1
        while j < len(order) and j - i < max_batch and (j - i + 1) * lengths[order[j]] <= max_frames:
            j += 1
        batches.append(order[i:j])
        i = j
    return batches
