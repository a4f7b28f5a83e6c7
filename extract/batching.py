"""Grouping utterances into batches: by length for the encoder, small even groups for the CPU workers.

Lengths are *expected* lengths in samples, known before decoding: the manifest's duration (or the segment's
``start``..``end``), capped by the crop.
"""

from __future__ import annotations

import numpy as np

from ser_common.manifest import ManifestRecord


def expected_seconds(rec: ManifestRecord, crop_s: float | None) -> float:
    """Seconds of audio the pipeline will hand the feature set for ``rec``: its duration (or segment), cut to
    ``crop_s``; an unknown duration counts as ``crop_s`` (10 s without a crop)."""
    d = rec.duration
    if d is None or not np.isfinite(d):
        d = crop_s or 10.0
    if rec.start is not None or rec.end is not None:
        d = (rec.end if rec.end is not None else d) - (rec.start or 0.0)
    return max(0.0, min(d, crop_s) if crop_s else d)


def length_batches(positions: list[int], lengths: dict[int, float], budget: float, max_items: int = 256) -> list[list[int]]:
    """Group positions sorted by length so that ``len(batch) * max_length <= budget`` (at least one each)."""
    order = sorted(positions, key=lambda p: (lengths[p], p))
    batches: list[list[int]] = []
    cur: list[int] = []
    for p in order:
        if cur and ((len(cur) + 1) * lengths[p] > budget or len(cur) >= max_items):
            batches.append(cur)
            cur = []
        cur.append(p)
    if cur:
        batches.append(cur)
    return batches


def worker_batches(positions: list[int], lengths: dict[int, float], workers: int) -> list[list[int]]:
    """Batches for feature sets computed in the workers (each utterance encoded on its own): sorted by length,
    at most 16 per batch and small enough that every worker gets about four batches."""
    per = max(1, min(16, len(positions) // max(1, 4 * max(workers, 1))))
    order = sorted(positions, key=lambda p: (lengths[p], p))
    return [order[i:i + per] for i in range(0, len(order), per)]
