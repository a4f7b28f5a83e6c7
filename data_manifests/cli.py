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
from .folder import SPEAKER_SOURCES, build_folder
from .problems import CorpusError, CorpusWarning

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

    Corpus and manifest errors become a :class:`click.ClickException` (message on stderr, exit status 1).
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


@main.command("folder")
@ROOT_ARG
@OUT_OPT
@click.option("--corpus", default=None, help="Corpus name written into every record  [default: the folder's name].")
@click.option("--speaker-from", type=click.Choice(SPEAKER_SOURCES), default="folder", show_default=True,
              help="Speaker id: the parent folder's name, the file name before its first '_' or '-', or none.")
@click.option("--labels-csv", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="CSV with a header 'utt_id,label' or 'filename,label' to attach labels (checked: every row "
                   "must name one audio file).")
@GROUPS_OPT
@SKIP_OPT
def folder_command(root: Path, out: Path, corpus: str | None, speaker_from: str, labels_csv: Path | None,
                   n_groups: int, skip_invalid: bool) -> None:
    """Every .wav/.flac under ROOT (recursively) as an UNLABELLED record: a labelling team's pool.

    \b
    utt_id = path relative to ROOT without suffix (spk1/clip_003).
    session = balanced speaker groups g1..gN with at least --groups speakers,
    otherwise 'pool'.

    \b
    ser-manifest folder /data/new_calls -o pool.jsonl --corpus calls --speaker-from filename-prefix
    ser-manifest folder /data/new_calls -o labelled.jsonl --labels-csv labels.csv
    """
    run_builder(lambda: build_folder(absolute(root), corpus=corpus, speaker_from=speaker_from,
                                     labels_csv=labels_csv, n_groups=n_groups, skip_invalid=skip_invalid), out)


if __name__ == "__main__":
    main()
