"""Downloading a public corpus into the cache: EmoDB from its own site, for ``make demo`` without ``../shared``.

``python -m data_manifests.download emodb DEST`` makes ``DEST`` a complete EmoDB folder (``DEST/wav/*.wav``,
535 utterances at 16 kHz), or says why it cannot:

1. ``DEST`` already holds the corpus (``wav/`` with 535 audio files): nothing is done (idempotent).
2. The zip is fetched into ``<cache>/downloads/`` with :func:`ser_common.download.fetch` (resumable
   ``.partial``, size and sha256 checked against the pin before use; offline: a message naming the URL, where
   to put the zip or the unzipped folder, and ``EMODB=…`` for make).
3. The zip is checked (member names: no absolute or ``..`` paths; ``wav/*.wav`` present), unpacked into a
   temporary folder beside ``DEST``, its layout checked (every ``wav/`` name parses as an EmoDB name, every
   file is 16 kHz audio, the count is right), ``.ser_download.json`` (URL, sha256, size, time) written, and
   only then renamed to ``DEST``: an interrupted unpack never leaves a half corpus at ``DEST``.

The zip's sha256 and size are not pinned yet (:data:`EMODB_ZIP_SHA256`, :data:`EMODB_ZIP_SIZE` are ``None``:
they could not be computed where this was written, without internet). Until they are filled in, the
download is checked by its layout alone and the digest of what arrived is printed and recorded in
``.ser_download.json``, so it can be pinned.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import click
import soundfile as sf

from ser_common.download import DownloadError, PinnedFile, cache_root, fetch
from ser_common.listing import shorten
from ser_common.provenance import sha256_file

from .emodb import parse_name
from .named_files import MalformedName

EMODB_URL = "http://emodb.bilderbar.info/download/download.zip"
"""EmoDB as its authors distribute it (Burkhardt et al. 2005; free for research, cite the paper)."""

EMODB_ZIP_SHA256: str | None = None
"""sha256 of ``download.zip``: FILL IN (run ``make fetch-demo-data`` online once; it prints the digest)."""

EMODB_ZIP_SIZE: int | None = None
"""Size of ``download.zip`` in bytes: FILL IN together with :data:`EMODB_ZIP_SHA256` (about 40 MB)."""

MARKER = ".ser_download.json"
"""Written into a downloaded corpus folder: where it came from and the zip's sha256."""


@dataclass(frozen=True)
class CorpusDownload:
    """A corpus distributed as one zip whose ``audio_dir/`` holds every utterance.

    Attributes:
        name: in messages (``EmoDB``).
        pin: the zip's URL, size and sha256.
        n_audio: audio files ``audio_dir/`` must hold.
        sample_rate: Hz every audio file must have.
        make_var: the Makefile variable that takes a local copy (``EMODB``).
        audio_dir: folder inside the zip (and the corpus folder) with the audio.
    """

    name: str
    pin: PinnedFile
    n_audio: int
    sample_rate: int
    make_var: str
    audio_dir: str = "wav"

    @property
    def zip_name(self) -> str:
        """Cache file name of the zip: ``emodb-download.zip``."""
        return f"{self.name.lower()}-{self.pin.name}"


EMODB = CorpusDownload("EmoDB", PinnedFile(EMODB_URL, EMODB_ZIP_SIZE, EMODB_ZIP_SHA256), n_audio=535,
                       sample_rate=16_000, make_var="EMODB")

CORPUS_DOWNLOADS: dict[str, CorpusDownload] = {"emodb": EMODB}
"""Corpus name (as in ``ser-manifest``) -> its download."""


