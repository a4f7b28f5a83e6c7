"""Decoding worker processes: audio files -> cropped 16 kHz waveforms (and, for feature sets that run in the
workers, their features), batches handed back in order with ``prefetch`` batches in flight per worker.

Workers are spawned (safe with CUDA and OpenMP state in the parent) and import only numpy, soundfile and soxr
(plus pyAudioAnalysis for the LLDs). A worker feature set is built once per worker process from its spec and
kept in :data:`_WORKER_FS`; with ``workers=0`` everything runs in the calling process, which registers the
feature set it already has with :func:`use_in_process`.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any, Iterator

from .audio import AudioError, load_audio
from .feature_set import SAMPLE_RATE, FeatureSet
from .registry import build

_WORKER_FS: dict[str, FeatureSet] = {}
"""Feature sets computed in this process's workers, by spec (built on first use)."""


class WorkerDied(RuntimeError):
    """A decoding worker process ended abruptly (killed, out of memory, a crash in a decoder library)."""


def use_in_process(spec: str, fs: FeatureSet) -> None:
    """Let :func:`_decode_batch` use the feature set ``fs`` for ``spec`` as it is (``workers=0``: no rebuild)."""
    _WORKER_FS[spec] = fs


def _decode_batch(items: list[tuple[int, str, float | None, float | None]], crop_s: float | None,
                  min_samples: int, worker_spec: str | None) -> list[tuple[int, Any, str | None, float]]:
    """Decode (and, for worker feature sets, encode) a batch. Returns (pos, wave|features|None, error, seconds)."""
    fs = None
    if worker_spec is not None:
        fs = _WORKER_FS.get(worker_spec)
        if fs is None:
            fs = _WORKER_FS[worker_spec] = build(worker_spec)
    out = []
    for pos, audio, start, end in items:
        try:
            wave = load_audio(audio, SAMPLE_RATE, crop_s=crop_s, start=start, end=end, min_samples=min_samples)
        except AudioError as e:
            out.append((pos, None, str(e), 0.0))
            continue
        seconds = wave.shape[0] / SAMPLE_RATE
        if fs is not None:
            try:
                out.append((pos, fs.encode([wave])[0], None, seconds))
            except Exception as e:  # noqa: BLE001 - reported per utterance, the run goes on or stops per flag
                out.append((pos, None, f"{audio}: {fs.name} failed ({type(e).__name__}: {e})", seconds))
        else:
            out.append((pos, wave, None, seconds))
    return out


def _in_order(batches: list[list], fn, args: tuple, workers: int, prefetch: int) -> Iterator[list]:
    """Run ``fn(batch, *args)`` for each batch, in worker processes, yielding results in order.

    Raises :class:`WorkerDied` when a worker process dies."""
    if workers <= 0:
        for b in batches:
            yield fn(b, *args)
        return
    # spawn: safe with CUDA and OpenMP state in the parent; workers import only numpy/soundfile/soxr (+ pyAA)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        pending: deque[Future] = deque()
        it = iter(batches)
        for b in it:
            pending.append(pool.submit(fn, b, *args))
            if len(pending) >= workers * prefetch:
                break
        while pending:
            try:
                result = pending.popleft().result()
            except BrokenProcessPool as e:
                raise WorkerDied(str(e)) from None
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(fn, nxt, *args))
            yield result
