"""Manifest records: one typed record per utterance, serialised as JSON Lines (lhotse style).

A manifest is the only thing that flows from ``data_manifests`` to ``extract``; the fields that training
needs (label, speaker, session, duration, transcript) are copied from it into every feature store.

Example line::

    {"utt_id": "03a01Fa", "audio": "/data/emodb/wav/03a01Fa.flac", "corpus": "emodb", "speaker": "03",
     "session": "g2", "label": "happy", "transcript": "Der Lappen liegt auf dem Eisschrank.", "duration": 1.9}
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .labels import known_labels
from .listing import indented
from .provenance import sha256_file


class ManifestError(ValueError):
    """A manifest that cannot be used: the message names the file and lists the offending lines."""


@dataclass(frozen=True)
class ManifestRecord:
    """One utterance.

    Attributes:
        utt_id: unique id within the manifest (also the key in every feature store).
        audio: path of the audio file (wav/flac, any sample rate), or ``None`` for a text-only record (a
            transcript table without audio); such a line has no ``audio`` field.
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
    audio: str | None
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
        """A record from one parsed manifest line, type-checked field by field.

        Accepted types: ``utt_id`` a non-empty string without NUL, newline or carriage return; ``audio``
        a string, or the field left out for a text-only record (``None``; ``null`` is refused); ``corpus`` a
        string; ``speaker`` and ``session`` strings (ints are turned into strings);
        ``label`` and ``transcript`` strings or ``null`` (``label: ""`` counts as unlabelled);
        ``duration``, ``start`` and ``end`` numbers of seconds (not booleans, not quoted), finite and
        non-negative, with ``start < end`` (``end > 0`` when only ``end`` is given); ``extra`` an object.

        Raises:
            ValueError: unknown or missing fields, or values of the wrong type/range; the message lists
                every problem of the record and how to write the field instead.
        """
        if not isinstance(d, dict):
            raise ValueError(f"not a JSON object but {_json_type(d)}; each line must be one record "
                             '{"utt_id": ..., "audio": ..., "corpus": ..., "speaker": ..., "session": ...}')
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown fields {sorted(map(str, unknown))}")
        missing = {"utt_id", "corpus", "speaker", "session"} - set(d)
        if missing:
            raise ValueError(f"missing fields {sorted(missing)}")
        d = dict(d)
        problems: list[str] = []
        for key in ("utt_id", "audio", "corpus", "speaker", "session"):
            if key in d:
                d[key] = _check_id(key, d[key], problems)
        d.setdefault("audio", None)  # no audio field: a text-only record
        for key in ("label", "transcript"):
            d[key] = _check_text(key, d.get(key), problems)
        if d.get("label") == "":
            d["label"] = None
        for key in ("duration", "start", "end"):
            d[key] = _check_seconds(key, d.get(key), problems)
        start, end = d.get("start"), d.get("end")
        bounds_ok = not any(p.startswith(("start ", "end ")) for p in problems)
        if bounds_ok and end is not None and (start if start is not None else 0.0) >= end:
            problems.append(f"start ({start if start is not None else 0:g} s) must be before end ({end:g} s); "
                            "drop end to read to the end of the file, or fix the segment bounds")
        extra = d.get("extra", {})
        if not isinstance(extra, dict):
            problems.append(f"extra must be an object {{...}}, got {_json_type(extra)}; "
                            "use {} or leave the field out")
        if problems:
            raise ValueError("; ".join(problems))
        return cls(**d)


