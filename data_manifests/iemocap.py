"""IEMOCAP (Busso et al. 2008): labels from the EmoEvaluation files, text from the transcriptions.

Layout of ``IEMOCAP_full_release`` (ROOT)::

    Session1 … Session5/
        sentences/wav/<dialog>/<utt>.wav     one file per utterance (the segment itself)
        dialog/EmoEvaluation/<dialog>.txt    "[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5, 2.5, 2.5]"
        dialog/transcriptions/<dialog>.txt   "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me."

In an EmoEvaluation file only the bracketed lines are labels; the annotator lines below them (``C-E2:``,
``A-F1:`` …) and the ``%`` header lines are not. Transcription lines whose id has no label (``M: breathing``,
``Ses01F_impro01_MXX0`` …) are ignored. The speaker is the session plus the gender letter before the final
digits of the utterance id (``Ses01F_impro01_M003`` -> ``Ses01M``); ``session`` is the folder (``Session1``),
the fold group of the paper's leave-one-session-out CV.

Label codes: neu hap exc sad ang fru sur fea dis oth xxx. The 4-class scheme keeps neu, hap + exc (merged
into happy), sad and ang: 5531 utterances, per session 1085/1023/1151/1031/1241.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from ser_common.labels import UnknownLabelError, map_label
from ser_common.listing import indented
from ser_common.manifest import ManifestRecord

from .audio_files import audio_duration, is_hidden
from .problems import CorpusError, CorpusWarning, fail_or_skip

CORPUS = "iemocap"

SESSION_FOLDER = re.compile(r"Session(\d+)")
LABEL_LINE = re.compile(r"\[\s*(?P<start>\d+(?:\.\d*)?)\s*-\s*(?P<end>\d+(?:\.\d*)?)\s*\]\s+"
                        r"(?P<utt>\S+)\s+(?P<code>\S+)\s+\[.*\]\s*")
TRANSCRIPT_LINE = re.compile(r"(?P<utt>Ses\S+)\s*\[[^\]]*\]:\s?(?P<text>.*)")
UTT_ID = re.compile(r"(?P<session>Ses\d{2})[FM]_.+_(?P<gender>[FM])\d+")

SKIP_HINT = ("Check that every sentences/wav/<dialog>/ folder is complete, or pass skip_invalid=True "
             "(CLI: --skip-invalid) to leave those utterances out with a warning.")


@dataclass(frozen=True)
class Evaluation:
    """One label line of an EmoEvaluation file: utterance id, raw code, and its times in the dialog (s)."""

    utt_id: str
    code: str
    start: float
    end: float


def speaker_of(utt_id: str) -> str:
    """``Ses01F_impro01_M003`` -> ``Ses01M`` (also for scripted ids such as ``Ses01F_script01_1_F000``).

    Raises ``ValueError`` for an id of another shape.
    """
    m = UTT_ID.fullmatch(utt_id)
    if m is None:
        raise ValueError(f"utterance id {utt_id!r} is not Ses<NN><F|M>_<dialog>_<F|M><digits>")
    return m["session"] + m["gender"]


def read_evaluation(path: Path, problems: list[str]) -> list[Evaluation]:
    """The label lines of one EmoEvaluation file, in file order.

    Lines starting with ``[`` must be label lines; unreadable ones and unknown label codes are appended to
    ``problems`` as ``file:line: reason`` (the caller raises once for all files). Other lines are ignored.
    """
    out: list[Evaluation] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line.startswith("["):
                continue
            m = LABEL_LINE.fullmatch(line)
            if m is None:
                problems.append(f"{path}:{lineno}: not '[start - end]<TAB>utt_id<TAB>code<TAB>[v, a, d]': {line!r}")
                continue
            try:
                map_label(CORPUS, m["code"], "all")
                speaker_of(m["utt"])
            except (UnknownLabelError, ValueError) as e:
                problems.append(f"{path}:{lineno}: {e}")
                continue
            out.append(Evaluation(m["utt"], m["code"], float(m["start"]), float(m["end"])))
    return out


def read_transcripts(path: Path) -> dict[str, str]:
    """``utt_id -> text`` from one transcription file; lines of another shape (``M: breathing``) are skipped."""
    out: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = TRANSCRIPT_LINE.fullmatch(line.strip())
            if m:
                out[m["utt"]] = m["text"].strip()
    return out


def session_folders(root: str | os.PathLike) -> list[Path]:
    """``ROOT/Session<N>`` folders, in session order; raises :class:`CorpusError` when there is none."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: IEMOCAP folder not found")
    found = [p for p in root.iterdir() if p.is_dir() and SESSION_FOLDER.fullmatch(p.name)]
    if not found:
        raise CorpusError(f"{root}: no Session1..Session5 folders found; point ROOT at IEMOCAP_full_release")
    return sorted(found, key=lambda p: int(SESSION_FOLDER.fullmatch(p.name)[1]))


