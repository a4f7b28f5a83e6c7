"""A folder of audio: a labelling team's unlabelled pool, or a corpus nobody here prepared.

Every ``.wav``/``.flac`` under ``ROOT`` (recursively, any sample rate) becomes a record; ``utt_id`` is the path
relative to ``ROOT`` without its suffix (``angry/spk03_take2``; ``a.wav`` next to ``a.flac`` is an error).

Labels (``label_from``, :data:`LABEL_SOURCES`): none (an unlabelled pool, the default), the parent folder's
name (``ROOT/angry/spk03_take2.wav`` -> ``angry``), or a labels CSV (``labels_csv``). A labels CSV has a
header with ``label`` and either ``utt_id`` (as above) or ``filename`` (the path relative to ``ROOT``, or just
the file name when that is unique); every row must name exactly one audio file. Every label is normalised
(stripped, lower-cased; ``keep_label_case`` keeps the case) and, with a ``label_map`` (``joy=happy,…``),
mapped onto the toolkit's names; a label the given map lacks is an error (see :mod:`.label_names`).

Speakers: the parent folder's name (the default), the file name before its first ``_`` or ``-``, nowhere
(``unknown``), or ``speaker_regex``: a regular expression with a named group ``speaker`` searched in the
file name (``^(?P<speaker>[^_]+)_`` reads ``spk03`` from ``spk03_take2.wav``); a file it does not match is an
error, never given a default speaker. With at least ``n_groups`` speakers the ``session`` column holds
balanced speaker groups ``g1..gN`` (:func:`ser_common.folds.speaker_groups`), otherwise ``pool``.

With labels, the groups are checked (:mod:`.fold_check`): when speakers and labels are confounded (e.g. a
folder per emotion with the folder as the speaker) a :class:`~.problems.FoldWarning` says so.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Mapping

from ser_common.labels import known_labels
from ser_common.listing import indented
from ser_common.manifest import ManifestRecord

from .audio_files import list_audio, read_durations
from .fold_check import SPEAKER_REGEX_EXAMPLE, warn_fold_problems
from .label_names import LabelNames, NotInLabelMap, label_names_from, note_own_classes
from .problems import CorpusError, CorpusWarning, fail_or_skip
from .speaker_sessions import assign_speaker_groups

SPEAKER_SOURCES = ("folder", "filename-prefix", "none")
"""Where a pool's speaker ids come from: the parent folder's name, the file name before its first ``_`` or
``-``, or nowhere (every record gets speaker ``unknown``)."""

LABEL_SOURCES = ("none", "folder", "csv")
"""Where a folder's labels come from: nowhere (an unlabelled pool; the default without a labels CSV), the
parent folder's name (``ROOT/angry/spk03_take2.wav`` -> ``angry``), or a labels CSV (the default with one)."""

UNLABELLED_SESSION = "pool"
PREFIX = re.compile(r"[^_-]+")
SKIP_HINT = "or pass skip_invalid=True (CLI: --skip-invalid) to leave them out."


def compile_speaker_regex(pattern: str | re.Pattern[str]) -> re.Pattern[str]:
    """``pattern`` compiled; raises ``ValueError`` (with the fix) when it is invalid or lacks a group ``speaker``."""
    if isinstance(pattern, re.Pattern):
        regex = pattern
    else:
        try:
            regex = re.compile(pattern)
        except re.error as e:
            raise ValueError(f"--speaker-regex {pattern!r} is not a valid regular expression ({e})") from None
    if "speaker" not in regex.groupindex:
        raise ValueError(f"--speaker-regex {regex.pattern!r} has no named group 'speaker'; write the speaker part "
                         f"as (?P<speaker>...), e.g. '{SPEAKER_REGEX_EXAMPLE}' for names like spk03_take2.wav")
    return regex


