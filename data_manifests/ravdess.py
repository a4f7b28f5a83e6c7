"""RAVDESS speech, audio-only (Livingstone & Russo 2018): labels from file names.

Layout: ``ROOT/Actor_01 … Actor_24/*.wav|*.flac``. A name such as ``03-01-06-01-02-01-12`` reads: modality
(03 audio-only), vocal channel (01 speech, 02 song), emotion (01 neutral, 02 calm, 03 happy, 04 sad,
05 angry, 06 fearful, 07 disgust, 08 surprised), intensity (01 normal, 02 strong), statement (01/02),
repetition (01/02), actor (odd male, even female). Only audio-only speech files are used; song or video
files in the tree are left out with a warning.

4-class scheme: neutral 96 / happy 192 / sad 192 / angry 192 = 672 of 1440 utterances; 24 speakers in 5
balanced speaker groups (the ``session`` column).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

from ser_common.manifest import ManifestRecord

from .audio_files import list_audio
from .named_files import MalformedName, NamedFile, build_from_names
from .problems import CorpusError, CorpusWarning

CORPUS = "ravdess"

STATEMENTS: dict[str, str] = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
"""The two carrier sentences, by statement code."""

INTENSITIES: dict[str, str] = {"01": "normal", "02": "strong"}

NAME = re.compile(r"(?P<modality>\d{2})-(?P<channel>\d{2})-(?P<emotion>\d{2})-(?P<intensity>\d{2})-"
                  r"(?P<statement>\d{2})-(?P<repetition>\d{2})-(?P<actor>\d{2})")
ACTOR_FOLDER = re.compile(r"Actor_(\d{2})")


def parse_name(path: Path) -> NamedFile | None:
    """Read a RAVDESS file name such as ``03-01-06-01-02-01-12.wav``; ``None`` for song or video files.

    The actor must match an enclosing ``Actor_XX`` folder. Raises
    :class:`~data_manifests.named_files.MalformedName` naming the field that is wrong.
    """
    m = NAME.fullmatch(path.stem)
    if m is None:
        raise MalformedName("expected 7 two-digit fields modality-channel-emotion-intensity-statement-"
                            "repetition-actor, e.g. 03-01-06-01-02-01-12")
    if m["modality"] != "03" or m["channel"] != "01":
        return None
    for part, allowed in (("intensity", INTENSITIES), ("statement", STATEMENTS), ("repetition", ("01", "02"))):
        if m[part] not in allowed:
            raise MalformedName(f"{part} {m[part]!r} not in {sorted(allowed)}")
    actor = int(m["actor"])
    if actor < 1:
        raise MalformedName(f"actor {m['actor']!r} must be 01 or more")
    folder = ACTOR_FOLDER.fullmatch(path.parent.name)
    if folder and int(folder[1]) != actor:
        raise MalformedName(f"actor {m['actor']} in the name but the file is in {path.parent.name}")
    return NamedFile(
        utt_id=path.stem, speaker=f"Actor_{actor:02d}", code=m["emotion"], transcript=STATEMENTS[m["statement"]],
        extra={"intensity": INTENSITIES[m["intensity"]], "statement": int(m["statement"]),
               "repetition": int(m["repetition"]), "gender": "male" if actor % 2 else "female"})


def audio_files(root: str | os.PathLike) -> list[Path]:
    """Audio files of every ``ROOT/Actor_XX`` folder; raises :class:`CorpusError` when there is none."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: RAVDESS folder not found")
    actors = sorted(p for p in root.iterdir() if p.is_dir() and ACTOR_FOLDER.fullmatch(p.name))
    if not actors:
        raise CorpusError(f"{root}: no Actor_XX folders found (expected ROOT/Actor_01/03-01-01-01-01-01-01.wav …)")
    return [f for a in actors for f in list_audio(a)]


def build_ravdess(root: str | os.PathLike, scheme: str = "4class", *, n_groups: int = 5,
                  skip_invalid: bool = False) -> list[ManifestRecord]:
    """RAVDESS speech manifest records under label ``scheme`` (``4class`` or ``all``), sorted by utterance id.

    Speakers are ``Actor_01``…; ``session`` is a speaker group ``g1..g<n_groups>`` balanced over the kept
    utterances; ``duration`` is in seconds; ``extra`` holds ``intensity`` (normal/strong), ``statement`` (1/2),
    ``repetition`` (1/2) and ``gender``. Raises :class:`CorpusError` naming malformed files
    (``skip_invalid``: warn and leave them out).
    """
    files = audio_files(root)
    skipped = [f.name for f in files if NAME.fullmatch(f.stem) and not f.stem.startswith("03-01-")]
    if skipped:
        warnings.warn(f"{root}: left out {len(skipped)} file(s) that are not audio-only speech "
                      f"(modality 03, channel 01), e.g. {skipped[0]}", CorpusWarning, stacklevel=2)
    return build_from_names(CORPUS, root, files, parse_name, scheme, n_groups, skip_invalid)
