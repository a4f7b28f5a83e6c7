"""A masked bidirectional LSTM: padding never enters either direction's state.

Each direction is a unidirectional ``nn.LSTM``. The backward direction reads every sequence reversed
*within its valid length* (``reverse_valid``), so padding sits at the end for both directions and only
ever follows the valid frames; outputs at padded positions are zeroed. Two equivalent implementations:

``packed``  ``pack_padded_sequence`` for both directions (the textbook way; on CPU PyTorch then steps
            cell by cell through autograd).
``dense``   the padded tensors go through the LSTMs as they are. The forward direction's output at a valid
            step depends only on earlier (valid) steps, and the reversal puts the backward direction's
            padding after its valid steps too, so the valid outputs are exactly those of ``packed``; this
            path uses the fused oneDNN (CPU) / cuDNN (GPU) kernels. Default.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .config import LSTM_IMPLS
from .pooling import zero_padding



def reverse_index(mask: torch.Tensor) -> torch.Tensor:
    """int64 [B·T]: the flat row (``b·T + t'``) that position ``t`` of row ``b`` reads, with ``t' = len - 1 - t``
    on valid steps and ``t' = t`` on padding; a permutation of the B·T frame rows (its own inverse)."""
    b, t = mask.shape
    lengths = mask.sum(1, keepdim=True)
    steps = torch.arange(t, device=mask.device)[None, :].expand_as(mask)
    within = torch.where(mask, lengths - 1 - steps, steps)
    return (within + torch.arange(b, device=mask.device)[:, None] * t).reshape(-1)


def reverse_valid(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x`` [B × T × D] with each row's valid part reversed (``index`` from :func:`reverse_index`).

    One row gather of the flattened frames (``index_select``; its backward is an ``index_add`` of a
    permutation, so each gradient row is copied, not summed, and the numbers equal a per-element
    ``gather``'s): about half the time of ``torch.gather`` with a [B × T × D] index, forward and backward
    (profiled on the bimodal head's EmoDB batches).
    """
    b, t, d = x.shape
    return x.reshape(b * t, d).index_select(0, index).view(b, t, d)


class BiLSTM(nn.Module):
    """Masked bidirectional single-layer LSTM: ``x`` [B × T × D], ``mask`` [B × T] -> [B × T × 2H]."""

    def __init__(self, in_dims: int, hidden: int, impl: str = "dense"):
        super().__init__()
        if impl not in LSTM_IMPLS:
            raise ValueError(f"unknown LSTM implementation {impl!r}; choose one of {LSTM_IMPLS}")
        self.impl = impl
        self.forward_lstm = nn.LSTM(in_dims, hidden, batch_first=True)
        self.backward_lstm = nn.LSTM(in_dims, hidden, batch_first=True)

    def _run(self, lstm: nn.LSTM, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.impl == "dense":
            return lstm(x)[0]
        packed = pack_padded_sequence(x, mask.sum(1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=x.shape[1])
        return out

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = zero_padding(x, mask)
        index = reverse_index(mask)
        fw = self._run(self.forward_lstm, x, mask)
        bw = reverse_valid(self._run(self.backward_lstm, reverse_valid(x, index), mask), index)
        return zero_padding(torch.cat([fw, bw], dim=-1), mask)
