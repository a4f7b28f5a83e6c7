"""Finding audio files (wav/flac) in a corpus tree and reading their durations from the header only."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable

import soundfile as sf

from ser_common.listing import indented

from .problems import CorpusWarning

AUDIO_SUFFIXES: frozenset[str] = frozenset({".wav", ".flac"})
"""File suffixes (lower case) read as audio; any sample rate and channel count is accepted."""


def is_hidden(path: Path) -> bool:
    """Dot files such as macOS ``._03a01Fa.wav`` resource forks and ``.DS_Store``: never audio, never reported."""
    return path.name.startswith(".")


def list_audio(folder: str | os.PathLike, recursive: bool = False, warn_stray: bool = True) -> list[Path]:
    """Audio files (``.wav``/``.flac``, any case) in ``folder``, sorted by path.

    Hidden files are ignored silently; other non-audio files (``.txt`` notes, ``.csv`` …) are ignored with one
    :class:`CorpusWarning` when ``warn_stray``. Sub-folders are searched only when ``recursive``.
    """
    folder = Path(folder)
    entries = folder.rglob("*") if recursive else folder.iterdir()
    audio: list[Path] = []
    stray: list[str] = []
    for p in entries:
        if any(part.startswith(".") for part in p.relative_to(folder).parts) or not p.is_file():
            continue  # hidden files, and anything in hidden folders
        if p.suffix.lower() in AUDIO_SUFFIXES:
            audio.append(p)
        else:
            stray.append(str(p))
    if stray and warn_stray:
        warnings.warn(f"{folder}: ignored {len(stray)} file(s) that are not .wav/.flac:" + indented(sorted(stray), 5),
                      CorpusWarning, stacklevel=2)
    return sorted(audio)


def audio_duration(path: str | os.PathLike) -> float:
    """Duration of an audio file in seconds, from its header (no decoding).

    Raises ``ValueError`` naming the file when it cannot be read or holds no samples.
    """
    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError) as e:  # soundfile.LibsndfileError is a RuntimeError
        raise ValueError(f"{path}: unreadable audio ({e})") from e
    if info.frames <= 0 or info.samplerate <= 0:
        raise ValueError(f"{path}: empty audio (0 samples)")
    return float(info.frames) / float(info.samplerate)


def read_durations(files: Iterable[Path]) -> tuple[dict[Path, float], list[str]]:
    """Each readable file's duration in seconds (:func:`audio_duration`), and one message per unreadable or
    empty file, in the order of ``files`` (the builders report those with :func:`.problems.fail_or_skip`)."""
    durations: dict[Path, float] = {}
    unreadable: list[str] = []
    for f in files:
        try:
            durations[f] = audio_duration(f)
        except ValueError as e:
            unreadable.append(str(e))
    return durations, unreadable
