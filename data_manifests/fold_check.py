"""Do the fold groups of a manifest evaluate emotions, or speakers?

Training cross-validates leave-one-group-out over the ``session`` column (:func:`ser_common.folds.fold_splits`);
for corpora without sessions the builders fill it with balanced speaker groups ``g1..gN``
(:func:`ser_common.folds.speaker_groups`, only when there are at least N speakers; a folder pool with fewer
keeps session ``pool``). When speakers and labels are confounded, e.g. a folder per emotion read with the
folder as the speaker, each speaker carries one label and each group holds only some classes: a held-out
group's classes are then (nearly) absent from training and the folds measure speakers, not emotions.

:func:`fold_problems` checks the records as written (the real groups, after assignment):

* every speaker carries a single label (over several labelled utterances of some speaker);
* a fold group lacks one of the classes (counted over labelled utterances);
* the labelled utterances fall into fewer than two groups (too few speakers for ``n_groups``: no folds).

:func:`warn_fold_problems` reports them as a :class:`~data_manifests.problems.FoldWarning`.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter, defaultdict

from ser_common.labels import class_order
from ser_common.listing import shorten
from ser_common.manifest import ManifestRecord

from .count_table import session_key
from .problems import FoldWarning

SPEAKER_REGEX_EXAMPLE = "^(?P<speaker>[^_]+)_"
"""The ``--speaker-regex`` suggested in messages: the file name up to its first ``_`` (``spk03_take2.wav``)."""


def _names(items: list[str], limit: int = 3) -> str:
    """``a, b, c +2 more``: the short inline form these warnings use."""
    return shorten(items, limit, more=" +{n} more")


def fold_problems(records: list[ManifestRecord], n_groups: int, *, where: str | os.PathLike | None = None,
                  origin: str | None = None, fix: str = "") -> str | None:
    """A message describing how the fold groups of ``records`` fail to measure emotions, or ``None``.

    Only labelled records with at least two classes are checked (one class cannot be trained). ``where`` (the
    corpus folder or table) starts the message. ``origin``
    says where speakers and labels came from when that explains a confound (e.g. both from the folder);
    ``fix`` is appended to the message.
    """
    labelled = [r for r in records if r.label]
    classes = class_order([r.label for r in labelled])
    if len(classes) < 2:
        return None
    by_speaker: dict[str, set[str]] = defaultdict(set)
    n_of_speaker: Counter[str] = Counter(r.speaker for r in labelled)
    by_session: dict[str, set[str]] = defaultdict(set)
    speakers_of: dict[str, set[str]] = defaultdict(set)
    for r in records:
        speakers_of[r.session].add(r.speaker)
    for r in labelled:
        by_speaker[r.speaker].add(r.label)
        by_session[r.session].add(r.label)
    sessions = sorted(speakers_of, key=session_key)
    labelled_sessions = [s for s in sessions if by_session[s]]

    items: list[str] = []
    # one labelled clip per speaker says nothing; one label over several clips of every speaker does
    if all(len(labels) == 1 for labels in by_speaker.values()) and max(n_of_speaker.values()) > 1:
        pairs = [f"{spk} -> {next(iter(labels))}" for spk, labels in sorted(by_speaker.items())]
        items.append(f"every one of the {len(by_speaker)} speakers carries a single label "
                     f"(speaker -> label: {_names(pairs, 6)})")
    if len(labelled_sessions) >= 2:
        for s in sessions:
            lacking = [c for c in classes if c not in by_session[s]]
            if lacking:
                who = sorted(speakers_of[s])
                items.append(f"fold group {s} (speaker{'s' if len(who) > 1 else ''} {_names(who)}) has no "
                             + ", ".join(lacking))
    confounded = bool(items)

    no_folds = ""
    if len(labelled_sessions) < 2:
        n_speakers = len({r.speaker for r in records})
        if labelled_sessions and n_speakers < n_groups:
            no_folds = (f"{n_speakers} speaker(s) are too few for {n_groups} fold groups, so every record has "
                        f"session {labelled_sessions[0]!r}: there are no speaker-independent folds "
                        "(ser-train needs at least 2 groups)")
        else:
            no_folds = (f"only fold group {_names(labelled_sessions)} holds labelled utterances: there are no "
                        "speaker-independent folds (ser-train needs at least 2 groups)")
    prefix = f"{where}: " if where is not None else ""
    if confounded:
        head = "speakers and labels are confounded" + (f": {origin}." if origin else ":")
        body = "\n  ".join(items + ([no_folds] if no_folds else []))
        return (f"{prefix}{head}\n  {body}\nspeaker-independent folds then measure speakers, not emotions."
                + (f" {fix}" if fix else ""))
    if no_folds:
        n_speakers = len({r.speaker for r in records})
        groups = (f"pass --groups {n_speakers} (at most the number of speakers) or give the real speakers"
                  if n_speakers >= 2 else "give the real speakers")
        return f"{prefix}{no_folds}; {groups}."
    return None


def warn_fold_problems(records: list[ManifestRecord], n_groups: int, *, where: str | os.PathLike | None = None,
                       origin: str | None = None, fix: str = "") -> str | None:
    """:func:`fold_problems`, issued as a :class:`FoldWarning` when there is one; returns the message."""
    message = fold_problems(records, n_groups, where=where, origin=origin, fix=fix)
    if message:
        warnings.warn(message, FoldWarning, stacklevel=3)
    return message
