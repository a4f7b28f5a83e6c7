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

A store is written to ``<name>.h5.partial`` under an exclusive lock (:mod:`ser_common.lock`); each
:meth:`StoreWriter.append` first checks the free disk space (:data:`DISK_MARGIN_BYTES` beyond twice the
batch), writes the batch and then moves the commit point (attr ``n_written``) and flushes, so a killed run
or a full disk leaves a partial file whose first ``n_written`` utterances are valid. Reopening the
partial resumes after them (anything past the commit point is truncated away) when its
:class:`~ser_common.identity.FeatureIdentity` equals the requested one. :meth:`StoreWriter.finalize` marks
the file complete and renames it into place, so a file named ``*.h5`` is always complete, and replacing a
complete store (``overwrite``) only ever happens by that rename: a killed overwrite leaves the old store.

:class:`FeatureStore` validates a store on open in O(metadata) (offsets, dataset lengths, attrs, unique
ids, the JSON attrs, and that ``/data`` really holds the frames it claims) and refuses anything else.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import h5py
import numpy as np

from .errors import DiskFullError, StoreError
from .identity import FeatureIdentity, format_diff
from .lock import StoreLock

__all__ = ["FORMAT_VERSION", "DISK_MARGIN_BYTES", "StoreError", "DiskFullError", "UtteranceMeta", "StoreWriter",
           "FeatureStore", "partial_path", "store_path", "list_stores", "changed_skips", "file_signature", "store_identity",
           "store_provenance"]

FORMAT_VERSION = 1
DISK_MARGIN_BYTES = 4 << 20
"""Free bytes a commit must leave beyond twice the batch's own size (HDF5 allocates whole chunks)."""
MAX_COMPRESSION_RATIO = 100
"""A compressed ``/data`` may claim at most this many times its stored bytes (guards against a tiny file
that claims millions of frames and would allocate gigabytes on load)."""

_STR = h5py.string_dtype("utf-8")
_META_STR = ("utt_id", "label", "speaker", "session", "transcript")
_PER_UTT = (*_META_STR, "duration", "manifest_index")


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


