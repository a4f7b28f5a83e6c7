"""A transcript table (CSV) as a manifest: text corpora with or without audio.

One row per utterance; the caller names the columns holding the id, the text, the label and the speaker,
and optionally the audio path and a split. The table may use any delimiter :class:`csv.Sniffer` detects
among ``,`` ``;`` tab and ``|`` (comma when it detects none; the header decides when the sniffed one does not
give the named columns), and may start with a UTF-8 byte-order mark (Excel's "CSV UTF-8").

* ``transcript`` is the text, stripped; an empty text is an error for its row.
* ``label`` is normalised and mapped like every brought corpus (:mod:`.label_names`); an empty label cell
  leaves the utterance unlabelled (a pool to predict on).
* ``speaker`` is required in every row: a speaker is never guessed.
* without an audio column the records have no audio (``audio`` ``None``: text feature sets only); with one,
  a relative path is read from the table's folder, and the file must exist and be readable (its duration is
  read from the header).
* ``session`` holds balanced speaker groups ``g1..gN`` (:func:`ser_common.folds.speaker_groups`) with at
  least ``n_groups`` speakers, otherwise ``pool``, exactly as for a folder. A split column (train/dev/test)
  goes to ``extra["split"]``, not to ``session``: training cross-validates leave-one-session-out, and a
  corpus' split is neither a set of groups to rotate nor, in general, speaker-independent.

Every problem of a row (wrong number of cells, empty id/text/speaker/audio, labels absent from the label
map, missing audio) is reported with its line number; duplicate ids are always an error, the rest may be left
out with ``skip_invalid``.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Mapping

from ser_common.listing import indented, shorten
from ser_common.manifest import ManifestRecord

from .audio_files import audio_duration
from .fold_check import warn_fold_problems
from .folder import UNLABELLED_SESSION
from .label_names import NotInLabelMap, label_names_from, note_own_classes
from .problems import CorpusError, CorpusWarning, fail_or_skip
from .speaker_sessions import assign_speaker_groups

DELIMITERS = ",;\t|"
"""The delimiters :class:`csv.Sniffer` may choose from."""

SKIP_HINT = "Fix these rows, or pass skip_invalid=True (CLI: --skip-invalid) to leave them out with a warning."


def _shown(delimiter: str) -> str:
    return {"\t": "tab", ",": "','", ";": "';'", "|": "'|'"}.get(delimiter, repr(delimiter))


def read_table_text(path: Path) -> str:
    """The table's text (UTF-8, a leading byte-order mark dropped); :class:`CorpusError` when not UTF-8."""
    if not path.is_file():
        raise CorpusError(f"{path}: transcript table not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise CorpusError(f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} on line {line}); save the table as "
                          f"UTF-8 (e.g. `iconv -f latin1 -t utf-8 {path.name} > utf8.csv`, or Excel's "
                          "'CSV UTF-8')") from None
    if not text.strip():
        raise CorpusError(f"{path}: the table is empty; expected a header line naming the columns")
    return text


def _rows(text: str, delimiter: str):
    return csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)


def _header(text: str, delimiter: str) -> list[str]:
    return [h.strip() for h in next(_rows(text, delimiter), [])]


def choose_delimiter(text: str, wanted: list[str], delimiter: str | None = None) -> str:
    """``delimiter``, or the one :class:`csv.Sniffer` detects (comma when none); when that one does not give
    the ``wanted`` columns and another candidate does, that other one."""
    if delimiter is not None:
        return delimiter
    try:
        sniffed = csv.Sniffer().sniff(text[:65536], delimiters=DELIMITERS).delimiter
    except csv.Error:
        sniffed = ","
    if set(wanted) <= set(_header(text, sniffed)):
        return sniffed
    for d in DELIMITERS:
        if set(wanted) <= set(_header(text, d)):
            return d
    return sniffed


