"""Speaker-independent folds and stratified k-per-class sampling.

The fold group of an utterance is its ``session``: IEMOCAP's five sessions give the paper's
leave-one-session-out 5-fold CV. Corpora without sessions get a deterministic assignment of speakers to
``n_groups`` groups balanced by utterance count (:func:`speaker_groups`), which the manifest builders write
into the session column, so every later stage sees one uniform notion of fold.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Sequence

import numpy as np


def speaker_groups(speakers: Sequence[str], n_groups: int = 5) -> dict[str, str]:
    """Assign speakers to ``n_groups`` fold groups named ``g1..gN``, balanced by utterance count.

    Deterministic: speakers are taken largest first (ties by id) and each goes to the group with the fewest
    utterances so far (ties: fewest speakers, then lowest index). ``speakers`` holds one entry per utterance.
    """
    counts = Counter(speakers)
    if len(counts) < n_groups:
        raise ValueError(f"{len(counts)} speakers cannot form {n_groups} speaker-independent groups")
    load = [0] * n_groups
    members = [0] * n_groups
    out: dict[str, str] = {}
    for spk, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        g = min(range(n_groups), key=lambda i: (load[i], members[i], i))
        load[g] += n
        members[g] += 1
        out[spk] = f"g{g + 1}"
    return out


def fold_splits(sessions: Sequence[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Leave-one-group-out splits: ``[(held_out_session, train_idx, test_idx), ...]`` in sorted session order.

    Indices are int64 arrays into ``sessions`` (one entry per utterance).
    """
    sessions = np.asarray(sessions)
    groups = sorted(set(sessions.tolist()))
    if len(groups) < 2:
        raise ValueError(f"need at least 2 sessions for cross-validation, found {groups}")
    out = []
    for g in groups:
        test = np.flatnonzero(sessions == g)
        train = np.flatnonzero(sessions != g)
        out.append((g, train.astype(np.int64), test.astype(np.int64)))
    return out


def sample_per_class(labels: Sequence[str], indices: Sequence[int], k: int, seed: int) -> np.ndarray:
    """Stratified sub-sample: ``k`` indices per class drawn from ``indices`` (without replacement).

    A class with fewer than ``k`` candidates contributes all of them. Deterministic for a given seed;
    the result is sorted. ``labels`` is indexed by the values in ``indices``.
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = defaultdict(list)
    for i in indices:
        by_class[labels[i]].append(int(i))
    chosen: list[int] = []
    for cls in sorted(by_class):
        pool = np.asarray(by_class[cls], dtype=np.int64)
        take = min(k, len(pool))
        chosen.extend(rng.choice(pool, size=take, replace=False).tolist())
    return np.sort(np.asarray(chosen, dtype=np.int64))
