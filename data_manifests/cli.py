"""``ser-manifest``: a corpus tree -> a JSONL manifest, with a count table per session × class."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable

import click

from ser_common.labels import SCHEMES
from ser_common.manifest import ManifestError, ManifestRecord, validate_records, write_manifest

from . import CORPORA
from .count_table import count_table
from .fold_check import SPEAKER_REGEX_EXAMPLE
from .folder import LABEL_SOURCES, SPEAKER_SOURCES, build_folder, compile_speaker_regex
from .label_names import parse_label_map
from .label_studio import DISAGREEMENT_POLICIES, build_label_studio
from .problems import CorpusError, CorpusWarning, FoldWarning
from .transcript_table import build_csv

HELP: dict[str, str] = {
    "iemocap": """IEMOCAP from IEMOCAP_full_release (ROOT holds Session1..Session5).

    \b
    labels: Session*/dialog/EmoEvaluation/<dialog>.txt
    audio:  Session*/sentences/wav/<dialog>/<utt>.wav
    text:   Session*/dialog/transcriptions/<dialog>.txt
    4class keeps neu, hap+exc (-> happy), sad, ang: 5531 utterances.
    session = Session1..Session5 (leave-one-session-out folds).

    \b
    ser-manifest iemocap /data/IEMOCAP_full_release -o manifests/iemocap.jsonl
    """,
    "emodb": """EmoDB (ROOT/wav/*.wav|flac, or the files directly in ROOT; names like 03a01Fa).

    \b
    4class: neutral/happy/sad/angry = 79/71/62/127 (339); all: 535.
    10 speakers in speaker groups g1..g5 (the session column).

    \b
    ser-manifest emodb ../shared/data/emodb -o manifests/emodb.jsonl
    """,
    "ravdess": """RAVDESS speech, audio-only (ROOT/Actor_XX/03-01-06-01-02-01-12.wav|flac).

    \b
    4class: neutral/happy/sad/angry = 96/192/192/192 (672); all: 1440.
    24 actors in speaker groups g1..g5 (the session column).
    Song (channel 02) and video files are left out.

    \b
    ser-manifest ravdess ../shared/data/ravdess -o manifests/ravdess.jsonl --labels all
    """,
    "crema-d": """CREMA-D (ROOT/AudioWAV/*.wav, or the files directly in ROOT; names like 1001_DFA_ANG_XX).

    \b
    4class keeps NEU/HAP/SAD/ANG; all adds DIS and FEA.
    91 actors in speaker groups g1..g5 (the session column).

    \b
    ser-manifest crema-d /data/CREMA-D -o manifests/crema-d.jsonl
    """,
}


def run_builder(build: Callable[[], list[ManifestRecord]], out: Path) -> list[ManifestRecord]:
    """Build, validate and write a manifest; print warnings to stderr and the count table to stdout.

    Fold warnings (speakers and labels confounded, no folds) are repeated under the count table. Corpus and
    manifest errors become a :class:`click.ClickException` (message on stderr, exit status 1).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CorpusWarning)
        try:
            records = build()
            validate_records(records, str(out), check_audio=False)
        except (CorpusError, ManifestError) as e:
            raise click.ClickException(str(e)) from e
        finally:
            for w in caught:
                if issubclass(w.category, CorpusWarning):
                    click.echo(f"warning: {w.message}", err=True)
                else:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    write_manifest(records, out)
    click.echo(count_table(records))
    for w in caught:
        if issubclass(w.category, FoldWarning):
            click.echo(f"WARNING: {w.message}")
    click.echo(f"wrote {out}")
    return records


def absolute(root: Path) -> Path:
    """``root`` as an absolute, normalised path (symlinks kept), so the manifest works from any directory."""
    return Path(os.path.abspath(root))


ROOT_ARG = click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
OUT_OPT = click.option("--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
                       help="Manifest to write (JSON Lines, one utterance per line).")
SKIP_OPT = click.option("--skip-invalid", is_flag=True,
                        help="Leave out malformed names and missing, unreadable or empty audio with a warning "
                             "instead of failing.")
LABELS_OPT = click.option("--labels", "scheme", type=click.Choice(SCHEMES), default="4class", show_default=True,
                          help="4class: neutral/happy/sad/angry only (other classes dropped); all: every class.")
GROUPS_OPT = click.option("--groups", "n_groups", type=click.IntRange(2), default=5, show_default=True,
                          help="Number of speaker-independent fold groups written into the session column.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Build a JSONL manifest (one utterance per line: audio path, label, speaker, session, transcript,
    duration) from a corpus folder, and print its counts per session × class.

    \b
    ser-manifest iemocap /data/IEMOCAP_full_release -o manifests/iemocap.jsonl
    ser-manifest emodb ../shared/data/emodb -o manifests/emodb.jsonl --labels all
    ser-manifest folder /data/new_calls -o pool.jsonl --speaker-from filename-prefix
    ser-manifest folder /data/my_corpus -o my.jsonl --label-from folder --speaker-regex '^(?P<speaker>[^_]+)_'
    ser-manifest csv transcripts.csv --utt-id id --text text --label emotion --speaker spk -o texts.jsonl
    ser-manifest label-studio export.json --manifest pool.jsonl -o labelled.jsonl

    Labels are readable names (neutral, happy, …). --labels 4class (default) keeps the paper's
    neutral/happy/sad/angry and drops other classes; --labels all keeps every class.
    """


def corpus_command(name: str) -> click.Command:
    """The ``ser-manifest <name>`` subcommand for a registered corpus."""
    build = CORPORA[name]
    has_groups = name != "iemocap"

    def command(root: Path, out: Path, scheme: str, skip_invalid: bool, n_groups: int = 5) -> None:
        options = {"skip_invalid": skip_invalid, **({"n_groups": n_groups} if has_groups else {})}
        run_builder(lambda: build(absolute(root), scheme, **options), out)

    command.__doc__ = HELP[name]
    # applied innermost first: the help lists the options in the reverse order of these lines
    command = SKIP_OPT(command)
    if has_groups:
        command = GROUPS_OPT(command)
    command = LABELS_OPT(command)
    return click.command(name)(ROOT_ARG(OUT_OPT(command)))


for _name in CORPORA:
    main.add_command(corpus_command(_name))


def label_map_option(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, str] | None:
    """``--label-map a=b,c=d`` (repeatable) -> ``{"a": "b", "c": "d"}``, normalised like the labels."""
    if not value:
        return None
    try:
        return parse_label_map(value, keep_case=bool(ctx.params.get("keep_label_case")))
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


KEEP_CASE_OPT = click.option("--keep-label-case", is_flag=True, is_eager=True,
                             help="Keep the labels' case (they are always stripped of surrounding spaces); by "
                                  "default labels are lower-cased: Joy -> joy.")
LABEL_MAP_OPT = click.option("--label-map", multiple=True, callback=label_map_option, metavar="NAME=LABEL,...",
                             help="Map the corpus' label names (after lower-casing) onto the toolkit's, e.g. "
                                  "angry=angry,joy=happy,neutral=neutral,sad=sad. With a map, a label it does not "
                                  "list is an error (--skip-invalid leaves those files/rows out). Repeatable.")


@main.command("folder")
@ROOT_ARG
@OUT_OPT
@click.option("--corpus", default=None, help="Corpus name written into every record  [default: the folder's name].")
@click.option("--label-from", type=click.Choice(LABEL_SOURCES), default=None,
              help="Labels: none (an unlabelled pool), folder (the parent folder's name: angry/spk03_take2.wav -> "
                   "angry), or csv (from --labels-csv)  [default: csv with --labels-csv, otherwise none].")
@click.option("--labels-csv", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="CSV with a header 'utt_id,label' or 'filename,label' to attach labels (checked: every row "
                   "must name one audio file).")
@LABEL_MAP_OPT
@KEEP_CASE_OPT
@click.option("--speaker-from", type=click.Choice(SPEAKER_SOURCES), default=None,
              help="Speaker id: the parent folder's name, the file name before its first '_' or '-', or none  "
                   "[default: folder].")
@click.option("--speaker-regex", default=None, metavar="REGEX",
              help="Instead of --speaker-from: a Python regex with a named group 'speaker', searched in the file "
                   f"name, e.g. '{SPEAKER_REGEX_EXAMPLE}' reads spk03 from spk03_take2.wav. A file it does not "
                   "match is an error (--skip-invalid leaves it out).")
@GROUPS_OPT
@click.option("--skip-invalid", is_flag=True,
              help="Leave out, with a warning instead of failing: unreadable or empty audio, file names "
                   "--speaker-regex does not match, files outside a label folder (--label-from folder) and labels "
                   "absent from --label-map.")
def folder_command(root: Path, out: Path, corpus: str | None, label_from: str | None, labels_csv: Path | None,
                   label_map: dict[str, str] | None, keep_label_case: bool, speaker_from: str | None,
                   speaker_regex: str | None, n_groups: int, skip_invalid: bool) -> None:
    """Every .wav/.flac under ROOT (recursively, any sample rate): an unlabelled pool, or a labelled corpus
    nobody here prepared (a folder per emotion, labels in a CSV).

    \b
    utt_id = path relative to ROOT without suffix (angry/spk03_take2).
    label  = --label-from: none (default), folder, or csv (--labels-csv);
             stripped and lower-cased, then mapped by --label-map.
    speaker = --speaker-from (default: the parent folder) or --speaker-regex.
    session = balanced speaker groups g1..gN with at least --groups speakers,
    otherwise 'pool'.

    With labels, a warning says when speakers and labels are confounded (e.g.
    the folder is both the emotion and the speaker): speaker-independent
    folds would then measure speakers, not emotions.

    \b
    ser-manifest folder /data/new_calls -o pool.jsonl --corpus calls --speaker-from filename-prefix
    ser-manifest folder /data/new_calls -o labelled.jsonl --labels-csv labels.csv
    ser-manifest folder /data/my_corpus -o my.jsonl --label-from folder \\
        --speaker-regex '^(?P<speaker>[^_]+)_' --label-map joy=happy,angry=angry,neutral=neutral,sad=sad
    """
    if speaker_regex is not None and speaker_from is not None:
        raise click.UsageError("--speaker-regex and --speaker-from are alternatives: give one")
    if speaker_regex is not None:
        try:
            compile_speaker_regex(speaker_regex)
        except ValueError as e:
            raise click.BadParameter(str(e).removeprefix("--speaker-regex "),
                                     param_hint="'--speaker-regex'") from None
    if labels_csv is not None and label_from not in (None, "csv"):
        raise click.UsageError(f"--labels-csv reads the labels from a CSV: it cannot go with --label-from "
                               f"{label_from}")
    if label_from == "csv" and labels_csv is None:
        raise click.UsageError("--label-from csv needs --labels-csv FILE")
    if label_map is not None and labels_csv is None and label_from in (None, "none"):
        raise click.UsageError("--label-map needs labels: add --label-from folder or --labels-csv FILE")
    run_builder(lambda: build_folder(absolute(root), corpus=corpus, speaker_from=speaker_from,
                                     speaker_regex=speaker_regex, label_from=label_from, labels_csv=labels_csv,
                                     label_map=label_map, keep_label_case=keep_label_case, n_groups=n_groups,
                                     skip_invalid=skip_invalid), out)


@main.command("csv")
@click.argument("table", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@OUT_OPT
@click.option("--utt-id", "utt_id_col", required=True, metavar="COL", help="Column of the utterance ids (unique).")
@click.option("--text", "text_col", required=True, metavar="COL", help="Column of the transcripts (non-empty).")
@click.option("--label", "label_col", required=True, metavar="COL",
              help="Column of the labels (an empty cell leaves the utterance unlabelled).")
@click.option("--speaker", "speaker_col", required=True, metavar="COL",
              help="Column of the speaker ids (required in every row; the fold groups are built from them).")
@click.option("--audio", "audio_col", default=None, metavar="COL",
              help="Column of audio paths (relative to the table's folder). Without it the records have no "
                   "audio: only text feature sets can be extracted.")
@click.option("--split", "split_col", default=None, metavar="COL",
              help="Column of a split (train/dev/test …), kept in the record's extra.split; the folds stay "
                   "speaker groups.")
@click.option("--corpus", default=None, help="Corpus name written into every record  [default: the table's name].")
@click.option("--delimiter", default=None, metavar="CHAR",
              help="The cell separator  [default: detected among , ; tab |, else ',']. Write tab as '\\t'.")
@LABEL_MAP_OPT
@KEEP_CASE_OPT
@GROUPS_OPT
@click.option("--skip-invalid", is_flag=True,
              help="Leave out rows with problems (empty text or speaker, labels absent from --label-map, missing "
                   "audio) with a warning instead of failing. Duplicate ids always fail.")
def csv_command(table: Path, out: Path, utt_id_col: str, text_col: str, label_col: str, speaker_col: str,
                audio_col: str | None, split_col: str | None, corpus: str | None, delimiter: str | None,
                label_map: dict[str, str] | None, keep_label_case: bool, n_groups: int, skip_invalid: bool) -> None:
    """A transcript table (CSV) as a manifest: one row per utterance, with or without audio.

    \b
    Any delimiter csv can detect (, ; tab |), UTF-8 with or without a BOM.
    transcript = --text (stripped); label = --label, stripped, lower-cased and
    mapped by --label-map; speaker = --speaker.
    session = balanced speaker groups g1..gN with at least --groups speakers,
    otherwise 'pool'; --split goes to extra.split (not a fold group).

    \b
    ser-manifest csv transcripts.csv --utt-id id --text sentence --label emotion \\
        --speaker spk --split split --label-map joy=happy -o manifests/texts.jsonl
    """
    if delimiter is not None:
        delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter)
        if len(delimiter) != 1:
            raise click.BadParameter(f"{delimiter!r} is not one character", param_hint="'--delimiter'")
    run_builder(lambda: build_csv(absolute(table), utt_id_col=utt_id_col, text_col=text_col, label_col=label_col,
                                  speaker_col=speaker_col, audio_col=audio_col, split_col=split_col, corpus=corpus,
                                  delimiter=delimiter, label_map=label_map, keep_label_case=keep_label_case,
                                  n_groups=n_groups, skip_invalid=skip_invalid), out)


def classes_option(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    """``--classes a,b,c`` -> ``("a", "b", "c")`` (distinct, non-empty)."""
    names = [c.strip() for c in value.split(",") if c.strip()]
    if not names or len(set(names)) != len(names):
        raise click.BadParameter(f"{value!r}: give distinct class names separated by commas, e.g. "
                                 "neutral,happy,sad,angry")
    return tuple(names)


@main.command("label-studio")
@click.argument("export", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--manifest", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The pool manifest the suggestions were made from; tasks are matched to it by data.utt_id.")
@OUT_OPT
@LABEL_MAP_OPT
@KEEP_CASE_OPT
@click.option("--classes", default="neutral,happy,sad,angry", show_default=True, callback=classes_option,
              metavar="A,B,...", help="The label set: a label outside it (after --label-map) is an error.")
@click.option("--on-disagreement", type=click.Choice(DISAGREEMENT_POLICIES), default="latest", show_default=True,
              help="Annotations of one utterance that choose different labels: latest (the most recently updated "
                   "one wins; all listed), skip (left unlabelled), fail (an error listing them).")
@click.option("--skip-invalid", is_flag=True,
              help="Leave out, with a warning instead of failing: tasks without data.utt_id or with ids absent "
                   "from --manifest, labels outside --classes or absent from --label-map, several choices.")
def label_studio_command(export: Path, manifest: Path, out: Path, label_map: dict[str, str] | None,
                         keep_label_case: bool, classes: tuple[str, ...], on_disagreement: str,
                         skip_invalid: bool) -> None:
    """A Label Studio JSON export (Export -> JSON) -> the manifest's records that were labelled there.

    \b
    The tasks come from `ser-train suggest --format label-studio`; each is
    matched to --manifest by data.utt_id. Cancelled (skipped) annotations and
    the model's predictions are never labels; tasks without a submitted
    choice stay unlabelled (counted). Labels are stripped, lower-cased and
    mapped by --label-map. Prints what was labelled per class and what was
    left out, and why.

    \b
    ser-manifest label-studio export.json --manifest pool.jsonl -o labelled.jsonl
    ser-manifest label-studio export.json --manifest pool.jsonl -o labelled.jsonl \\
        --on-disagreement skip --label-map joy=happy,angry=angry,neutral=neutral,sad=sad
    """
    summary = []

    def build() -> list[ManifestRecord]:
        records, s = build_label_studio(export, manifest, label_map=label_map, keep_label_case=keep_label_case,
                                        classes=classes, on_disagreement=on_disagreement,
                                        skip_invalid=skip_invalid)
        summary.append(s)
        return records

    run_builder(build, out)
    for line in summary[0].lines():
        click.echo(line)


if __name__ == "__main__":
    main()