def file_signature(path: str | os.PathLike | None) -> list | None:
    """``[path, size in bytes, mtime in ns]`` of a file (size/mtime ``None`` when it is absent); ``None``
    for no path. A skipped utterance is retried once its file's signature changes."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return [str(path), None, None]
    return [str(path), int(st.st_size), int(st.st_mtime_ns)]


def changed_skips(sources: Mapping[str, Any]) -> list[str]:
    """Ids of skipped utterances whose source file changed since it was skipped (see :func:`file_signature`)."""
    out = []
    for utt, sig in sources.items():
        if isinstance(sig, list) and sig and file_signature(sig[0]) != sig:
            out.append(utt)
    return sorted(out)


def store_provenance(provenance: Mapping[str, Any], dims: int, dtype: str) -> dict[str, Any]:
    """The provenance a :class:`StoreWriter` records: the given keys plus ``dims``, ``dtype`` and the format."""
    return {**provenance, "dims": int(dims), "dtype": np.dtype(dtype).name, "format_version": FORMAT_VERSION}


def store_identity(provenance: Mapping[str, Any], dims: int, dtype: str) -> FeatureIdentity:
    """The identity a store written with these arguments will have (compare before opening a writer)."""
    return FeatureIdentity.from_provenance(store_provenance(provenance, dims, dtype))


def free_bytes(folder: str | os.PathLike) -> int:
    """Free bytes on the file system of ``folder`` (for the commit-time disk check)."""
    return shutil.disk_usage(folder).free


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


class StoreWriter:
    """Append utterances to a store, resumably, under an exclusive lock; finalise atomically.

    Args:
        path: final store path (``…/<feature>.h5``).
        dims: feature dimension (columns of every frame matrix).
        provenance: JSON-serialisable provenance (feature spec, encoder, weights sha256, layer, frame rate,
            crop, sample rate, package versions, manifest sha256, …). Scalars are also written as flat attrs.
            Its :class:`~ser_common.identity.FeatureIdentity` decides whether a partial store may be resumed.
        dtype: storage dtype, ``float16`` (default) or ``float32``.
        text: a text store: :meth:`append` then takes one token string per frame row.
        overwrite: replace an existing complete store — the new one is written beside it and renamed over
            it by :meth:`finalize`, so the old one stays until then — and discard a partial store of other
            settings (a partial of the same identity is the interrupted overwrite itself: it resumes).
        reopen: append to an existing complete store of the same identity (to retry skipped utterances):
            it is copied to the partial name and replaced by :meth:`finalize`.

    Raises :class:`StoreError` (a complete store exists and neither flag is given; a partial of other
    settings; an unreadable partial), :class:`~ser_common.lock.StoreLocked` (another live writer).
    """

    def __init__(self, path: str | os.PathLike, dims: int, provenance: dict[str, Any], dtype: str = "float16",
                 text: bool = False, overwrite: bool = False, reopen: bool = False):
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.dims = int(dims)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float16, np.float32):
            raise ValueError(f"{self.path}: store dtype must be float16 or float32, got {dtype}")
        self.text = text
        self.provenance = store_provenance(provenance, self.dims, self.dtype.name)
        self.identity = FeatureIdentity.from_provenance(self.provenance)
        self._lock = StoreLock(self.path).acquire()
        try:
            self._f = self._open(overwrite, reopen)
            n = int(self._f.attrs["n_written"])
            self.done_ids: set[str] = set(_strs(self._f["utt_id"])[:n].tolist())
            self.skipped: dict[str, str] = json.loads(self._f.attrs.get("skipped_json", "{}"))
            self.skip_sources: dict[str, Any] = json.loads(self._f.attrs.get("skipped_sources_json", "{}"))
        except BaseException:
            f = getattr(self, "_f", None)
            if f is not None and f.id.valid:
                f.close()
            self._lock.release()
            raise

    # -- opening -------------------------------------------------------------------------------------------
    def _open(self, overwrite: bool, reopen: bool) -> h5py.File:
        if self.partial.exists():
            try:
                return self._open_partial()
            except StoreError:
                if not overwrite:
                    raise
                self.partial.unlink()
                return self._create()
        if self.path.exists():
            if reopen:
                self._copy_complete()
                return self._open_partial()
            if not overwrite:
                raise StoreError(f"{self.path}: a complete store already exists; pass --overwrite to replace it "
                                 f"(the old one stays until the new one is complete) or choose another --out")
        self.resumed = False
        return self._create()

    def _copy_complete(self) -> None:
        size = self.path.stat().st_size
        free = free_bytes(self.path.parent)
        if free < size + DISK_MARGIN_BYTES:
            raise DiskFullError(f"{self.path}: reopening it to retry skipped utterances needs a copy of "
                                f"{_mb(size)}, only {_mb(free)} free; free some space and rerun")
        tmp = self.partial.with_name(self.partial.name + ".copy")
        shutil.copyfile(self.path, tmp)
        os.replace(tmp, self.partial)

    def _create(self) -> h5py.File:
        self.resumed = False
        try:
            f = h5py.File(self.partial, "w")
        except OSError as e:
            raise StoreError(f"{self.partial}: cannot create the store ({e}); choose a writable --out") from None
        try:
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
        except BaseException:
            f.close()   # the caller never sees this handle: close it here, or the file stays open
            raise
        return f

    def _open_partial(self) -> h5py.File:
        try:
            f = h5py.File(self.partial, "r+")
        except OSError as e:
            raise StoreError(f"{self.partial}: partial store is unreadable ({e}); delete it or pass --overwrite "
                             f"to start over") from None
        try:
            n, _ = _check_layout(f, self.partial, complete=False, fix="delete it or pass --overwrite to start over")
            old = FeatureIdentity.from_provenance(json.loads(f.attrs["provenance_json"]))
            diff = old.diff(self.identity)
            if diff:
                raise StoreError(f"{self.partial}: cannot resume, the partial store was made with different settings "
                                 f"({format_diff(diff, 'partial store', 'this run')}); rerun with its settings, or "
                                 f"pass --overwrite to start over")
            if ("tokens" in f) != self.text:
                kind = "text" if "tokens" in f else "audio"
                raise StoreError(f"{self.partial}: cannot resume, the partial store is a {kind} store; pass "
                                 f"--overwrite to start over")
            end = int(f["offsets"][n])
            # drop anything written past the commit point by the interrupted run
            f["data"].resize(end, axis=0)
            f["offsets"].resize(n + 1, axis=0)
            for name in _PER_UTT:
                f[name].resize(n, axis=0)
            if self.text:
                f["tokens"].resize(end, axis=0)
            f.attrs["complete"] = False
            f.flush()
        except BaseException:
            f.close()
            raise
        self.resumed = True
        return f

    # -- writing -------------------------------------------------------------------------------------------
    def append(self, metas: Sequence[UtteranceMeta], frames: Sequence[np.ndarray],
               tokens: Sequence[Sequence[str]] | None = None) -> None:
        """Append a batch. ``frames[i]`` is a (frames × dims) array for ``metas[i]``.

        The whole batch is validated first (shape, dims, finite values, not already written, token count),
        so a bad utterance raises ``ValueError`` naming it and nothing of the batch is written. Then the free
        space is checked (:class:`~ser_common.errors.DiskFullError` before anything is written when it is
        short); a write that fails anyway raises :class:`StoreError` and leaves the commit point where it was.
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
        need = sum(a.nbytes for a in arrays) + sum(len(m.utt_id) + len(m.transcript or "") + 64 for m in metas)
        if self.text:
            need += sum(len(t) + 16 for toks in tokens for t in toks)
        free = free_bytes(self.partial.parent)
        if free < 2 * need + DISK_MARGIN_BYTES:
            raise DiskFullError(
                f"{self.partial.parent}: disk full: {_mb(free)} free, the next batch needs about {_mb(2 * need + DISK_MARGIN_BYTES)} "
                f"(with margin). The {n} utterances committed to {self.partial.name} are kept: free some space and "
                f"rerun the same command to resume")
        failure = None
        hook = sys.unraisablehook
        sys.unraisablehook = lambda unraisable: None  # h5py reports chunk-eviction failures of dropped handles here
        try:
            try:
                self._write(f, n, metas, arrays, tokens)
            except (OSError, RuntimeError) as e:  # h5py reports a failed flush (ENOSPC, EIO) as RuntimeError
                failure = "disk full (No space left on device)" if "No space left" in str(e) or \
                    getattr(e, "errno", None) == 28 else (str(e).split("(")[0].strip() or type(e).__name__)
            # the failed write's dataset handles are released here, while the file is still open (closing
            # the file under live handles after a failed flush crashes HDF5)
            if failure is not None:
                self.close()
        finally:
            sys.unraisablehook = hook
        if failure is not None:
            raise StoreError(f"{self.partial}: writing a batch failed: {failure}. The {n} utterances committed "
                             f"before it are kept: fix the cause (free disk space, permissions) and rerun the same "
                             f"command to resume")
        self.done_ids.update(m.utt_id for m in metas)

    def _write(self, f: h5py.File, n: int, metas: Sequence[UtteranceMeta], arrays: list[np.ndarray],
               tokens: Sequence[Sequence[str]] | None) -> None:
        """Write one batch past the commit point, make sure it reached the disk, then move the commit point.

        Each dataset is flushed through its own handle (``H5Dflush``), which raises on a failed chunk write;
        without it HDF5 evicts chunks when a handle is dropped and swallows the error (seen on a full tmpfs).
        """
        try:
            self._write_batch(f, n, metas, arrays, tokens)
        except BaseException:
            self._roll_back(n)   # while the batch's dataset handles are still alive
            raise

    def _write_batch(self, f: h5py.File, n: int, metas: Sequence[UtteranceMeta], arrays: list[np.ndarray],
                     tokens: Sequence[Sequence[str]] | None) -> None:
        data, offsets = f["data"], f["offsets"]
        start = int(offsets[n])
        lengths = np.array([a.shape[0] for a in arrays], dtype=np.int64)
        total = start + int(lengths.sum())
        data.resize(total, axis=0)
        data[start:total] = np.concatenate(arrays, axis=0)
        offsets.resize(n + len(arrays) + 1, axis=0)
        offsets[n + 1:] = start + np.cumsum(lengths)
        m_new = n + len(arrays)
        cols = {
            "utt_id": [m.utt_id for m in metas], "label": [m.label or "" for m in metas],
            "speaker": [m.speaker for m in metas], "session": [m.session for m in metas],
            "transcript": [m.transcript or "" for m in metas],
            "duration": np.array([m.duration for m in metas], dtype=np.float32),
            "manifest_index": np.array([m.manifest_index for m in metas], dtype=np.int64),
        }
        handles = [data, offsets]
        for name, values in cols.items():
            ds = f[name]
            ds.resize(m_new, axis=0)
            ds[n:m_new] = values if isinstance(values, np.ndarray) else np.array(values, dtype=object)
            handles.append(ds)
        if self.text:
            flat = [t for toks in tokens for t in toks]
            ds = f["tokens"]
            ds.resize(total, axis=0)
            ds[start:total] = np.array(flat, dtype=object)
            handles.append(ds)
        for ds in handles:
            ds.id.flush()
        f.flush()
        need = total * self.dims * self.dtype.itemsize
        if data.id.get_storage_size() < need:
            raise OSError(f"/data holds {data.id.get_storage_size()} bytes after the write, {need} expected")
        f.attrs["n_written"] = m_new  # the commit point moves only after the batch is on disk
        f.flush()

    def _roll_back(self, n: int) -> None:
        """After a failed write: shrink every dataset back to the commit point ``n`` so HDF5 drops the dirty
        chunks it could not write (they lie past the new extent) and the file can be flushed and closed
        cleanly; a file whose close fails stays open inside HDF5 and crashes the interpreter at exit."""
        f = self._f
        for _ in range(3):
            try:
                end = int(f["offsets"][n])
                f["data"].resize(end, axis=0)
                f["offsets"].resize(n + 1, axis=0)
                for name in _PER_UTT:
                    f[name].resize(n, axis=0)
                if "tokens" in f:
                    f["tokens"].resize(end, axis=0)
                f.flush()
                return
            except (OSError, RuntimeError, ValueError):
                continue

    def _write_skips(self) -> None:
        self._f.attrs["skipped_json"] = json.dumps(self.skipped, sort_keys=True)
        self._f.attrs["skipped_sources_json"] = json.dumps(self.skip_sources, sort_keys=True)
        self._f.flush()

    def skip(self, utt_id: str, reason: str, source: str | os.PathLike | None = None) -> None:
        """Record an utterance that was left out (bad audio, …) with the reason and, when given, the
        :func:`file_signature` of its source file (a later run retries it once that file changes)."""
        self.skipped[utt_id] = reason
        sig = file_signature(source)
        if sig is not None:
            self.skip_sources[utt_id] = sig
        self._write_skips()

    def add_skips(self, skipped: Mapping[str, str], sources: Mapping[str, Any]) -> None:
        """Record several skips at once (``skipped``: utt_id -> reason; ``sources``: utt_id -> signature)."""
        self.skipped.update(skipped)
        self.skip_sources.update(sources)
        self._write_skips()

    def unskip(self, utt_ids: Sequence[str]) -> None:
        """Forget earlier skips (their utterances are about to be retried)."""
        for u in utt_ids:
            self.skipped.pop(u, None)
            self.skip_sources.pop(u, None)
        self._write_skips()

    def finalize(self) -> Path:
        """Mark the store complete and rename ``*.h5.partial`` to ``*.h5`` (replacing an older store there
        atomically). Returns the final path."""
        f = self._f
        n = int(f.attrs["n_written"])
        if n == 0:
            self.close()
            raise StoreError(f"{self.partial}: no utterance was written; nothing to finalise")
        f.attrs["n_utts"] = n
        f.attrs["complete"] = True
        f.attrs["finalized_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        f.close()
        try:
            os.replace(self.partial, self.path)
        finally:
            self._lock.release()
        return self.path

    def close(self) -> None:
        """Close without finalising (the partial file stays for a later resume) and release the lock."""
        if self._f.id.valid:
            try:
                self._f.close()
            except (OSError, RuntimeError):
                pass
        self._lock.release()

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _strs(ds: h5py.Dataset) -> np.ndarray:
    return ds.asstr()[:].astype(object) if len(ds) else np.array([], dtype=object)


def _int_attr(attrs: h5py.AttributeManager, key: str) -> int | None:
    v = attrs.get(key)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        return None
    return int(v)


def _check_layout(f: h5py.File, path: Path, complete: bool | None, fix: str) -> tuple[int, dict[str, Any]]:
    """Validate a store's structure in O(metadata); returns ``(n_written, provenance)``.

    ``complete``: ``True`` requires a finished store, ``False`` a partial one, ``None`` either. Every check
    names what is wrong; ``fix`` says what to do about it.
    """
    def bad(msg: str) -> StoreError:
        return StoreError(f"{path}: corrupt store: {msg}; {fix}")

    if "data" not in f or "provenance_json" not in f.attrs:
        raise StoreError(f"{path}: not a feature store (no /data or provenance); {fix}")
    fv = _int_attr(f.attrs, "format_version")
    if fv != FORMAT_VERSION:
        raise StoreError(f"{path}: store format {f.attrs.get('format_version')!r} is not {FORMAT_VERSION}; "
                         f"re-extract it with this version")
    is_complete = f.attrs.get("complete")
    if not isinstance(is_complete, (bool, np.bool_)):
        raise bad(f"attr 'complete' is {is_complete!r}, not a boolean")
    is_complete = bool(is_complete)
    n = _int_attr(f.attrs, "n_written")
    if n is None or n < 0:
        raise bad(f"attr 'n_written' is {f.attrs.get('n_written')!r}, not a count")
    try:
        prov = json.loads(f.attrs["provenance_json"])
    except (TypeError, ValueError) as e:
        raise bad(f"provenance_json is not valid JSON ({e})") from None
    if not isinstance(prov, dict):
        raise bad(f"provenance_json is a {type(prov).__name__}, not a JSON object")
    for key in ("skipped_json", "skipped_sources_json"):
        if key in f.attrs:
            try:
                val = json.loads(f.attrs[key])
            except (TypeError, ValueError) as e:
                raise bad(f"{key} is not valid JSON ({e})") from None
            if not isinstance(val, dict) or (key == "skipped_json" and
                                             not all(isinstance(v, str) for v in val.values())):
                raise bad(f"{key} is not a JSON object of the right shape")
    try:
        FeatureIdentity.from_provenance(prov)
    except (TypeError, ValueError) as e:
        raise bad(f"provenance has a mistyped identity field ({e})") from None
    for name in ("offsets", *_PER_UTT):
        if name not in f or not isinstance(f[name], h5py.Dataset):
            raise bad(f"dataset /{name} is missing")
    data = f["data"]
    if not isinstance(data, h5py.Dataset) or data.ndim != 2 or data.dtype not in (np.float16, np.float32):
        raise bad("/data is not a 2-D float16/float32 dataset")
    dims = _int_attr(f.attrs, "dims")
    if dims is None or dims != data.shape[1] or dims <= 0:
        raise bad(f"attr 'dims' ({f.attrs.get('dims')!r}) differs from /data's width {data.shape[1]}")
    offsets = f["offsets"]
    if offsets.ndim != 1 or offsets.dtype.kind not in "iu" or len(offsets) < n + 1:
        raise bad(f"/offsets is not an integer vector of at least n_written + 1 = {n + 1} entries")
    exact = is_complete and complete is not False
    for name in _PER_UTT:
        ds = f[name]
        if ds.ndim != 1 or len(ds) < n or (exact and len(ds) != n):
            raise bad(f"/{name} has {ds.shape[0] if ds.ndim else 0} entries for {n} utterances")
        if name in _META_STR and h5py.check_string_dtype(ds.dtype) is None:
            raise bad(f"/{name} is not a string dataset")
    if exact:
        n_utts = _int_attr(f.attrs, "n_utts")
        if n_utts != n or len(offsets) != n + 1:
            raise bad(f"n_utts ({f.attrs.get('n_utts')!r}), n_written ({n}) and /offsets ({len(offsets)} entries) "
                      f"disagree")
    off = offsets[: n + 1].astype(np.int64)
    if off[0] != 0 or (n and not (np.diff(off) > 0).all()):
        raise bad("/offsets does not start at 0 and increase strictly (every utterance has frames)")
    if off[-1] > data.shape[0] or (exact and off[-1] != data.shape[0]):
        raise bad(f"/offsets ends at frame {off[-1]} but /data holds {data.shape[0]} rows")
    claimed = int(off[-1]) * data.shape[1] * data.dtype.itemsize
    stored = data.id.get_storage_size()
    chunk_bytes = int(np.prod(data.chunks)) * data.dtype.itemsize if data.chunks else 0
    limit = stored * (MAX_COMPRESSION_RATIO if data.compression else 1) + chunk_bytes
    if claimed > limit:
        raise bad(f"/data claims {off[-1]} frames ({_mb(claimed)}) but holds only {_mb(stored)} on disk")
    if "tokens" in f:
        tok = f["tokens"]
        if tok.ndim != 1 or h5py.check_string_dtype(tok.dtype) is None or len(tok) < off[-1] \
                or (exact and len(tok) != off[-1]):
            raise bad(f"/tokens does not hold one token per frame row ({off[-1]})")
    if complete is True and not is_complete:
        raise StoreError(f"{path}: store is incomplete (interrupted extraction); rerun it to resume")
    return n, prov


class FeatureStore:
    """Read a complete store, validated on open (see :func:`_check_layout`).

    Metadata (ids, labels, speakers, sessions, durations, offsets) is read into memory on open. Frames are
    read lazily per utterance with :meth:`frames`, or all at once with :meth:`load` (one read of ``/data``).

    Attributes:
        utt_ids, labels, speakers, sessions, transcripts: object arrays of str, one per utterance.
        durations: float32 [n_utts] seconds. offsets: int64 [n_utts + 1]. manifest_index: int64 [n_utts].
        provenance: the provenance dict the writer was given (plus dims, dtype, format_version).
        identity: the :class:`~ser_common.identity.FeatureIdentity` derived from it.
        skipped: utt_id -> why it was left out.  skip_sources: utt_id -> :func:`file_signature` at the time.
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
            raise StoreError(f"{self.path}: not a readable HDF5 store ({e})") from None
        try:
            self._read(allow_partial)
        except BaseException:
            self._f.close()
            raise

    def _read(self, allow_partial: bool) -> None:
        f = self._f
        fix = "re-extract it (ser-extract … --overwrite) or remove it from the folder"
        try:
            n, prov = _check_layout(f, self.path, complete=None if allow_partial else True, fix=fix)
            self.provenance: dict[str, Any] = prov
            self.identity = FeatureIdentity.from_provenance(prov)
            self.skipped: dict[str, str] = json.loads(f.attrs.get("skipped_json", "{}"))
            self.skip_sources: dict[str, Any] = json.loads(f.attrs.get("skipped_sources_json", "{}"))
            self.offsets = f["offsets"][: n + 1].astype(np.int64)
            self.utt_ids = _strs(f["utt_id"])[:n]
            self.labels = _strs(f["label"])[:n]
            self.speakers = _strs(f["speaker"])[:n]
            self.sessions = _strs(f["session"])[:n]
            self.transcripts = _strs(f["transcript"])[:n]
            self.durations = f["duration"][:n]
            self.manifest_index = f["manifest_index"][:n]
        except (OSError, UnicodeDecodeError, ValueError, TypeError) as e:
            if isinstance(e, StoreError):
                raise
            raise StoreError(f"{self.path}: corrupt store: cannot read its metadata ({e}); {fix}") from None
        self.dims = int(f.attrs["dims"])
        self.is_text = "tokens" in f
        self._index = {u: i for i, u in enumerate(self.utt_ids)}
        if len(self._index) != n:
            from collections import Counter

            dup = next(u for u, c in Counter(self.utt_ids.tolist()).items() if c > 1)
            raise StoreError(f"{self.path}: corrupt store: utterance id {dup!r} appears more than once; {fix}")

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
        try:
            data = self._f["data"][: int(self.offsets[-1])]
        except OSError as e:
            raise StoreError(f"{self.path}: corrupt store: /data cannot be read ({e}); re-extract it") from None
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
