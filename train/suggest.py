"""What to label next: rank a pool store's utterances for labelling with a fitted bundle.

Strategies (:data:`STRATEGIES`). ``p`` [P × C] are the model's class probabilities of the ``P`` pool
candidates; ``x`` [P × D] their pooled vectors (:func:`pooled_features`: the mean of each utterance's frames,
standardised with the bundle's frame-level standardiser, so every dimension is in training-set standard
deviations; a bimodal bundle concatenates the audio and text vectors).

* ``entropy``: score ``H(p) = -Σ_c p_c ln p_c`` (nats), highest first.
* ``margin``: score ``1 - (p_(1) - p_(2))`` (top two probabilities), highest first.
* ``random``: score ``U(0, 1)`` drawn with the seed.
* ``kcenter``: greedy k-center (the "core-set" selection of Sener & Savarese, 2018) over ``x``. With
  ``S`` the set of centres (the pool store's labelled utterances and the ``--exclude`` ids found in it, i.e.
  what is already labelled), each step picks ``argmax_i min_{s ∈ S} ‖x_i − x_s‖`` among the remaining
  candidates and adds it to ``S``: the utterance farthest from everything labelled or already picked. The
  covering radius left, ``max_i min_{s ∈ S} ‖x_i − x_s‖``, is at most twice the smallest any ``n`` picks could
  leave (Gonzalez, 1985). When ``S`` is empty the first pick is the most uncertain candidate (highest
  entropy). Score: the RMS distance ``‖x_i − x_s‖ / √D`` (standard deviations per dimension) to the nearest
  centre at the time of the pick; ``None`` (an empty cell) for a first pick made without any centre.
  Deterministic (ties: the earlier row). Cost O((|S| + n) · P · D).
* ``diverse-entropy``: clustering-weighted uncertainty (after Zhdanov, 2019, "Diverse mini-batch active
  learning"). The ``min(P, β·n)`` candidates of highest entropy (β = :data:`DIVERSE_PREFILTER`) are
  clustered into ``k = min(n, that many)`` groups by k-means on ``x`` (k-means++ initialisation and Lloyd
  iterations, seeded); the picks are then taken round-robin over the clusters, each cluster giving its most
  uncertain member not yet taken, clusters visited in order of their best entropy. The first ``k`` picks
  are thus one per cluster: uncertain utterances that are not near-duplicates of each other. Score: the
  entropy. Deterministic for a given ``seed``. Cost O(iterations · β · n² · D).

``balanced`` (uncertainty strategies only) takes the best-scored utterance of each predicted class in turn
(round-robin in class order). ``max_per_speaker`` caps the picks per speaker (the store's ``speakers``;
rows with an empty speaker are not capped): a ranking skips a full speaker's utterances, ``kcenter`` stops
considering them.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .data import Inputs, StoreData
from .normalization import Standardizer

UNCERTAINTY_STRATEGIES = ("entropy", "margin", "random")
DIVERSITY_STRATEGIES = ("kcenter", "diverse-entropy")
STRATEGIES = UNCERTAINTY_STRATEGIES + DIVERSITY_STRATEGIES
DIVERSE_PREFILTER = 10
"""``diverse-entropy`` clusters the ``DIVERSE_PREFILTER × n`` most uncertain candidates into ``n`` groups."""
KMEANS_ITERATIONS = 50
"""Most Lloyd iterations of :func:`kmeans` (it stops earlier when no assignment changes)."""
DISTANCE_CHUNK = 1024
"""Centres compared with the whole pool at a time by :func:`nearest_sq_distance` (bounds memory)."""


def uncertainty(proba: np.ndarray, strategy: str, seed: int = 0) -> np.ndarray:
    """Higher = ask for a label first. ``proba`` [P × C] -> float64 [P].

    ``entropy``: -Σ p ln p; ``margin``: 1 - (p₁ - p₂); ``random``: U(0, 1) drawn with ``seed``.
    """
    if strategy == "entropy":
        return -(proba * np.log(np.clip(proba, 1e-12, 1.0))).sum(1)
    if strategy == "margin":
        top = np.sort(proba, axis=1)[:, ::-1]
        second = top[:, 1] if proba.shape[1] > 1 else 0.0
        return 1.0 - (top[:, 0] - second)
    if strategy == "random":
        return np.random.default_rng(seed).random(len(proba))
    raise ValueError(f"unknown uncertainty strategy {strategy!r}; choose one of {UNCERTAINTY_STRATEGIES}")


def pooled_features(stores: Sequence[StoreData], standardizers: Sequence[Standardizer],
                    rows: np.ndarray) -> np.ndarray:
    """float64 [len(rows) × ΣD]: each store's per-utterance frame mean (:meth:`StoreData.stats`) of
    ``rows``, standardised with that store's standardiser ``(mean - μ) / σ``, stores concatenated."""
    rows = np.asarray(rows, dtype=np.int64)
    parts = []
    for store, std in zip(stores, standardizers):
        mu, sigma = std.numpy()
        parts.append((store.stats().mean[rows].astype(np.float64) - mu) / sigma)
    return np.concatenate(parts, axis=1) if parts else np.zeros((len(rows), 0))


