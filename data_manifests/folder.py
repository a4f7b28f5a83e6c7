"""A folder of audio as an unlabelled pool (for a labelling team), optionally with labels from a CSV.

Every ``.wav``/``.flac`` under ``ROOT`` (recursively) becomes a record with ``label`` ``None``; ``utt_id`` is
the path relative to ``ROOT`` without its suffix (``spk1/clip_003``; ``a.wav`` next to ``a.flac`` is an error).
The speaker comes from the parent folder's name, the file-name prefix, or nowhere; with at least ``n_groups``
speakers the ``session`` column holds balanced speaker groups ``g1..gN``, otherwise ``pool``.

A labels CSV has a header with ``label`` and either ``utt_id`` (as above) or ``filename`` (the path relative
to ``ROOT``, or just the file name when that is unique); every row must name exactly one audio file.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
import warnings
from collections import Counter
from pathlib import Path

from ser_common.labels import known_labels
from ser_common.manifest import ManifestRecord

from .audio_files import audio_duration, list_audio
from .problems import CorpusError, CorpusWarning, fail_or_skip, listing
from .speaker_sessions import assign_speaker_groups

SPEAKER_SOURCES = ("folder", "filename-prefix", "none")
"""Where a pool's speaker ids come from: the parent folder's name, the file name before its first ``_`` or
``-``, or nowhere (every record gets speaker ``unknown``)."""

UNLABELLED_SESSION = "pool"
PREFIX = re.compile(r"[^_-]+")


def speaker_from_path(path: Path, source: str) -> str:
    """The speaker id of ``path`` under ``source`` (one of :data:`SPEAKER_SOURCES`)."""
    if source == "folder":
        return path.parent.name
    if source == "filename-prefix":
        m = PREFIX.match(path.stem)
        return m[0] if m else path.stem
    if source == "none":
        return "unknown"
    raise ValueError(f"unknown speaker source {source!r}; choose one of {SPEAKER_SOURCES}")


def read_labels_csv(path: str | os.PathLike, records: list[ManifestRecord], root: Path,
                    corpus: str) -> dict[str, str]:
    """``utt_id -> label`` from a labels CSV, matched against ``records`` (see the module docstring).

    Raises :class:`CorpusError` naming the CSV for a missing column, empty labels, a row that matches no file
    or several, duplicate rows, and labels outside the label set of a known ``corpus``.
    """
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: labels CSV not found")
    by_id = {r.utt_id: r.utt_id for r in records}
    rel = {Path(r.audio).relative_to(root).as_posix(): r.utt_id for r in records}
    names = Counter(Path(r.audio).name for r in records)
    base = {Path(r.audio).name: r.utt_id for r in records if names[Path(r.audio).name] == 1}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        key_col = "utt_id" if "utt_id" in header else "filename" if "filename" in header else None
        if key_col is None or "label" not in header:
            raise CorpusError(f"{path}: header must have 'label' and 'utt_id' or 'filename' columns, found {header}")
        reader.fieldnames = header
        rows = [(lineno, (row.get(key_col) or "").strip(), (row.get("label") or "").strip())
                for lineno, row in enumerate(reader, 2)]
    known = known_labels(corpus)
    problems: list[str] = []
    labels: dict[str, str] = {}
    for lineno, key, label in rows:
        if not key:
            problems.append(f"line {lineno}: empty {key_col}")
            continue
        if key_col == "utt_id":
            uid = by_id.get(key)
        else:
            uid = rel.get(key.replace("\\", "/")) or base.get(key)
            if uid is None and names.get(key, 0) > 1:
                problems.append(f"line {lineno}: file name {key!r} is ambiguous ({names[key]} files); "
                                "give the path relative to the folder")
                continue
        if uid is None:
            problems.append(f"line {lineno}: {key_col} {key!r} matches no audio file under {root}")
        elif not label:
            problems.append(f"line {lineno}: empty label for {key!r}")
        elif known and label not in known:
            problems.append(f"line {lineno}: label {label!r} not in the {corpus} label set {sorted(known)}")
        elif uid in labels:
            problems.append(f"line {lineno}: {key!r} labelled twice")
        else:
            labels[uid] = label
    if problems:
        raise CorpusError(f"{path}: {len(problems)} invalid row(s):" + listing(problems))
    return labels


def build_folder(root: str | os.PathLike, *, corpus: str | None = None, speaker_from: str = "folder",
                 labels_csv: str | os.PathLike | None = None, n_groups: int = 5,
                 skip_invalid: bool = False) -> list[ManifestRecord]:
    """Records for every audio file under ``root``, sorted by ``utt_id``; unlabelled unless ``labels_csv``.

    ``corpus`` defaults to the folder's name; ``speaker_from`` is one of :data:`SPEAKER_SOURCES`; ``duration``
    is in seconds. Raises :class:`CorpusError` for an empty folder, duplicate ids (``a.wav`` next to
    ``a.flac``), unreadable or empty audio (``skip_invalid``: warn and leave out) and invalid CSV rows.
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: folder not found")
    if speaker_from not in SPEAKER_SOURCES:
        raise ValueError(f"unknown speaker source {speaker_from!r}; choose one of {SPEAKER_SOURCES}")
    corpus = corpus or root.resolve().name
    files = list_audio(root, recursive=True)
    if not files:
        raise CorpusError(f"{root}: no .wav or .flac files found")
    ids = Counter(f.relative_to(root).with_suffix("").as_posix() for f in files)
    dups = [f"{uid} (x{n})" for uid, n in sorted(ids.items()) if n > 1]
    if dups:
        raise CorpusError(f"{root}: {len(dups)} file(s) differ only in their suffix (.wav/.flac):" + listing(dups))

    records: list[ManifestRecord] = []
    unreadable: list[str] = []
    for f in files:
        try:
            duration = audio_duration(f)
        except ValueError as e:
            unreadable.append(str(e))
            continue
        records.append(ManifestRecord(
            utt_id=f.relative_to(root).with_suffix("").as_posix(), audio=str(f), corpus=corpus,
            speaker=speaker_from_path(f, speaker_from), session=UNLABELLED_SESSION, duration=duration))
    fail_or_skip(unreadable, "unreadable or empty audio file(s)", root, skip_invalid,
                 "Fix or remove them, or pass skip_invalid=True (CLI: --skip-invalid) to leave them out.")
    if not records:
        raise CorpusError(f"{root}: no readable audio files")
    records.sort(key=lambda r: r.utt_id)

    if labels_csv is not None:
        labels = read_labels_csv(labels_csv, records, root, corpus)
        unlabelled = sum(r.utt_id not in labels for r in records)
        if unlabelled:
            warnings.warn(f"{labels_csv}: {unlabelled} of {len(records)} audio file(s) have no row; left unlabelled",
                          CorpusWarning, stacklevel=2)
        records = [dataclasses.replace(r, label=labels.get(r.utt_id)) for r in records]

    if len({r.speaker for r in records}) >= n_groups:
        records = assign_speaker_groups(records, n_groups)
    return records