def speaker_from_regex(path: Path, regex: re.Pattern[str]) -> str | None:
    """The ``speaker`` group of ``regex`` searched in ``path``'s file name, or ``None`` (no match, or empty)."""
    m = regex.search(path.name)
    return (m["speaker"] or None) if m else None


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
                    corpus: str, label_names: LabelNames | None = None) -> dict[str, str]:
    """``utt_id -> label`` from a labels CSV, matched against ``records`` (see the module docstring).

    Labels are normalised and mapped by ``label_names`` (default: stripped and lower-cased). Raises
    :class:`CorpusError` naming the CSV for a missing column, empty labels, a row that matches no file or
    several, duplicate rows, labels absent from a given label map, and labels outside the label set of a
    known ``corpus``.
    """
    label_names = label_names or LabelNames()
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
        rows = [(lineno, (row.get(key_col) or "").strip(), row.get("label") or "")
                for lineno, row in enumerate(reader, 2)]
    known = known_labels(corpus)
    problems: list[str] = []
    labels: dict[str, str] = {}
    for lineno, key, raw_label in rows:
        try:
            label = label_names(raw_label)
        except NotInLabelMap as e:
            label = None
            not_in_map = str(e)
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
        elif label is None:
            problems.append(f"line {lineno}: {not_in_map} ({key!r}); add it to the map or remove the row")
        elif not label:
            problems.append(f"line {lineno}: empty label for {key!r}")
        elif known and label not in known:
            problems.append(f"line {lineno}: label {label!r} not in the {corpus} label set {sorted(known)}")
        elif uid in labels:
            problems.append(f"line {lineno}: {key!r} labelled twice")
        else:
            labels[uid] = label
    if problems:
        raise CorpusError(f"{path}: {len(problems)} invalid row(s):" + indented(problems))
    return labels