def build_iemocap(root: str | os.PathLike, scheme: str = "4class", *,
                  skip_invalid: bool = False) -> list[ManifestRecord]:
    """IEMOCAP manifest records under label ``scheme`` (``4class`` or ``all``), in session and dialog order.

    ``session`` is the ``Session<N>`` folder; ``start``/``end`` stay ``None`` (each wav is its segment) and
    ``extra`` holds ``dialog``, ``scripted`` and the EmoEvaluation ``start``/``end`` times (s); ``duration``
    is the wav's length in seconds. Raises :class:`CorpusError` listing malformed label lines, unknown codes,
    duplicate ids and labelled utterances whose wav is missing or unreadable (the last two, with
    ``skip_invalid``: a warning, and they are left out). Missing transcripts leave ``transcript`` ``None``
    with a warning.
    """
    root = Path(root)
    bad_lines: list[str] = []
    wanted: list[tuple[str, str, Evaluation]] = []  # (session, dialog, evaluation)
    transcripts: dict[str, str] = {}
    for session in session_folders(root):
        eval_dir = session / "dialog" / "EmoEvaluation"
        files = sorted(p for p in eval_dir.glob("*.txt") if not is_hidden(p)) if eval_dir.is_dir() else []
        if not files:
            raise CorpusError(f"{eval_dir}: no EmoEvaluation/<dialog>.txt label files found")
        ses_number = int(SESSION_FOLDER.fullmatch(session.name)[1])
        for path in files:
            for ev in read_evaluation(path, bad_lines):
                if int(ev.utt_id[3:5]) != ses_number:
                    bad_lines.append(f"{path}: {ev.utt_id} does not belong to {session.name}")
                    continue
                label = map_label(CORPUS, ev.code, scheme)
                if label is not None:
                    wanted.append((session.name, path.stem, ev))
            text_file = session / "dialog" / "transcriptions" / path.name
            if text_file.is_file():
                transcripts.update(read_transcripts(text_file))
    if bad_lines:
        raise CorpusError(f"{root}: {len(bad_lines)} malformed EmoEvaluation line(s):" + indented(bad_lines))

    seen: dict[str, str] = {}
    dups: list[str] = []
    for _, dialog, ev in wanted:
        if ev.utt_id in seen:
            dups.append(f"{ev.utt_id}: in {seen[ev.utt_id]} and {dialog}")
        seen[ev.utt_id] = dialog
    if dups:
        raise CorpusError(f"{root}: {len(dups)} utterance id(s) labelled more than once:" + indented(dups))

    records: list[ManifestRecord] = []
    missing: list[str] = []
    no_text: list[str] = []
    for session_name, dialog, ev in wanted:
        wav = root / session_name / "sentences" / "wav" / dialog / f"{ev.utt_id}.wav"
        if not wav.is_file():
            missing.append(f"{ev.utt_id}: {wav} not found")
            continue
        try:
            duration = audio_duration(wav)
        except ValueError as e:
            missing.append(f"{ev.utt_id}: {e}")
            continue
        text = transcripts.get(ev.utt_id)
        if text is None:
            no_text.append(ev.utt_id)
        records.append(ManifestRecord(
            utt_id=ev.utt_id, audio=str(wav), corpus=CORPUS, speaker=speaker_of(ev.utt_id), session=session_name,
            label=map_label(CORPUS, ev.code, scheme), transcript=text, duration=duration,
            extra={"dialog": dialog, "scripted": "_script" in dialog, "start": ev.start, "end": ev.end}))
    fail_or_skip(missing, "labelled utterance(s) without a readable wav", root, skip_invalid, SKIP_HINT)
    if no_text:
        warnings.warn(f"{root}: {len(no_text)} utterance(s) have no transcription line; transcript left empty:"
                      + indented(no_text, 5), CorpusWarning, stacklevel=2)
    if not records:
        raise CorpusError(f"{root}: no utterances left under label scheme {scheme!r}")
    return records
