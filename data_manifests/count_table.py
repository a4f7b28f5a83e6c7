"""The readable count table ``ser-manifest`` prints: utterances per session (fold group) × class."""

from __future__ import annotations

from collections import Counter

from ser_common.labels import class_order
from ser_common.manifest import ManifestRecord

UNLABELLED = "<unlabelled>"


def session_key(session: str) -> tuple[str, int, str]:
    """Sort ``Session2`` before ``Session10`` and ``g2`` before ``g10``."""
    head = session.rstrip("0123456789")
    tail = session[len(head):]
    return (head, int(tail) if tail else -1, session)


_session_key = session_key


def count_table(records: list[ManifestRecord]) -> str:
    """A plain-text table: one row per session, one column per class (paper order first), totals last.

    Also lists the number of speakers per session and the total audio duration in minutes (``text only, no
    audio`` for a manifest from a transcript table without audio).
    """
    counts = Counter((r.session, r.label or UNLABELLED) for r in records)
    sessions = sorted({r.session for r in records}, key=session_key)
    labels = list(class_order([r.label for r in records if r.label]))
    if any(r.label is None for r in records):
        labels.append(UNLABELLED)
    speakers = {s: len({r.speaker for r in records if r.session == s}) for s in sessions}
    header = ["session", *labels, "total", "speakers"]
    rows = [[s, *(str(counts[s, lab]) for lab in labels), str(sum(counts[s, lab] for lab in labels)),
             str(speakers[s])] for s in sessions]
    rows.append(["total", *(str(sum(counts[s, lab] for s in sessions)) for lab in labels), str(len(records)),
                 str(len({r.speaker for r in records}))])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    rule = "-" * len(fmt(header))
    minutes = sum(r.duration or 0.0 for r in records) / 60.0
    with_audio = sum(r.audio is not None for r in records)
    if with_audio == 0:
        audio = "text only (no audio)"
    elif with_audio < len(records):
        audio = f"{minutes:.1f} min of audio ({len(records) - with_audio} utterance(s) without audio)"
    else:
        audio = f"{minutes:.1f} min of audio"
    lines = [fmt(header), rule, *(fmt(r) for r in rows[:-1]), rule, fmt(rows[-1]),
             f"{len(records)} utterances, {audio}"]
    return "\n".join(lines)
