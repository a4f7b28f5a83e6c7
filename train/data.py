"""Stores loaded once into memory, the per-utterance statistics the trainer reuses, and bimodal joins.

A store is read in one go (one read of ``/data``) into a contiguous tensor in its stored dtype (float16
stores stay float16 in memory, half the size). Batches are float32: a frame-level fit gathers them from a
float32 copy standardised once for that fit when it takes at most 1 GiB
(:func:`train.batching.standardized_once`), otherwise it converts and standardises each batch.
Nothing in the training loop reads HDF5 again.

Per-utterance statistics (:class:`UttStats`: frame count; sum and sum of squares accumulated in float32
per utterance and kept as float64 arrays, so sums over many utterances are float64; mean and max in float32)
are computed once per store; from them come every fold's standardisation statistics and the
pooled vectors of the ``mean``/``meanmax`` heads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ser_common.labels import class_order
from ser_common.store import FeatureStore, StoreError

STATS_CHUNK_FRAMES = 1 << 16
"""Frames converted to float32 at a time while computing :class:`UttStats`."""
FINITE_CHUNK_VALUES = 1 << 20
"""Values (frame rows × dims) checked for NaN/Inf at a time by :func:`find_nonfinite`."""
_FLOAT_BITS = {np.dtype(np.float16): (np.uint16, 0xF800), np.dtype(np.float32): (np.uint32, 0xFF000000)}
"""dtype -> (same-width unsigned type, threshold of ``bits << 1`` at and above which a value is NaN/Inf)."""


@dataclass(frozen=True)
class UttStats:
    """Per-utterance statistics of a store's frames (``N`` utterances, ``D`` dims).

    Attributes:
        count: int64 [N] frames per utterance.
        sum: [N, D] sum over frames.  sumsq: [N, D] sum of squares over frames. Both accumulated in float32
            per utterance (:func:`compute_utt_stats`) and stored as float64, so that the statistics of a fold
            (sums over its utterances) add up in float64.
        mean: float32 [N, D] mean over frames.  max: float32 [N, D] max over frames.
    """

    count: np.ndarray
    sum: np.ndarray
    sumsq: np.ndarray
    mean: np.ndarray
    max: np.ndarray


@dataclass(eq=False)
class StoreData:
    """A feature store in memory.

    Attributes:
        path: the store file.  provenance: its provenance dict.
        frames: [total_frames, D] tensor in the stored dtype, contiguous, CPU; utterance ``i`` is
            ``frames[offsets[i]:offsets[i + 1]]``.
        offsets: int64 [N + 1].
        utt_ids, labels, speakers, sessions, transcripts: object arrays of str [N] (label ``""``: unlabelled).
        is_text: a text store (one frame row per token).
    """

    path: Path
    provenance: dict[str, Any]
    frames: torch.Tensor
    offsets: np.ndarray
    utt_ids: np.ndarray
    labels: np.ndarray
    speakers: np.ndarray
    sessions: np.ndarray
    transcripts: np.ndarray
    is_text: bool = False
    _stats: UttStats | None = field(default=None, repr=False)
    _on_device: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        """The store's file stem (``lld``, ``wav2vec``, ``bert-base-uncased``, …)."""
        return self.path.stem

    @property
    def n(self) -> int:
        return len(self.utt_ids)

    @property
    def dims(self) -> int:
        return int(self.frames.shape[1])

    @property
    def lengths(self) -> np.ndarray:
        """int64 [N] frames per utterance."""
        return np.diff(self.offsets)

    @property
    def modality(self) -> str:
        return "text" if self.is_text or self.provenance.get("modality") == "text" else "audio"

    def frames_on(self, device: str | torch.device) -> torch.Tensor:
        """The frame tensor on ``device`` (copied there once and cached)."""
        device = torch.device(device)
        if device.type == "cpu":
            return self.frames
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = self.frames.to(device)
        return self._on_device[key]

    def offsets_on(self, device: str | torch.device) -> torch.Tensor:
        """int64 [N + 1] offsets as a tensor on ``device`` (cached)."""
        key = f"offsets:{torch.device(device)}"
        if key not in self._on_device:
            self._on_device[key] = torch.from_numpy(self.offsets).to(device)
        return self._on_device[key]

    def stats(self) -> UttStats:
        """Per-utterance count/sum/sumsq/mean/max (computed on first use, then cached).

        Raises :class:`StoreError` when they overflow float32 (frame values beyond about 1e19, whose squares
        are infinite): standardisation and pooling would silently turn such features into zeros or NaN.
        """
        if self._stats is None:
            st = compute_utt_stats(self.frames, self.offsets)
            bad = ~(np.isfinite(st.sum).all(1) & np.isfinite(st.sumsq).all(1))
            if bad.any():
                u = int(np.flatnonzero(bad)[0])
                big = float(self.frames[int(self.offsets[u]):int(self.offsets[u + 1])].float().abs().max())
                raise StoreError(f"{self.path}: utterance {self.utt_ids[u]!r} (and {int(bad.sum()) - 1} more) has "
                                 f"frame values too large for float32 statistics (|x| up to {big:.3g}, whose "
                                 f"squares overflow): rescale the features when extracting them")
            self._stats = st
        return self._stats

    def take(self, rows: Sequence[int] | np.ndarray) -> "StoreData":
        """A new :class:`StoreData` holding utterances ``rows`` in that order (frames are copied)."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.repeat(self.offsets[rows] - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        frames = self.frames[torch.from_numpy(flat)].contiguous()
        return StoreData(path=self.path, provenance=self.provenance, frames=frames, offsets=offsets,
                         utt_ids=self.utt_ids[rows], labels=self.labels[rows], speakers=self.speakers[rows],
                         sessions=self.sessions[rows], transcripts=self.transcripts[rows], is_text=self.is_text)


def compute_utt_stats(frames: torch.Tensor, offsets: np.ndarray) -> UttStats:
    """Per-utterance statistics of ``frames`` [total, D] cut at ``offsets`` [N + 1].

    Chunks of about :data:`STATS_CHUNK_FRAMES` frames are converted to float32 once, then reduced one
    utterance at a time with torch (several times faster than ``numpy.add.reduceat`` on these shapes).
    """
    n = len(offsets) - 1
    d = int(frames.shape[1])
    count = np.diff(offsets)
    s = torch.empty((n, d), dtype=torch.float32)
    ss = torch.empty((n, d), dtype=torch.float32)
    mx = torch.empty((n, d), dtype=torch.float32)
    i = 0
    with torch.no_grad():
        while i < n:
            j = i + 1
            while j < n and offsets[j + 1] - offsets[i] <= STATS_CHUNK_FRAMES:
                j += 1
            a = int(offsets[i])
            x = frames[a:int(offsets[j])].float()
            for u in range(i, j):
                xu = x[int(offsets[u]) - a:int(offsets[u + 1]) - a]
                s[u] = xu.sum(0)
                ss[u] = (xu * xu).sum(0)
                mx[u] = xu.amax(0)
            i = j
    s64, ss64 = s.double().numpy(), ss.double().numpy()
    mean = (s64 / np.maximum(count, 1)[:, None]).astype(np.float32)
    return UttStats(count=count, sum=s64, sumsq=ss64, mean=mean, max=mx.numpy())


def find_nonfinite(frames: torch.Tensor, offsets: np.ndarray,
                   chunk_values: int = FINITE_CHUNK_VALUES) -> tuple[np.ndarray, int | None]:
    """Utterances whose frames hold NaN or ±Inf.

    ``frames`` [total_frames, D] float16/float32 (CPU) cut at ``offsets`` [N + 1]. The check reads the raw
    bits, ``chunk_values`` values at a time: a value is NaN/Inf exactly when its exponent bits are all ones,
    i.e. when ``bits << 1`` (the sign shifted out) is at least ``0xF800`` (float16) or ``0xFF000000``
    (float32), so a healthy chunk costs one shift and one ``max`` (about 0.1 s per GiB); only a chunk with
    a bad value is searched. Returns ``(utterances, first_row)``: int64 indices of the bad utterances
    (sorted) and the first bad frame row (``None`` when every value is finite).
    """
    arr = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    dims = max(1, int(arr.shape[1]))
    bits = _FLOAT_BITS.get(arr.dtype)
    if bits is None:  # another float dtype: the plain (slower) test
        rows = np.flatnonzero(~np.isfinite(arr).all(1))
        utts = np.unique(np.searchsorted(offsets, rows, side="right") - 1)
        return utts.astype(np.int64), (int(rows[0]) if len(rows) else None)
    utype, threshold = bits
    flat = np.ascontiguousarray(arr).reshape(-1).view(utype)
    chunk = max(dims, chunk_values)
    buf = np.empty(min(chunk, flat.size), utype)
    bad: list[np.ndarray] = []
    first: int | None = None
    for a in range(0, flat.size, chunk):
        b = buf[:min(chunk, flat.size - a)]
        np.left_shift(flat[a:a + chunk], 1, out=b)
        if b.max() < threshold:
            continue
        rows = np.unique((np.flatnonzero(b >= threshold) + a) // dims)
        if first is None:
            first = int(rows[0])
        bad.append(np.searchsorted(offsets, rows, side="right") - 1)
    return (np.unique(np.concatenate(bad)).astype(np.int64) if bad else np.zeros(0, np.int64)), first


def load_store(path: str | os.PathLike) -> StoreData:
    """Read a complete store into memory (one read of ``/data``); raises :class:`StoreError` naming the file.

    Refused: frames that are not float16/float32, an empty store, an utterance without frames, and frames
    holding NaN or ±Inf (the message names the first bad utterance and how many there are; see
    :func:`find_nonfinite`). ``ser-extract`` never writes such values, so a store holding them was altered
    or written by another tool: re-extract it.
    """
    path = Path(path)
    with FeatureStore(path) as fs:
        data = fs.load()
        if data.dtype not in (np.float16, np.float32):
            raise StoreError(f"{path}: frames are {data.dtype}, expected float16 or float32")
        if len(fs) == 0:
            raise StoreError(f"{path}: the store holds no utterance")
        lengths = np.diff(fs.offsets)
        if (lengths <= 0).any():
            bad = fs.utt_ids[np.flatnonzero(lengths <= 0)[0]]
            raise StoreError(f"{path}: utterance {bad!r} has no frames")
        frames = torch.from_numpy(np.ascontiguousarray(data))
        bad_utts, first_row = find_nonfinite(frames, fs.offsets)
        if len(bad_utts):
            u = int(bad_utts[0])
            who = (f"utterance {fs.utt_ids[u]!r} holds" if len(bad_utts) == 1 else
                   f"{len(bad_utts)} utterances hold")
            raise StoreError(
                f"{path}: {who} NaN/Inf frame values (first: utterance {fs.utt_ids[u]!r}, its frame "
                f"{first_row - int(fs.offsets[u])}, row {first_row} of /data); training on them would give NaN "
                f"scores: re-extract the store (ser-extract ... --overwrite) or leave those utterances out of "
                f"the manifest")
        return StoreData(path=path, provenance=dict(fs.provenance), frames=frames,
                         offsets=fs.offsets.copy(), utt_ids=fs.utt_ids.copy(), labels=fs.labels.copy(),
                         speakers=fs.speakers.copy(), sessions=fs.sessions.copy(),
                         transcripts=fs.transcripts.copy(), is_text=bool(fs.is_text))


@dataclass(eq=False)
class Inputs:
    """What a head trains on: an audio (or any single) store, optionally a row-aligned text store, targets.

    Attributes:
        audio: the main store (frames of the acoustic heads; the audio side of ``bimodal``).
        text: ``None`` or a text store whose row ``i`` is the same utterance as ``audio`` row ``i``.
        classes: class names; target ``c`` means ``classes[c]``.
        y: int64 [N] class index per row, ``-1`` for an unlabelled row (or a label outside ``classes``).
    """

    audio: StoreData
    text: StoreData | None
    classes: tuple[str, ...]
    y: np.ndarray

    @property
    def n(self) -> int:
        return self.audio.n

    @property
    def labelled(self) -> np.ndarray:
        """int64 indices of the rows with a known class."""
        return np.flatnonzero(self.y >= 0)

    @property
    def name(self) -> str:
        return self.audio.name if self.text is None else f"{self.audio.name}+{self.text.name}"

    @property
    def stores(self) -> list[StoreData]:
        return [self.audio] + ([self.text] if self.text is not None else [])


def encode_labels(labels: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """int64 [N]: index of each label in ``classes``; ``-1`` for ``""`` or a label not in ``classes``."""
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index.get(lab, -1) if lab else -1 for lab in labels], dtype=np.int64)


def align_text(audio: StoreData, text: StoreData, intersect: bool = False) -> tuple[StoreData, StoreData]:
    """Join an audio and a text store by ``utt_id``: returns ``(audio, text)`` with row ``i`` the same utterance.

    Refuses (``StoreError``) stores whose utterance ids differ unless ``intersect`` (then both keep only the
    shared ids), and stores that disagree on a shared utterance's label.
    """
    if not text.is_text and text.modality != "text":
        raise StoreError(f"{text.path}: not a text store (no /tokens, provenance modality "
                         f"{text.provenance.get('modality')!r})")
    a_ids, t_ids = set(audio.utt_ids.tolist()), set(text.utt_ids.tolist())
    if a_ids != t_ids:
        only_a, only_t = sorted(a_ids - t_ids), sorted(t_ids - a_ids)
        if not intersect:
            raise StoreError(
                f"{audio.path} and {text.path} hold different utterances: {len(only_a)} only in the audio store "
                f"{only_a[:3]}, {len(only_t)} only in the text store {only_t[:3]}; extract both from the same "
                f"manifest, or join on the shared ids with --intersect")
        keep = np.array([u in t_ids for u in audio.utt_ids])
        if not keep.any():
            raise StoreError(f"{audio.path} and {text.path} share no utterance id")
        if not keep.all():
            audio = audio.take(np.flatnonzero(keep))
    t_index = {u: i for i, u in enumerate(text.utt_ids)}
    order = np.array([t_index[u] for u in audio.utt_ids], dtype=np.int64)
    if not np.array_equal(order, np.arange(text.n)):
        text = text.take(order)
    diff = np.flatnonzero(audio.labels != text.labels)
    if len(diff):
        i = diff[0]
        raise StoreError(f"{audio.path} and {text.path} disagree on the label of {len(diff)} utterances, e.g. "
                         f"{audio.utt_ids[i]!r}: {audio.labels[i]!r} vs {text.labels[i]!r}")
    return audio, text


def make_inputs(audio: StoreData, text: StoreData | None = None, classes: Sequence[str] | None = None,
                intersect: bool = False) -> Inputs:
    """Targets for ``audio`` (and the aligned ``text``): classes from :func:`class_order` over labelled rows."""
    if text is not None:
        audio, text = align_text(audio, text, intersect=intersect)
    if classes is None:
        labelled = [lab for lab in audio.labels if lab]
        if not labelled:
            raise StoreError(f"{audio.path}: no labelled utterance (every label is empty)")
        classes = class_order(labelled)
    classes = tuple(classes)
    return Inputs(audio=audio, text=text, classes=classes, y=encode_labels(audio.labels, classes))


def check_classes(inputs: Inputs, what: str = "cross-validate") -> None:
    """Refuse (``ValueError``) inputs whose labelled rows hold fewer than two classes.

    ``what`` names the refused action in the message (``cross-validate``, ``fit a model``). A classifier of
    one class scores 100 % without learning anything, so no number is reported from such a store.
    """
    path = inputs.audio.path
    lab = inputs.labelled
    other = sorted({str(x) for x in inputs.audio.labels[inputs.y < 0] if x})
    outside = (f"; {int(sum(1 for x in inputs.audio.labels if x and x not in inputs.classes))} utterances carry "
               f"labels outside the classes ({', '.join(other[:5])})") if other else ""
    if len(lab) == 0:
        raise ValueError(f"{path}: no labelled utterance to {what} on{outside}; label some utterances first")
    present = np.unique(inputs.y[lab])
    if len(present) < 2:
        only = inputs.classes[int(present[0])]
        raise ValueError(f"{path}: every labelled utterance ({len(lab)}) is {only!r}: cannot {what} with fewer "
                         f"than two classes{outside}; label utterances of at least one other class")


def corpus_name(store: StoreData) -> str:
    """The corpus a store's utterances come from: its provenance's ``corpus``, else its manifest's file stem,
    else the name of the folder holding the store."""
    prov = store.provenance
    if prov.get("corpus"):
        return str(prov["corpus"])
    if prov.get("manifest"):
        return Path(str(prov["manifest"])).stem
    return store.path.parent.name or store.path.stem


def combine_stores(stores: Sequence[StoreData]) -> StoreData:
    """Several stores of the same features (e.g. one per corpus) as one: rows of ``stores[0]`` first.

    Refuses (``StoreError``) stores whose :class:`~ser_common.identity.FeatureIdentity` differs in the
    ``features`` scope (encoder weights, layer, crop, dims, …; the manifests of course differ). Each row keeps
    its corpus (:func:`corpus_name`) as a prefix ``<corpus>/`` of its utt_id, speaker and session, so ids
    cannot collide and speaker-independent folds never mix two corpora's speakers or sessions. Frames of
    float16 and float32 stores are joined as float32.
    """
    from ser_common.identity import FeatureIdentity, format_diff

    stores = list(stores)
    if len(stores) == 1:
        return stores[0]
    ref = FeatureIdentity.from_provenance(stores[0].provenance)
    for s in stores[1:]:
        diff = ref.diff(FeatureIdentity.from_provenance(s.provenance), scope="features")
        if diff:
            raise StoreError(f"{s.path}: cannot be combined with {stores[0].path}: other features "
                             f"({format_diff(diff, stores[0].path.name, s.path.name)}); repeat --store only with "
                             f"stores of one feature set extracted from several corpora")
    names = [corpus_name(s) for s in stores]
    for i, n in enumerate(names):
        if names.count(n) > 1:
            names[i] = f"{n}{i + 1}"
    dtype = stores[0].frames.dtype if all(s.frames.dtype == stores[0].frames.dtype for s in stores) else torch.float32
    frames = torch.cat([s.frames.to(dtype) for s in stores]).contiguous()
    offsets = np.concatenate([[0], np.cumsum(np.concatenate([s.lengths for s in stores]))]).astype(np.int64)

    def prefixed(attr: str) -> np.ndarray:
        return np.concatenate([np.array([f"{n}/{v}" for v in getattr(s, attr)], dtype=object)
                               for n, s in zip(names, stores)])

    def joined(attr: str) -> np.ndarray:
        return np.concatenate([getattr(s, attr) for s in stores]).astype(object)

    prov = {**stores[0].provenance, "combined_from": [str(s.path) for s in stores], "corpora": names,
            "manifest_sha256": None, "manifest": None}
    path = stores[0].path.with_name(f"{stores[0].path.stem}+{'+'.join(names)}.h5")
    return StoreData(path=path, provenance=prov, frames=frames, offsets=offsets, utt_ids=prefixed("utt_ids"),
                     labels=joined("labels"), speakers=prefixed("speakers"), sessions=prefixed("sessions"),
                     transcripts=joined("transcripts"), is_text=stores[0].is_text)
