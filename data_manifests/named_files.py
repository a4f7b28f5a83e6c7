"""The shared path of corpora whose labels live in their file names (EmoDB, RAVDESS, CREMA-D).

A corpus module supplies the audio files and a parser from one file to a :class:`NamedFile`; this module maps
labels, applies the label scheme, reads durations, rejects duplicate ids and assigns speaker fold groups.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ser_common.labels import UnknownLabelError, map_label
from ser_common.listing import indented
from ser_common.manifest import ManifestRecord

from .audio_files import read_durations
from .problems import CorpusError, fail_or_skip
from .speaker_sessions import assign_speaker_groups

SKIP_HINT = "Fix or remove them, or pass skip_invalid=True (CLI: --skip-invalid) to leave them out with a warning."


class MalformedName(ValueError):
    """A file name that does not follow the corpus' naming scheme (the message says which part is wrong)."""


@dataclass(frozen=True)
class NamedFile:
    """What a corpus file name says about its utterance.

    Attributes:
        utt_id: unique id (normally the file stem).
        speaker: speaker id, unique across the corpus.
        code: the corpus' raw emotion code (mapped by :func:`ser_common.labels.map_label`).
        transcript: the sentence spoken, if the name identifies it.
        extra: corpus-specific fields for the record's ``extra``.
    """

    utt_id: str
    speaker: str
    code: str
    transcript: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def audio_folder(root: str | os.PathLike, corpus_name: str, subfolder: str) -> Path:
    """``ROOT/<subfolder>`` (the corpus as distributed) when it exists, else ``ROOT`` itself.

    Raises :class:`CorpusError` (``<root>: <corpus_name> folder not found``) when ``root`` is no folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: {corpus_name} folder not found")
    return root / subfolder if (root / subfolder).is_dir() else root


def build_from_names(
    corpus: str,
    root: str | os.PathLike,
    files: list[Path],
    parse: Callable[[Path], NamedFile | None],
    scheme: str = "4class",
    n_groups: int = 5,
    skip_invalid: bool = False,
) -> list[ManifestRecord]:
    """Records for ``files``, labelled from their names under ``scheme`` and grouped into ``n_groups`` folds.

    ``parse`` returns ``None`` for a well-formed file that the corpus leaves out on purpose (e.g. a RAVDESS
    song) and raises :class:`MalformedName` for a name it cannot read. Malformed names, unknown emotion codes
    and unreadable or empty audio raise :class:`CorpusError` listing every offender (with ``skip_invalid``:
    a warning, and those files are left out); duplicate utterance ids always raise. Records are sorted by
    ``utt_id``; ``duration`` is in seconds.
    """
    if not files:
        raise CorpusError(f"{root}: no .wav or .flac files found")
    malformed: list[str] = []
    parsed: list[tuple[Path, NamedFile, str]] = []
    for path in files:
        try:
            named = parse(path)
            if named is None:
                continue
            label = map_label(corpus, named.code, scheme)
        except (MalformedName, UnknownLabelError) as e:
            malformed.append(f"{path.name}: {e}")
            continue
        if label is not None:
            parsed.append((path, named, label))
    fail_or_skip(malformed, "malformed file name(s)", root, skip_invalid, SKIP_HINT)

    by_id: dict[str, list[Path]] = defaultdict(list)
    for path, named, _ in parsed:
        by_id[named.utt_id].append(path)
    dups = [f"{uid}: " + ", ".join(map(str, paths)) for uid, paths in sorted(by_id.items()) if len(paths) > 1]
    if dups:
        raise CorpusError(f"{root}: {len(dups)} utterance id(s) found in more than one file "
                          "(e.g. the same name as .wav and .flac):" + indented(dups))

    parsed.sort(key=lambda t: t[1].utt_id)
    durations, unreadable = read_durations(path for path, _, _ in parsed)
    records = [ManifestRecord(utt_id=named.utt_id, audio=str(path), corpus=corpus, speaker=named.speaker,
                              session="", label=label, transcript=named.transcript, duration=durations[path],
                              extra=dict(named.extra))
               for path, named, label in parsed if path in durations]
    fail_or_skip(unreadable, "unreadable or empty audio file(s)", root, skip_invalid, SKIP_HINT)
    if not records:
        raise CorpusError(f"{root}: no utterances left under label scheme {scheme!r}")
    try:
        return assign_speaker_groups(records, n_groups)
    except ValueError as e:
        raise CorpusError(f"{root}: {e}") from e