def build_csv(path: str | os.PathLike, *, utt_id_col: str, text_col: str, label_col: str, speaker_col: str,
              audio_col: str | None = None, split_col: str | None = None, corpus: str | None = None,
              delimiter: str | None = None, label_map: str | Mapping[str, str] | None = None,
              keep_label_case: bool = False, n_groups: int = 5, skip_invalid: bool = False) -> list[ManifestRecord]:
    """Records from a transcript table, in the table's row order (see the module docstring).

    ``*_col`` are header names (surrounding whitespace ignored). ``corpus`` defaults to the table's file
    name without suffix. Raises :class:`CorpusError` naming the table for a file that is not UTF-8, a missing
    column (listing the columns it has), duplicate ids (with both lines), and rows with problems (each with its
    line; ``skip_invalid``: warn and leave them out). Warns (:class:`~.problems.FoldWarning`) when the fold
    groups confound speakers and labels.
    """
    path = Path(path)
    text = read_table_text(path)
    columns = {"--utt-id": utt_id_col, "--text": text_col, "--label": label_col, "--speaker": speaker_col}
    if audio_col is not None:
        columns["--audio"] = audio_col
    if split_col is not None:
        columns["--split"] = split_col
    columns = {opt: col.strip() for opt, col in columns.items()}
    delimiter = choose_delimiter(text, list(columns.values()), delimiter)
    header = _header(text, delimiter)
    absent = [f"{col!r} ({opt})" for opt, col in columns.items() if col not in header]
    if absent:
        folded = {h.casefold(): h for h in header}
        close = [f"{col!r} -> {folded[col.casefold()]!r}" for col in columns.values()
                 if col not in header and col.casefold() in folded]
        raise CorpusError(
            f"{path}: no column {', '.join(absent)}; the table's columns (delimiter {_shown(delimiter)}) are: "
            + ", ".join(repr(h) for h in header)
            + (f". Column names are case-sensitive: {', '.join(close)}" if close else "")
            + ("" if len(header) > 1 else ". Only one column was found: if the cells are separated by another "
               "character, pass it with --delimiter"))
    twice = sorted({col for col in columns.values() if header.count(col) > 1})
    if twice:
        raise CorpusError(f"{path}: column(s) {', '.join(map(repr, twice))} appear more than once in the header; "
                          "rename one of them")
    index = {opt: header.index(col) for opt, col in columns.items()}
    names = label_names_from(label_map, keep_label_case)
    corpus = corpus or path.stem

    problems: list[str] = []
    bad_lines: set[int] = set()
    first_line: dict[str, int] = {}
    dups: list[str] = []
    absent_labels: dict[str, list[int]] = defaultdict(list)
    rows: list[tuple[int, dict[str, str]]] = []
    reader = _rows(text, delimiter)
    next(reader)  # the header

    def problem(line: int, message: str) -> None:
        problems.append(f"line {line}: {message}")
        bad_lines.add(line)

    for cells in reader:
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue  # blank line
        if len(cells) != len(header):
            problem(line, f"{len(cells)} cell(s), the header has {len(header)} (delimiter {_shown(delimiter)}); "
                          f"quote cells that contain {_shown(delimiter)} or line breaks")
            continue
        row = {opt: cells[i].strip() for opt, i in index.items()}
        uid = row["--utt-id"]
        if not uid:
            problem(line, f"empty utt_id (column {columns['--utt-id']!r})")
            continue
        if any(ch in uid for ch in "\n\r\0"):
            problem(line, f"utt_id {uid[:40]!r} contains a line break or NUL; ids are one line of text")
            continue
        if uid in first_line:
            dups.append(f"line {line}: utt_id {uid!r} already on line {first_line[uid]}")
            continue
        first_line[uid] = line
        who = f"for {uid!r}"
        if not row["--text"]:
            problem(line, f"empty text (column {columns['--text']!r}) {who}")
        if not row["--speaker"]:
            problem(line, f"empty speaker (column {columns['--speaker']!r}) {who}; a speaker is never guessed")
        if audio_col is not None and not row["--audio"]:
            problem(line, f"empty audio path (column {columns['--audio']!r}) {who}")
        try:
            row["--label"] = names(row["--label"])
        except NotInLabelMap as e:
            absent_labels[e.name].append(line)
            bad_lines.add(line)
        rows.append((line, row))

    for name, lines in sorted(absent_labels.items()):
        shown = shorten(lines, 8, more=" … ({total} rows)")
        problems.append(f"line{'s' if len(lines) > 1 else ''} {shown}: label {name!r} is not in --label-map")
    hint = SKIP_HINT
    if absent_labels:
        hint = names.missing_fix(sorted(absent_labels), "rows")
        if len(problems) > len(absent_labels):
            hint += " Fix the other rows listed, or leave them out too with --skip-invalid."
    if dups:  # never skipped: which of the rows is right cannot be told
        others = (f"\nand {len(bad_lines)} other invalid row(s):" + indented(problems) + f"\n{hint}" if problems else "")
        raise CorpusError(f"{path}: {len(dups)} duplicate utt_id(s); ids must be unique (--skip-invalid does not "
                          "choose between them):" + indented(dups) + others)
    if problems:
        head = f"{path}: {len(bad_lines)} invalid row(s)"
        if not skip_invalid:
            raise CorpusError(f"{head}:" + indented(problems) + f"\n{hint}")
        warnings.warn(f"{head}, left out:" + indented(problems), CorpusWarning, stacklevel=2)

    records: list[ManifestRecord] = []
    unreadable: list[str] = []
    for line, row in rows:
        if line in bad_lines:
            continue
        audio, duration = None, None
        if audio_col is not None:
            audio = os.path.abspath(path.parent / row["--audio"])
            try:
                duration = audio_duration(audio)
            except ValueError as e:
                reason = "audio file not found" if not os.path.isfile(audio) else str(e).removeprefix(f"{audio}: ")
                unreadable.append(f"line {line}: {reason}: {audio}")
                continue
        split = row.get("--split")
        records.append(ManifestRecord(
            utt_id=row["--utt-id"], audio=audio, corpus=corpus, speaker=row["--speaker"], session=UNLABELLED_SESSION,
            label=row["--label"] or None, transcript=row["--text"], duration=duration,
            extra={"split": split} if split else {}))
    fail_or_skip(unreadable, "row(s) with missing, unreadable or empty audio", path, skip_invalid,
                 "Audio paths are read relative to the table's folder. Fix the paths or files, or pass "
                 "skip_invalid=True (CLI: --skip-invalid) to leave those rows out.")
    if not records:
        raise CorpusError(f"{path}: no utterances (the table has a header but no usable rows)")
    unlabelled = sum(r.label is None for r in records)
    if unlabelled:
        warnings.warn(f"{path}: {unlabelled} row(s) have an empty label (column {columns['--label']!r}); "
                      "left unlabelled", CorpusWarning, stacklevel=2)
    note_own_classes(path, [r.label for r in records if r.label], names, corpus)
    if len({r.speaker for r in records}) >= n_groups:
        records = assign_speaker_groups(records, n_groups)
    warn_fold_problems(records, n_groups, where=path, fix=(
        f"Check that the {columns['--speaker']!r} column (--speaker) names who speaks: a speaker-independent "
        "evaluation needs speakers who each carry several classes."))
    return records
