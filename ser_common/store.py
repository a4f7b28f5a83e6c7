"""The HDF5 feature store: every utterance's variable-length frames of one feature set in one file.

Layout (format version 1)::

    /data            float16|float32 [total_frames, dims]  chunked along frames; one contiguous dataset
    /offsets         int64 [n_utts + 1]      frames of utterance i = data[offsets[i]:offsets[i+1]]
    /utt_id          utf-8 str [n_utts]
    /label           utf-8 str [n_utts]      "" for an unlabelled utterance
    /speaker         utf-8 str [n_utts]
    /session         utf-8 str [n_utts]      the fold group
    /transcript      utf-8 str [n_utts]      "" where unknown
    /duration        float32 [n_utts]        seconds of audio in the manifest (before cropping)
    /manifest_index  int64 [n_utts]          position of the utterance in the manifest it came from
    /tokens          utf-8 str [total_frames]  text stores only: the (WordPiece) token of each frame row
    attrs            format_version, complete, n_utts, dims, dtype, feature, frame_rate_hz, crop_s, ...,
                     and ``provenance_json``: the full provenance record as JSON

A store is written to ``<name>.h5.partial``; each :meth:`StoreWriter.append` writes a batch and then moves
the commit point (attr ``n_written``) and flushes, so a killed run leaves a partial file whose first
``n_written`` utterances are valid. Reopening the partial resumes after them (anything past the commit
point is truncated away). :meth:`StoreWriter.finalize` marks the file complete and renames it into place,
so a file named ``*.h5`` is always complete.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np

FORMAT_VERSION = 1
_STR = h5py.string_dtype("utf-8")
_META_STR = ("utt_id", "label", "speaker", "session", "transcript")
RESUME_KEYS = ("feature", "dims", "dtype", "manifest_sha256", "crop_s", "layer", "weights_sha256", "shard")
"""Provenance keys that must agree between a partial store and the run that resumes it."""


class StoreError(RuntimeError):
    """A store that cannot be used as asked (incomplete, incompatible, corrupt); the message names the file."""


@dataclass(frozen=True)
class UtteranceMeta:
    """What the trainer needs of one utterance besides its frames (copied from the manifest record)."""

    utt_id: str
    label: str | None
    speaker: str
    session: str
    duration: float
    manifest_index: int
    transcript: str | None = None


def partial_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".partial")


def _to_attr(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (bool, int, float, str, np.integer, np.floating)):
        return value
    return json.dumps(value, sort_keys=True)


class StoreWriter:
    """Append utterances to a store, resumably; finalise atomically.

    Args:
        path: final store path (``…/<feature>.h5``).
        dims: feature dimension (columns of every frame matrix).
        provenance: JSON-serialisable provenance (feature spec, encoder, weights sha256, layer, frame rate,
            crop, sample rate, package versions, manifest sha256, …). Scalars are also written as flat attrs.
        dtype: storage dtype, ``float16`` (default) or ``float32``.
        text: a text store: :meth:`append` then takes one token string per frame row.
        overwrite: delete an existing complete store or partial file first instead of refusing/resuming.
    """

    def __init__(self, path: str | os.PathLike, dims: int, provenance: dict[str, Any], dtype: str = "float16",
                 text: bool = False, overwrite: bool = False):
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.dims = int(dims)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float16, np.float32):
            raise ValueError(f"{self.path}: store dtype must be float16 or float32, got {dtype}")
        self.text = text
        self.provenance = {**provenance, "dims": self.dims, "dtype": self.dtype.name, "format_version": FORMAT_VERSION}
        if overwrite:
            for p in (self.path, self.partial):
                if p.exists():
                    p.unlink()
        if self.path.exists():
            raise StoreError(f"{self.path}: a complete store already exists (delete it or pass overwrite)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.resumed = self.partial.exists()
        if self.resumed:
            self._f = self._open_partial()
        else:
            self._f = self._create()
        n = int(self._f.attrs["n_written"])
        self.done_ids: set[str] = {s.decode() if isinstance(s, bytes) else s for s in self._f["utt_id"][:n]}
        self.skipped: dict[str, str] = json.loads(self._f.attrs.get("skipped_json", "{}"))

    # -- opening -------------------------------------------------------------------------------------------
    def _create(self) -> h5py.File:
        f = h5py.File(self.partial, "w")
        chunk = max(64, (1 << 20) // (self.dims * self.dtype.itemsize))
        f.create_dataset("data", shape=(0, self.dims), maxshape=(None, self.dims), dtype=self.dtype,
                         chunks=(chunk, self.dims))
        f.create_dataset("offsets", data=np.zeros(1, np.int64), maxshape=(None,), chunks=(4096,))
        for name in _META_STR:
            f.create_dataset(name, shape=(0,), maxshape=(None,), dtype=_STR, chunks=(4096,))
        f.create_dataset("duration", shape=(0,), maxshape=(None,), dtype=np.float32, chunks=(4096,))
        f.create_dataset("manifest_index", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(4096,))
        if self.text:
            f.create_dataset("tokens", shape=(0,), maxshape=(None,), dtype=_STR, chunks=(16384,))
        for k, v in self.provenance.items():
            f.attrs[k] = _to_attr(v)
        f.attrs["provenance_json"] = json.dumps(self.provenance, sort_keys=True, default=str)
        f.attrs["complete"] = False
        f.attrs["n_written"] = 0
        f.attrs["created_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        f.flush()
        return f

    def _open_partial(self) -> h5py.File:
        try:
            f = h5py.File(self.partial, "r+")
            old = json.loads(f.attrs["provenance_json"])
            n = int(f.attrs["n_written"])
            offsets = f["offsets"]
            end = int(offsets[n])
        except Exception as e:  # noqa: BLE001 - any failure here means the partial file is unusable
            raise StoreError(f"{self.partial}: partial store is unreadable ({e}); delete it to start over") from e
        diffs = {k: (old.get(k), self.provenance.get(k)) for k in RESUME_KEYS
                 if _norm(old.get(k)) != _norm(self.provenance.get(k))}
        if diffs:
            f.close()
            raise StoreError(f"{self.partial}: cannot resume, the partial store was made with different settings "
                             f"{diffs}; delete it or pass overwrite to start over")
        # drop anything written past the commit point by the interrupted run
        f["data"].resize(end, axis=0)
        f["offsets"].resize(n + 1, axis=0)
        for name in (*_META_STR, "duration", "manifest_index"):
            f[name].resize(n, axis=0)
        if self.text:
            f["tokens"].resize(end, axis=0)
        f.flush()
        return f

    # -- writing -------------------------------------------------------------------------------------------
    def append(self, metas: Sequence[UtteranceMeta], frames: Sequence[np.ndarray],
               tokens: Sequence[Sequence[str]] | None = None) -> None:
        """Append a batch. ``frames[i]`` is a (frames × dims) array for ``metas[i]``.

        The whole batch is validated first (shape, dims, finite values, not already written, token count),
        so a bad utterance raises ``ValueError`` naming it and nothing of the batch is written.
        """
        if len(metas) != len(frames):
            raise ValueError("metas and frames differ in length")
        if self.text and (tokens is None or len(tokens) != len(frames)):
            raise ValueError(f"{self.path}: a text store needs one token list per utterance")
        arrays = []
        for i, (m, x) in enumerate(zip(metas, frames)):
            x = np.asarray(x)
            if x.ndim != 2 or x.shape[1] != self.dims:
                raise ValueError(f"{m.utt_id}: frames must be (n_frames, {self.dims}), got {x.shape}")
            if x.shape[0] == 0:
                raise ValueError(f"{m.utt_id}: no frames")
            if not np.isfinite(x).all():
                raise ValueError(f"{m.utt_id}: features contain NaN or Inf")
            if m.utt_id in self.done_ids:
                raise ValueError(f"{m.utt_id}: already in {self.partial}")
            if self.text and len(tokens[i]) != x.shape[0]:
                raise ValueError(f"{m.utt_id}: {len(tokens[i])} tokens for {x.shape[0]} frames")
            with np.errstate(over="ignore"):
                y = x.astype(self.dtype)
            if not np.isfinite(y).all():
                raise ValueError(f"{m.utt_id}: features overflow {self.dtype.name} (max |x| = {np.abs(x).max():.3g})")
            arrays.append(y)
        if not arrays:
            return
        f = self._f
        n = int(f.attrs["n_written"])
        start = int(f["offsets"][n])
        lengths = np.array([a.shape[0] for a in arrays], dtype=np.int64)
        total = start + int(lengths.sum())
        f["data"].resize(total, axis=0)
        f["data"][start:total] = np.concatenate(arrays, axis=0)
        f["offsets"].resize(n + len(arrays) + 1, axis=0)
        f["offsets"][n + 1:] = start + np.cumsum(lengths)
        m_new = n + len(arrays)
        cols = {
            "utt_id": [m.utt_id for m in metas], "label": [m.label or "" for m in metas],
            "speaker": [m.speaker for m in metas], "session": [m.session for m in metas],
            "transcript": [m.transcript or "" for m in metas],
        }
        for name, values in cols.items():
            f[name].resize(m_new, axis=0)
            f[name][n:m_new] = np.array(values, dtype=object)
        f["duration"].resize(m_new, axis=0)
        f["duration"][n:m_new] = np.array([m.duration for m in metas], dtype=np.float32)
        f["manifest_index"].resize(m_new, axis=0)
        f["manifest_index"][n:m_new] = np.array([m.manifest_index for m in metas], dtype=np.int64)
        if self.text:
            flat = [t for toks in tokens for t in toks]
            f["tokens"].resize(total, axis=0)
            f["tokens"][start:total] = np.array(flat, dtype=object)
        f.flush()
        f.attrs["n_written"] = m_new  # the commit point moves only after the batch is on disk
        f.flush()
        self.done_ids.update(m.utt_id for m in metas)

    def skip(self, utt_id: str, reason: str) -> None:
        """Record an utterance that was left out (bad audio, …); the reason is kept in the store's attrs."""
        self.skipped[utt_id] = reason
        self._f.attrs["skipped_json"] = json.dumps(self.skipped, sort_keys=True)
        self._f.flush()

    def finalize(self) -> Path:
        """Mark the store complete and rename ``*.h5.partial`` to ``*.h5``. Returns the final path."""
        f = self._f
        n = int(f.attrs["n_written"])
        if n == 0:
            self.close()
            raise StoreError(f"{self.partial}: no utterance was written; nothing to finalise")
        f.attrs["n_utts"] = n
        f.attrs["complete"] = True
        f.attrs["finalized_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        f.close()
        os.replace(self.partial, self.path)
        return self.path

    def close(self) -> None:
        """Close without finalising (the partial file stays for a later resume)."""
        if self._f.id.valid:
            self._f.close()

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _norm(v: Any) -> Any:
    return json.loads(json.dumps(v, sort_keys=True, default=str))


def _strs(ds: h5py.Dataset) -> np.ndarray:
    return ds.asstr()[:].astype(object) if len(ds) else np.array([], dtype=object)


class FeatureStore:
    """Read a complete store.

    Metadata (ids, labels, speakers, sessions, durations, offsets) is read into memory on open. Frames are
    read lazily per utterance with :meth:`frames`, or all at once with :meth:`load` (one read of ``/data``).

    Attributes:
        utt_ids, labels, speakers, sessions, transcripts: object arrays of str, one per utterance.
        durations: float32 [n_utts] seconds. offsets: int64 [n_utts + 1]. manifest_index: int64 [n_utts].
        provenance: the provenance dict the writer was given (plus dims, dtype, format_version).
    """

    def __init__(self, path: str | os.PathLike, allow_partial: bool = False):
        self.path = Path(path)
        if not self.path.exists():
            hint = " (an unfinished extraction left a .partial file: rerun it to resume)" \
                if partial_path(self.path).exists() else ""
            raise StoreError(f"{self.path}: store not found{hint}")
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as e:
            raise StoreError(f"{self.path}: not a readable HDF5 store ({e})") from e
        f = self._f
        if "provenance_json" not in f.attrs or "data" not in f:
            f.close()
            raise StoreError(f"{self.path}: not a feature store (no /data or provenance)")
        if int(f.attrs.get("format_version", -1)) != FORMAT_VERSION:
            raise StoreError(f"{self.path}: store format {f.attrs.get('format_version')} is not {FORMAT_VERSION}")
        if not bool(f.attrs["complete"]) and not allow_partial:
            raise StoreError(f"{self.path}: store is incomplete (interrupted extraction); rerun it to resume")
        n = int(f.attrs["n_written"])
        self.provenance: dict[str, Any] = json.loads(f.attrs["provenance_json"])
        self.skipped: dict[str, str] = json.loads(f.attrs.get("skipped_json", "{}"))
        self.offsets = f["offsets"][: n + 1].astype(np.int64)
        self.utt_ids = _strs(f["utt_id"])[:n]
        self.labels = _strs(f["label"])[:n]
        self.speakers = _strs(f["speaker"])[:n]
        self.sessions = _strs(f["session"])[:n]
        self.transcripts = _strs(f["transcript"])[:n]
        self.durations = f["duration"][:n]
        self.manifest_index = f["manifest_index"][:n]
        self.dims = int(f.attrs["dims"])
        self.is_text = "tokens" in f
        self._index = {u: i for i, u in enumerate(self.utt_ids)}

    @property
    def attrs(self) -> dict[str, Any]:
        """Raw HDF5 attributes (flat)."""
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in self._f.attrs.items()}

    @property
    def n_frames(self) -> np.ndarray:
        """int64 [n_utts]: frames per utterance."""
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.utt_ids)

    def index(self, utt_id: str) -> int:
        try:
            return self._index[utt_id]
        except KeyError:
            raise KeyError(f"{self.path}: no utterance {utt_id!r}") from None

    def frames(self, i: int | str) -> np.ndarray:
        """(n_frames × dims) array of utterance ``i`` (index or utt_id), in the stored dtype."""
        if isinstance(i, str):
            i = self.index(i)
        return self._f["data"][self.offsets[i]:self.offsets[i + 1]]

    def tokens(self, i: int | str) -> list[str]:
        """The token string of each frame row of utterance ``i`` (text stores only)."""
        if not self.is_text:
            raise StoreError(f"{self.path}: not a text store, it has no tokens")
        if isinstance(i, str):
            i = self.index(i)
        return list(self._f["tokens"].asstr()[self.offsets[i]:self.offsets[i + 1]])

    def load(self, dtype: str | np.dtype | None = None) -> np.ndarray:
        """All frames in one read: ``(total_frames × dims)``; slice with :attr:`offsets`."""
        data = self._f["data"][: int(self.offsets[-1])]
        return data if dtype is None else data.astype(dtype, copy=False)

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        for i, u in enumerate(self.utt_ids):
            yield u, self.frames(i)

    def close(self) -> None:
        if self._f.id.valid:
            self._f.close()

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def store_path(store_dir: str | os.PathLike, name: str) -> Path:
    """Where the store of feature set ``name`` lives inside a stores folder: ``<store_dir>/<name>.h5``."""
    return Path(store_dir) / f"{name}.h5"


def list_stores(store_dir: str | os.PathLike) -> list[Path]:
    """Complete stores in a folder (``*.h5``), sorted by name."""
    return sorted(Path(store_dir).glob("*.h5"))