def nearest_sq_distance(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """float64 [P]: squared Euclidean distance of each row of ``x`` [P × D] to its nearest row of
    ``centres`` [L × D] (``+inf`` when ``L = 0``), computed :data:`DISTANCE_CHUNK` centres at a time."""
    best = np.full(len(x), np.inf)
    sq = (x * x).sum(1)
    for a in range(0, len(centres), DISTANCE_CHUNK):
        c = centres[a:a + DISTANCE_CHUNK]
        d = sq[:, None] - 2.0 * (x @ c.T) + (c * c).sum(1)[None, :]
        np.minimum(best, d.min(1), out=best)
    return np.maximum(best, 0.0)


class _SpeakerCap:
    """Counts picks per speaker; ``full(i)``: candidate ``i``'s speaker already has ``cap`` picks."""

    def __init__(self, speakers: np.ndarray | None, cap: int | None):
        self.speakers = speakers
        self.cap = cap
        self.counts: dict[str, int] = {}

    def full(self, i: int) -> bool:
        if self.cap is None or self.speakers is None or not self.speakers[i]:
            return False
        return self.counts.get(self.speakers[i], 0) >= self.cap

    def take(self, i: int) -> None:
        if self.speakers is not None and self.speakers[i]:
            self.counts[self.speakers[i]] = self.counts.get(self.speakers[i], 0) + 1


def round_robin(queues: Sequence[Sequence[int]], n: int, cap: _SpeakerCap) -> np.ndarray:
    """Up to ``n`` indices: the head of each queue in turn (queues in the given order, each best first),
    skipping (for good) items whose speaker is full. int64 [≤ n]."""
    queues = [list(q)[::-1] for q in queues]  # reversed: pop() from the end is O(1)
    out: list[int] = []
    while len(out) < n and any(queues):
        for q in queues:
            while q and cap.full(q[-1]):
                q.pop()
            if q and len(out) < n:
                i = q.pop()
                cap.take(i)
                out.append(i)
    return np.array(out, dtype=np.int64)


def kcenter_greedy(x: np.ndarray, centres: np.ndarray, n: int, first: int,
                   cap: _SpeakerCap) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center: ``n`` rows of ``x`` [P × D], each the farthest from ``centres`` [L × D] and the
    rows already picked (see the module docstring). ``first``: the pick when ``L = 0``.

    Returns ``(picks, dist)``: int64 [≤ n] and float64 [≤ n], the squared distance of each pick to its
    nearest centre at the time it was picked (``nan`` for a first pick made without centres).
    """
    min_d = nearest_sq_distance(x, centres)
    sq = (x * x).sum(1)
    avail = np.ones(len(x), dtype=bool)
    picks: list[int] = []
    dists: list[float] = []
    while len(picks) < n and avail.any():
        if len(centres) == 0 and not picks:
            i = first if avail[first] else int(np.flatnonzero(avail)[0])
            d = float("nan")
        else:
            i = int(np.argmax(np.where(avail, min_d, -1.0)))
            d = float(min_d[i])
        picks.append(i)
        dists.append(d)
        cap.take(i)
        avail[i] = False
        if cap.full(i):  # that speaker is done: none of its utterances is considered again
            avail &= cap.speakers != cap.speakers[i]
        np.minimum(min_d, np.maximum(sq - 2.0 * (x @ x[i]) + sq[i], 0.0), out=min_d)
    return np.array(picks, dtype=np.int64), np.array(dists, dtype=np.float64)


def kmeans(x: np.ndarray, k: int, seed: int = 0, iterations: int = KMEANS_ITERATIONS) -> np.ndarray:
    """Cluster the rows of ``x`` [P × D] into ``k`` groups; int64 [P] cluster of each row (0 … k-1).

    k-means++ initialisation (each new centre drawn with probability ∝ squared distance to the nearest
    chosen one; ``numpy.random.default_rng(seed)``), then Lloyd iterations (assign to the nearest centre,
    move each centre to its members' mean) until no assignment changes or ``iterations``. A cluster left
    empty is re-seeded with the row farthest from its centre. Deterministic for a given ``seed``.
    """
    p = len(x)
    if not 1 <= k <= p:
        raise ValueError(f"k-means needs 1 <= k <= {p} rows, got k={k}")
    rng = np.random.default_rng(seed)
    idx = [int(rng.integers(p))]
    d = nearest_sq_distance(x, x[idx])
    for _ in range(1, k):
        total = d.sum()
        i = int(rng.choice(p, p=d / total)) if total > 0 else int(np.flatnonzero(~np.isin(np.arange(p), idx))[0])
        idx.append(i)
        diff = x - x[i]
        np.minimum(d, (diff * diff).sum(1), out=d)
    centres = x[idx].copy()
    assign = np.full(p, -1, dtype=np.int64)
    for _ in range(iterations):
        dist = (x * x).sum(1)[:, None] - 2.0 * (x @ centres.T) + (centres * centres).sum(1)[None, :]
        new = dist.argmin(1)
        for c in range(k):  # an empty cluster takes the row farthest from its own centre
            if not (new == c).any():
                far = int(np.argmax(dist[np.arange(p), new]))
                new[far] = c
                dist[far] = 0.0
        if np.array_equal(new, assign):
            break
        assign = new
        for c in range(k):
            centres[c] = x[assign == c].mean(0)
    return assign


def rank_pool(strategy: str, proba: np.ndarray, n: int, *, features: np.ndarray | None = None,
              centres: np.ndarray | None = None, balanced: bool = False, speakers: np.ndarray | None = None,
              max_per_speaker: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Choose ``n`` of ``P`` pool candidates to label (see the module docstring for the strategies).

    Args:
        proba: float [P × C] class probabilities of the candidates.
        features: float64 [P × D] pooled vectors (:func:`pooled_features`); needed by ``kcenter`` and
            ``diverse-entropy``.
        centres: float64 [L × D] pooled vectors of what is already labelled (``kcenter``; ``None``: none).
        balanced: round-robin over predicted classes (uncertainty strategies only).
        speakers: object [P] speaker of each candidate (needed with ``max_per_speaker``).
        max_per_speaker: at most this many picks per (non-empty) speaker; ``None``: no cap.

    Returns:
        ``(picks, scores)``: int64 [≤ n] candidate indices in pick order (best first; ranking ties go to the
        earlier candidate) and float64 [≤ n] their scores (``nan`` where undefined, see ``kcenter``).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    if max_per_speaker is not None and max_per_speaker < 1:
        raise ValueError(f"max_per_speaker must be at least 1, got {max_per_speaker}")
    if balanced and strategy in DIVERSITY_STRATEGIES:
        raise ValueError(f"balanced (round-robin over predicted classes) applies to the uncertainty strategies "
                         f"({', '.join(UNCERTAINTY_STRATEGIES)}); {strategy} spreads its picks over the feature "
                         f"space already: drop balanced")
    cap = _SpeakerCap(speakers, max_per_speaker)
    p = len(proba)
    if p == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    if strategy in DIVERSITY_STRATEGIES and (features is None or len(features) != p):
        raise ValueError(f"{strategy} needs the pooled features of the {p} candidates")
    if strategy == "kcenter":
        ent = uncertainty(proba, "entropy")
        first = int(np.argmax(ent))
        c = np.zeros((0, features.shape[1])) if centres is None else centres
        picks, d2 = kcenter_greedy(features, c, n, first, cap)
        return picks, np.sqrt(d2 / max(1, features.shape[1]))
    if strategy == "diverse-entropy":
        ent = uncertainty(proba, "entropy")
        order = np.argsort(-ent, kind="stable")
        cand = order[:min(p, DIVERSE_PREFILTER * n)]
        k = min(n, len(cand))
        groups = kmeans(features[cand], k, seed=seed)
        queues = [cand[groups == g] for g in range(k)]  # each best first: cand is sorted by entropy
        queues.sort(key=lambda q: (-ent[q[0]], q[0]))
        picks = round_robin(queues, n, cap)
        if len(picks) < n:  # speaker caps emptied the clusters: continue down the rest of the pool
            taken = set(picks.tolist())
            rest = round_robin([[i for i in order if i not in taken]], n - len(picks), cap)
            picks = np.concatenate([picks, rest])
        return picks, ent[picks]
    score = uncertainty(proba, strategy, seed)
    order = np.argsort(-score, kind="stable")
    if balanced:
        pred = proba.argmax(1)
        queues = [order[pred[order] == c] for c in range(proba.shape[1])]
    else:
        queues = [order]
    picks = round_robin(queues, n, cap)
    return picks, score[picks]


def suggest(bundle, inputs: Inputs, n: int = 100, strategy: str = "entropy", balanced: bool = False,
            exclude: set[str] | None = None, include_labelled: bool = False, seed: int = 0,
            device: str = "cpu", max_per_speaker: int | None = None,
            audio: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Rank pool utterances of ``inputs`` (from :func:`train.bundle.bundle_inputs`) for labelling.

    Candidates: rows without a label (every row with ``include_labelled``) whose id is not in ``exclude``.
    They are chosen by :func:`rank_pool`; ``kcenter``'s centres are the rows that are not candidates
    because they carry a label or are in ``exclude`` (already labelled). ``audio``: utt_id -> audio path
    (:func:`train.audio_paths.audio_paths`), ``""`` for ids it lacks.

    Returns dicts, best first: rank, utt_id, score (``None`` where undefined), pred, speaker, audio,
    p_<class>….
    """
    from .bundle import predict

    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    exclude = exclude or set()
    ids, labels = inputs.audio.utt_ids, inputs.audio.labels
    excluded = np.array([u in exclude for u in ids], dtype=bool)
    labelled = np.array([bool(lab) for lab in labels], dtype=bool)
    keep = ~excluded & (include_labelled | ~labelled)
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        return []
    pr = predict(bundle, inputs, device, rows)
    features = centres = None
    if strategy in DIVERSITY_STRATEGIES:
        stds = list(bundle.standardizers)
        features = pooled_features(inputs.stores, stds, rows)
        known = np.flatnonzero(~keep)
        centres = pooled_features(inputs.stores, stds, known) if strategy == "kcenter" else None
    picks, scores = rank_pool(strategy, pr.proba, n, features=features, centres=centres, balanced=balanced,
                              speakers=inputs.audio.speakers[rows], max_per_speaker=max_per_speaker, seed=seed)
    out = []
    for rank, (i, s) in enumerate(zip(picks, scores), 1):
        u = str(pr.utt_ids[i])
        out.append({"rank": rank, "utt_id": u, "score": None if np.isnan(s) else float(s),
                    "pred": bundle.classes[pr.pred[i]], "speaker": str(inputs.audio.speakers[rows[i]]),
                    "audio": (audio or {}).get(u, ""),
                    **{f"p_{c}": float(p) for c, p in zip(bundle.classes, pr.proba[i])}})
    return out


def shortfall_note(inputs: Inputs, n: int, written: int, exclude: set[str] | None, include_labelled: bool,
                   max_per_speaker: int | None) -> str | None:
    """Why fewer than ``n`` suggestions were written (``None`` when ``n`` were): how many rows were skipped
    as labelled or excluded, what the speaker cap allows, and the option that changes it."""
    if written >= n:
        return None
    ids, labels, speakers = inputs.audio.utt_ids, inputs.audio.labels, inputs.audio.speakers
    exclude = exclude or set()
    excluded = np.array([u in exclude for u in ids], dtype=bool)
    labelled = np.array([bool(lab) for lab in labels], dtype=bool)
    skipped_lab = int((labelled & ~excluded).sum()) if not include_labelled else 0
    n_excl = int(excluded.sum())
    cands = int(len(ids) - skipped_lab - n_excl)
    total = len(ids)
    if cands == 0:
        if skipped_lab == total:
            return (f"every one of the store's {total} utterances already carries a label; rerun with "
                    f"--include-labelled to rank them too (e.g. to re-check labels)")
        if n_excl == total:
            return f"all {total} utterances of the store are listed in --exclude; nothing is left to suggest"
        return (f"the store's {total} utterances are all labelled ({skipped_lab}) or listed in --exclude "
                f"({n_excl}); rerun with --include-labelled to rank the labelled ones too")
    why = [f"only {cands} of the store's {total} utterances are candidates"]
    if skipped_lab:
        why.append(f"{skipped_lab} labelled (--include-labelled ranks them too)")
    if n_excl:
        why.append(f"{n_excl} in --exclude")
    if max_per_speaker is not None and written < cands:
        keep = ~excluded & (include_labelled | ~labelled)
        spk = [s for s in speakers[keep]]
        named = {s for s in spk if s}
        allowed = max_per_speaker * len(named) + sum(1 for s in spk if not s)
        why = [f"--max-per-speaker {max_per_speaker} over the {len(named)} speakers of the {cands} candidates "
               f"allows at most {allowed}; raise it for more"]
    return f"{written} of --n {n} written: " + "; ".join(why)


def exclude_note(inputs: Inputs, exclude: set[str]) -> str | None:
    """A note when none of the ``--exclude`` ids is in the store (a wrong list, or ids without the
    ``<corpus>/`` prefix that several --store give every id)."""
    if not exclude:
        return None
    ids = {str(u) for u in inputs.audio.utt_ids}
    if exclude & ids:
        return None
    stripped = {u.split("/", 1)[1] for u in ids if "/" in u}
    hint = (" (with several --store every id carries a <corpus>/ prefix, e.g. "
            f"{sorted(ids)[0]!r}; prefix the ids in the list)") if exclude & stripped else ""
    return f"none of the {len(exclude)} ids in --exclude is in the store, so none was excluded{hint}"


def read_id_list(path: str | os.PathLike) -> set[str]:
    """Utterance ids from a ``.jsonl`` (field ``utt_id``), ``.csv`` (column ``utt_id``; cells escaped by
    :func:`~ser_common.spreadsheet.safe_cell`, as in our own CSVs, are restored) or text file (one a line)."""
    from ser_common.spreadsheet import restore_cell

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
    if path.suffix == ".jsonl":
        out = set()
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rec = json.loads(line)
                except ValueError as e:
                    raise ValueError(f"{path}:{n}: not a JSON line ({e})") from None
                if not isinstance(rec, dict) or "utt_id" not in rec:
                    raise ValueError(f"{path}:{n}: record has no utt_id")
                out.add(str(rec["utt_id"]))
        return out
    if path.suffix == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if rows and "utt_id" not in rows[0]:
            raise ValueError(f"{path}: no utt_id column")
        return {restore_cell(r["utt_id"]) for r in rows}
    return {line.strip() for line in text.splitlines() if line.strip()}


def write_suggestions(rows: Sequence[dict[str, Any]], classes: Sequence[str], path: str | os.PathLike) -> Path:
    """The rows of :func:`suggest` as CSV: rank, utt_id, score, pred, [speaker, audio: when the rows carry
    them], p_<class>… (floats with 6 decimals; a ``None`` score is an empty cell).

    Numbers stay numbers; text cells that a spreadsheet would run as a formula are neutralised with a
    leading ``'`` (:func:`ser_common.spreadsheet.safe_cell`).
    """
    from ser_common.spreadsheet import safe_cell

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = [c for c in ("speaker", "audio") if rows and c in rows[0]]
    cols = ["rank", "utt_id", "score", "pred", *extra, *[f"p_{c}" for c in classes]]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, restval="")
        w.writerow({c: safe_cell(c) for c in cols})
        for r in rows:
            w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else safe_cell(v)) for k, v in r.items()})
    return path