def _json_type(v: Any) -> str:
    """How a JSON value reads in an error: ``string '1.5'``, ``number 3``, ``true``, ``null``, ``list``."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f"string {v[:40]!r}"
    if isinstance(v, (int, float)):
        return f"number {v!r}"
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _encodable(key: str, s: str, problems: list[str]) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        problems.append(f"{key} contains a lone surrogate escape (\\ud800-\\udfff), which is not text; "
                        "write the character itself, UTF-8 encoded")
        return False
    return True


def _check_id(key: str, v: Any, problems: list[str]) -> Any:
    """``utt_id``/``audio``/``corpus``: strings; ``speaker``/``session``: strings or ints (-> strings)."""
    if key in ("speaker", "session") and isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if not isinstance(v, str):
        allowed = "a string or an integer" if key in ("speaker", "session") else "a string"
        alone = " (or leave the field out for a text-only record)" if key == "audio" else ""
        problems.append(f"{key} must be {allowed}, got {_json_type(v)}; write it as \"{key}\": \"...\"{alone}")
        return v
    if not _encodable(key, v, problems):
        return v
    if key == "utt_id":
        if not v.strip():
            problems.append('utt_id is empty; give every utterance a unique non-empty id ("utt_id": "spk1_0001")')
        bad = [name for ch, name in (("\0", "NUL"), ("\n", "newline"), ("\r", "carriage return")) if ch in v]
        if bad:
            problems.append(f"utt_id {v[:40]!r} contains {' and '.join(bad)} character(s); ids are one line of "
                            "text: remove them")
    elif "\0" in v:
        problems.append(f"{key} {v[:40]!r} contains a NUL character; remove it")
    return v


def _check_text(key: str, v: Any, problems: list[str]) -> Any:
    """``label``/``transcript``: a string or ``null``."""
    if v is None or (isinstance(v, str) and _encodable(key, v, problems)):
        return v
    if not isinstance(v, str):
        problems.append(f"{key} must be a string or null, got {_json_type(v)}; write it as \"{key}\": \"...\" "
                        "or leave it out")
    return v


def _is_number(s: str) -> bool:
    try:
        return math.isfinite(float(s))
    except ValueError:
        return False


def _check_seconds(key: str, v: Any, problems: list[str]) -> float | None:
    """``duration``/``start``/``end``: ``null`` or a finite, non-negative number of seconds (-> float)."""
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        fix = (f"write it without quotes (\"{key}\": {v.strip()})" if isinstance(v, str) and _is_number(v)
               else "give a number of seconds, e.g. 1.5, or leave the field out")
        problems.append(f"{key} must be a number of seconds, got {_json_type(v)}; {fix}")
        return v
    try:
        x = float(v)
    except OverflowError:
        x = math.inf
    if not math.isfinite(x) or x < 0:
        fix = ("segments start at 0 or later (a negative start would read the end of the file)" if key == "start"
               else "fix the value or leave the field out")
        problems.append(f"{key} must be a finite, non-negative number of seconds, got {str(v)[:40]}; {fix}")
        return v
    return x


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


def validate_records(records: list[ManifestRecord], source: str = "<records>", check_audio: bool = True) -> None:
    """Raise :class:`ManifestError` listing every duplicate id, unknown label or missing audio file.

    With ``check_audio``, a text-only record (``audio`` ``None``) is listed as a record without audio.
    """
    problems: list[str] = []
    counts = Counter(r.utt_id for r in records)
    dups = sorted(k for k, n in counts.items() if n > 1)
    if dups:
        problems.append(f"{len(dups)} duplicate utt_id(s):" + indented([f"{d} (x{counts[d]})" for d in dups]))
    bad_labels = []
    for r in records:
        known = known_labels(r.corpus)
        if r.label is not None and known and r.label not in known:
            bad_labels.append(f"{r.utt_id}: label {r.label!r} not in {sorted(known)}")
    if bad_labels:
        problems.append(f"{len(bad_labels)} unknown label(s):" + indented(bad_labels))
    if check_audio:
        no_audio = [r.utt_id for r in records if r.audio is None]
        if no_audio:
            problems.append(f"{len(no_audio)} record(s) without audio (text-only):" + indented(no_audio))
        missing = [f"{r.utt_id}: {r.audio}" for r in records if r.audio is not None and not os.path.isfile(r.audio)]
        if missing:
            problems.append(f"{len(missing)} missing audio file(s):" + indented(missing))
    if problems:
        raise ManifestError(f"{source}: " + "\n".join(problems))


def read_manifest(path: str | os.PathLike, check_audio: bool = True) -> list[ManifestRecord]:
    """Read and validate a JSONL manifest.

    Raises :class:`ManifestError` naming the file and the offending lines for bytes that are not UTF-8,
    malformed JSON, lines that are not JSON objects, unknown or missing fields, values of the wrong type or
    range (see :meth:`ManifestRecord.from_dict`), duplicate ids, labels the corpus does not know, and
    (``check_audio``) audio files that do not exist and text-only records (no ``audio`` field).
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    records: list[ManifestRecord] = []
    malformed: list[str] = []
    # surrogateescape: bytes that are not UTF-8 become lone surrogates, reported per line below
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for lineno, line in enumerate(f, 1):
            if lineno == 1:
                line = line.removeprefix("\ufeff")  # a UTF-8 byte-order mark (Windows editors)
            if not line.strip():
                continue
            try:
                line.encode("utf-8")
            except UnicodeEncodeError as e:
                byte = ord(line[e.start]) - 0xDC00
                malformed.append(f"line {lineno}: not UTF-8 text (byte 0x{byte:02x} at character {e.start + 1}); "
                                 "save the manifest as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)")
                continue
            try:
                records.append(ManifestRecord.from_dict(json.loads(line)))
            except (ValueError, TypeError, RecursionError) as e:  # JSONDecodeError is a ValueError
                malformed.append(f"line {lineno}: {e}")
    if malformed:
        raise ManifestError(f"{path}: {len(malformed)} malformed line(s):" + indented(malformed)
                            + "\nfix these lines (one JSON object per line, one record each) and run again")
    if not records:
        raise ManifestError(f"{path}: manifest is empty")
    validate_records(records, str(path), check_audio=check_audio)
    return records


def manifest_sha256(path: str | os.PathLike) -> str:
    """sha256 of the manifest file's bytes (recorded in every store built from it)."""
    return sha256_file(path)