def build_folder(root: str | os.PathLike, *, corpus: str | None = None, speaker_from: str | None = None,
                 speaker_regex: str | re.Pattern[str] | None = None, label_from: str | None = None,
                 labels_csv: str | os.PathLike | None = None, label_map: str | Mapping[str, str] | None = None,
                 keep_label_case: bool = False, n_groups: int = 5,
                 skip_invalid: bool = False) -> list[ManifestRecord]:
    """Records for every audio file under ``root``, sorted by ``utt_id`` (see the module docstring).

    ``corpus`` defaults to the folder's name. ``speaker_from`` is one of :data:`SPEAKER_SOURCES` (default
    ``folder``), or give ``speaker_regex`` instead. ``label_from`` is one of :data:`LABEL_SOURCES` (default:
    ``csv`` with ``labels_csv``, else ``none``). ``label_map`` (``"joy=happy,…"`` or a dict) maps normalised
    labels onto the toolkit's names. ``duration`` is in seconds.

    Raises ``ValueError`` for contradictory options and :class:`CorpusError` for an empty folder, duplicate
    ids (``a.wav`` next to ``a.flac``), file names ``speaker_regex`` does not match, files outside a label
    folder (``label_from="folder"``), labels absent from ``label_map``, unreadable or empty audio (for these
    four, ``skip_invalid``: warn and leave out) and invalid CSV rows. Warns (:class:`FoldWarning`) when the
    fold groups confound speakers and labels.
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: folder not found")
    if speaker_regex is not None and speaker_from is not None:
        raise ValueError("speaker_from and speaker_regex are alternatives; give one (CLI: --speaker-from or "
                         "--speaker-regex)")
    regex = compile_speaker_regex(speaker_regex) if speaker_regex is not None else None
    speaker_from = speaker_from or "folder"
    if speaker_from not in SPEAKER_SOURCES:
        raise ValueError(f"unknown speaker source {speaker_from!r}; choose one of {SPEAKER_SOURCES}")
    label_from = label_from or ("csv" if labels_csv is not None else "none")
    if label_from not in LABEL_SOURCES:
        raise ValueError(f"unknown label source {label_from!r}; choose one of {LABEL_SOURCES}")
    if (label_from == "csv") != (labels_csv is not None):
        raise ValueError("labels_csv (CLI: --labels-csv) goes with label_from='csv' (the default with a labels "
                         f"CSV), not with label_from={label_from!r}" if labels_csv is not None else
                         "label_from='csv' needs labels_csv (CLI: --labels-csv FILE)")
    if label_map is not None and label_from == "none":
        raise ValueError("a label map (CLI: --label-map) needs labels: --label-from folder or --labels-csv FILE")
    names = label_names_from(label_map, keep_label_case)
    corpus = corpus or root.resolve().name
    files = list_audio(root, recursive=True)
    if not files:
        raise CorpusError(f"{root}: no .wav or .flac files found")
    ids = Counter(f.relative_to(root).with_suffix("").as_posix() for f in files)
    dups = [f"{uid} (x{n})" for uid, n in sorted(ids.items()) if n > 1]
    if dups:
        raise CorpusError(f"{root}: {len(dups)} file(s) differ only in their suffix (.wav/.flac):" + indented(dups))

    speakers: dict[Path, str] = {}
    unmatched: list[str] = []
    for f in files:
        speaker = speaker_from_regex(f, regex) if regex is not None else speaker_from_path(f, speaker_from)
        if speaker is None:
            unmatched.append(f.relative_to(root).as_posix())
        else:
            speakers[f] = speaker
    if regex is not None:
        fail_or_skip(unmatched, f"file name(s) not matched by --speaker-regex {regex.pattern!r}", root,
                     skip_invalid, "A file's speaker is never guessed. Rename these files so that their names carry "
                     "the speaker, or change the regex (it is searched in the file name with its suffix, e.g. "
                     "'spk03_take2.wav', not in the folders, and its group (?P<speaker>...) must match a non-empty "
                     "code), " + SKIP_HINT)
    files = [f for f in files if f in speakers]

    labels: dict[Path, str] = {}
    if label_from == "folder":
        outside = [f.relative_to(root).as_posix() for f in files if f.parent == root]
        fail_or_skip(outside, "file(s) directly in the folder, outside a label folder", root, skip_invalid,
                     "With --label-from folder a file's label is the name of the folder it is in "
                     "(ROOT/angry/spk03_take2.wav -> angry): move these files into a folder named after their "
                     "label, " + SKIP_HINT)
        files = [f for f in files if f.parent != root]
        absent: dict[str, list[str]] = {}
        for f in files:
            try:
                labels[f] = names(f.parent.name)
            except NotInLabelMap as e:
                absent.setdefault(e.name, []).append(f.relative_to(root).as_posix())
        fail_or_skip([f"{name!r}: {len(paths)} file(s), e.g. {paths[0]}" for name, paths in sorted(absent.items())],
                     "folder label(s) not in --label-map", root, skip_invalid,
                     names.missing_fix(sorted(absent)))
        files = [f for f in files if f in labels]

    durations, unreadable = read_durations(files)
    records = [ManifestRecord(utt_id=f.relative_to(root).with_suffix("").as_posix(), audio=str(f), corpus=corpus,
                              speaker=speakers[f], session=UNLABELLED_SESSION, label=labels.get(f),
                              duration=durations[f])
               for f in files if f in durations]
    fail_or_skip(unreadable, "unreadable or empty audio file(s)", root, skip_invalid,
                 "Fix or remove them, or pass skip_invalid=True (CLI: --skip-invalid) to leave them out.")
    if not records:
        raise CorpusError(f"{root}: no readable audio files")
    records.sort(key=lambda r: r.utt_id)

    if labels_csv is not None:
        by_csv = read_labels_csv(labels_csv, records, root, corpus, names)
        unlabelled = sum(r.utt_id not in by_csv for r in records)
        if unlabelled:
            warnings.warn(f"{labels_csv}: {unlabelled} of {len(records)} audio file(s) have no row; left unlabelled",
                          CorpusWarning, stacklevel=2)
        records = [dataclasses.replace(r, label=by_csv.get(r.utt_id)) for r in records]
    if label_from != "none":
        note_own_classes(root, [r.label for r in records if r.label], names, corpus)

    if len({r.speaker for r in records}) >= n_groups:
        records = assign_speaker_groups(records, n_groups)
    if label_from != "none":
        check_folder_folds(records, n_groups, speaker_from if regex is None else "regex", label_from, root)
    return records


def check_folder_folds(records: list[ManifestRecord], n_groups: int, speaker_from: str, label_from: str,
                       root: Path) -> None:
    """Warn (:class:`FoldWarning`) when the fold groups of a labelled folder confound speakers and labels."""
    origin = None
    if speaker_from == "folder" and label_from == "folder":
        origin = ("speaker and label both come from the parent folder (--speaker-from folder, the default, with "
                  "--label-from folder)")
    elif speaker_from == "folder":
        origin = "speakers come from the parent folders (--speaker-from folder, the default)"
    if speaker_from == "regex":
        fix = ("Check --speaker-regex: its group (?P<speaker>...) must capture who speaks (e.g. "
               f"'{SPEAKER_REGEX_EXAMPLE}' for names like spk03_take2.wav), and each speaker needs several classes.")
    else:
        fix = (f"Give each file its real speaker with --speaker-regex, e.g. --speaker-regex '{SPEAKER_REGEX_EXAMPLE}' "
               "for names like spk03_take2.wav.")
    warn_fold_problems(records, n_groups, where=root, origin=origin, fix=fix)