def audio_files(folder: Path) -> list[Path]:
    """The ``.wav``/``.flac`` files directly in ``folder`` (hidden files skipped), sorted."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in (".wav", ".flac"))


def is_complete(dest: str | os.PathLike, spec: CorpusDownload = EMODB) -> bool:
    """True if ``dest/<audio_dir>`` holds ``spec.n_audio`` audio files (a download, ``../shared`` or a user's copy)."""
    return len(audio_files(Path(dest) / spec.audio_dir)) == spec.n_audio


def _check_members(zf: zipfile.ZipFile, zip_path: Path, spec: CorpusDownload) -> None:
    """Refuse unsafe member names and a zip without ``<audio_dir>/*.wav``."""
    for info in zf.infolist():
        p = PurePosixPath(info.filename)
        if p.is_absolute() or ".." in p.parts or "\\" in info.filename:
            raise DownloadError(f"{zip_path}: refused: member {info.filename!r} would be written outside the "
                                f"corpus folder; delete the zip and download it again")
    wavs = [n for n in zf.namelist() if PurePosixPath(n).parent == PurePosixPath(spec.audio_dir)
            and n.lower().endswith(".wav")]
    if not wavs:
        tops = sorted({PurePosixPath(n).parts[0] for n in zf.namelist() if n})[:8]
        raise DownloadError(f"{zip_path}: no {spec.audio_dir}/*.wav in the zip (top-level entries: {tops}); "
                            f"it is not the {spec.name} distribution: delete it and download it again")


def check_layout(folder: Path, spec: CorpusDownload = EMODB) -> int:
    """Check an unpacked corpus: the audio count, every name an EmoDB name, every file at ``spec.sample_rate``.

    Returns the number of audio files. Raises :class:`DownloadError` naming the first problems.
    """
    files = audio_files(folder / spec.audio_dir)
    problems: list[str] = []
    for f in files:
        try:
            parse_name(f)
        except MalformedName as e:
            problems.append(f"{f.name}: {e}")
            continue
        try:
            sr = sf.info(str(f)).samplerate
        except RuntimeError as e:
            problems.append(f"{f.name}: unreadable audio ({e})")
            continue
        if sr != spec.sample_rate:
            problems.append(f"{f.name}: {sr} Hz, expected {spec.sample_rate}")
    if len(files) != spec.n_audio:
        problems.insert(0, f"{len(files)} audio files in {spec.audio_dir}/, expected {spec.n_audio}")
    if problems:
        shown = shorten(problems, 5, sep="; ", more="; … ({total} problems)")
        raise DownloadError(f"the {spec.name} download does not have the expected layout: {shown}")
    return len(files)


def unpack(zip_path: Path, dest: Path, spec: CorpusDownload, sha256: str) -> Path:
    """Unpack ``zip_path`` into a temporary folder beside ``dest``, check it, and rename it to ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpacking-", dir=dest.parent))
    try:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                _check_members(zf, zip_path, spec)
                zf.extractall(tmp)
        except zipfile.BadZipFile as e:
            zip_path.unlink(missing_ok=True)
            raise DownloadError(f"{zip_path}: not a valid zip ({e}); it was deleted: rerun to download it "
                                f"again") from None
        n = check_layout(tmp, spec)
        (tmp / MARKER).write_text(json.dumps({
            "corpus": spec.name, "url": spec.pin.url, "sha256": sha256, "bytes": zip_path.stat().st_size,
            "pinned": spec.pin.sha256 is not None, "n_audio": n,
            "downloaded_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2) + "\n")
        if dest.is_dir() and not any(dest.iterdir()):
            dest.rmdir()  # an empty folder made by hand is replaced
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def fetch_corpus(dest: str | os.PathLike, spec: CorpusDownload = EMODB,
                 cache_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """Make ``dest`` a complete copy of ``spec``; returns ``(dest, what was done)``.

    ``what`` is ``"present"`` (nothing to do) or ``"downloaded"``. The zip is cached as
    ``<cache>/downloads/<zip_name>`` (``cache_dir``, else ``$SER_CACHE``, else ``~/.cache/ser_toolkit``).

    Raises:
        DownloadUnavailable: offline; the message says what to download, from where, where to put it, and
            which Make variable takes a local copy.
        DownloadError: an HTTP error, a checksum mismatch, a zip of another layout, or ``dest`` is a non-empty
            folder without the corpus (it is never overwritten).
    """
    dest = Path(dest).expanduser()
    if is_complete(dest, spec):
        return dest, "present"
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DownloadError(f"{dest} exists but does not hold {spec.name} ({spec.n_audio} audio files in "
                            f"{spec.audio_dir}/; found {len(audio_files(dest / spec.audio_dir))}); it is not "
                            f"overwritten: remove it, or pass the folder of your copy as {spec.make_var}=…")
    zip_path = cache_root(cache_dir) / "downloads" / spec.zip_name
    hint = (f"or unzip it so that {dest / spec.audio_dir} holds its {spec.n_audio} .wav files, or pass the "
            f"folder that holds {spec.audio_dir}/ to make: `make demo {spec.make_var}=/path/to/{spec.name.lower()}`")
    fetch(spec.pin, zip_path, what=f"{spec.name} ({spec.pin.name})", hint=hint)
    unpack(zip_path, dest, spec, sha256_file(zip_path))
    return dest, "downloaded"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("corpus", type=click.Choice(sorted(CORPUS_DOWNLOADS)))
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the zip is kept (default: $SER_CACHE, else ~/.cache/ser_toolkit).")
def main(corpus: str, dest: Path, cache_dir: Path | None) -> None:
    """Make DEST a complete copy of CORPUS: nothing to do if it is there, else download, verify and unpack."""
    spec = CORPUS_DOWNLOADS[corpus]
    try:
        path, what = fetch_corpus(dest, spec, cache_dir)
    except DownloadError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{spec.name}: {path} ({what})")


if __name__ == "__main__":
    main()
