"""Manifest records: one typed record per utterance, serialised as JSON Lines (lhotse style).

A manifest is the only thing that flows from ``data_manifests`` to ``extract``; the fields that training
needs (label, speaker, session, duration, transcript) are copied from it into every feature store.

Example line::

    {"utt_id": "03a01Fa", "audio": "/data/emodb/wav/03a01Fa.flac", "corpus": "emodb", "speaker": "03",
     "session": "g2", "label": "happy", "transcript": "Der Lappen liegt auf dem Eisschrank.", "duration": 1.9}
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .labels import known_labels


class ManifestError(ValueError):
    """A manifest that cannot be used: the message names the file and lists the offending lines."""


@dataclass(frozen=True)
class ManifestRecord:
    """One utterance.

    Attributes:
        utt_id: unique id within the manifest (also the key in every feature store).
        audio: path of the audio file (wav/flac, any sample rate).
        corpus: corpus name (``iemocap``, ``emodb``, ``ravdess``, ``crema-d`` or a user's own).
        speaker: speaker id, unique across the corpus (e.g. ``Ses01F``).
        session: the fold group: the IEMOCAP session, or a speaker group for corpora without sessions.
        label: readable label name (``neutral`` …), or ``None`` for an unlabelled pool.
        transcript: what is said, if known.
        duration: length of the (segment of the) audio file in seconds, if known.
        start, end: optional segment of the file in seconds (``None`` = whole file).
        extra: free-form corpus-specific fields (e.g. IEMOCAP's ``dialog`` and ``scripted``).
    """

    utt_id: str
    audio: str
    corpus: str
    speaker: str
    session: str
    label: str | None = None
    transcript: str | None = None
    duration: float | None = None
    start: float | None = None
    end: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, leaving out empty optional fields."""
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if not (v is None or (k == "extra" and not v))}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ManifestRecord":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        missing = {"utt_id", "audio", "corpus", "speaker", "session"} - set(d)
        if missing:
            raise ValueError(f"missing fields {sorted(missing)}")
        d = dict(d)
        if d.get("label") == "":
            d["label"] = None
        for key in ("utt_id", "speaker", "session", "corpus", "audio"):
            d[key] = str(d[key])
        return cls(**d)


def write_manifest(records: Iterable[ManifestRecord], path: str | os.PathLike) -> Path:
    """Write records as JSON Lines (atomically: a temporary file renamed into place). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def _offenders(items: list[str], limit: int = 10) -> str:
    shown = "\n  ".join(items[:limit])
    more = f"\n  … and {len(items) - limit} more" if len(items) > limit else ""
    return f"\n  {shown}{more}"


def validate_records(records: list[ManifestRecord], source: str = "<records>", check_audio: bool = True) -> None:
    """Raise :class:`ManifestError` listing every duplicate id, unknown label or missing audio file."""
    problems: list[str] = []
    counts = Counter(r.utt_id for r in records)
    dups = sorted(k for k, n in counts.items() if n > 1)
    if dups:
        problems.append(f"{len(dups)} duplicate utt_id(s):" + _offenders([f"{d} (x{counts[d]})" for d in dups]))
    bad_labels = []
    for r in records:
        known = known_labels(r.corpus)
        if r.label is not None and known and r.label not in known:
            bad_labels.append(f"{r.utt_id}: label {r.label!r} not in {sorted(known)}")
    if bad_labels:
        problems.append(f"{len(bad_labels)} unknown label(s):" + _offenders(bad_labels))
    if check_audio:
        missing = [f"{r.utt_id}: {r.audio}" for r in records if not os.path.isfile(r.audio)]
        if missing:
            problems.append(f"{len(missing)} missing audio file(s):" + _offenders(missing))
    if problems:
        raise ManifestError(f"{source}: " + "\n".join(problems))


def read_manifest(path: str | os.PathLike, check_audio: bool = True) -> list[ManifestRecord]:
    """Read and validate a JSONL manifest.

    Raises :class:`ManifestError` naming the file and the offending lines for malformed JSON, unknown fields,
    duplicate ids, labels the corpus does not know, and (``check_audio``) audio files that do not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    records: list[ManifestRecord] = []
    malformed: list[str] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(ManifestRecord.from_dict(json.loads(line)))
            except (ValueError, TypeError) as e:
                malformed.append(f"line {lineno}: {e}")
    if malformed:
        raise ManifestError(f"{path}: {len(malformed)} malformed line(s):" + _offenders(malformed))
    if not records:
        raise ManifestError(f"{path}: manifest is empty")
    validate_records(records, str(path), check_audio=check_audio)
    return records


def manifest_sha256(path: str | os.PathLike) -> str:
    """sha256 of the manifest file's bytes (recorded in every store built from it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def summarize(records: list[ManifestRecord]) -> dict[str, dict[str, int]]:
    """Counts per label and per session (the table ``ser-manifest`` prints)."""
    return {
        "label": dict(sorted(Counter(r.label or "<unlabelled>" for r in records).items())),
        "session": dict(sorted(Counter(r.session for r in records).items())),
        "speaker": dict(sorted(Counter(r.speaker for r in records).items())),
    }
