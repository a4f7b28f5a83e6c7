"""CREMA-D (Cao et al. 2014): labels from file names.

Layout: ``ROOT/AudioWAV/*.wav`` (the corpus as distributed) or the audio files directly in ``ROOT``; ``.flac``
and any sample rate are accepted too. A name such as ``1001_DFA_ANG_XX`` reads: actor ``1001``, sentence
code ``DFA``, emotion (ANG, DIS, FEA, HAP, NEU, SAD), intensity (LO, MD, HI, or XX unspecified).
91 actors, 7442 clips; the 4-class scheme keeps NEU/HAP/SAD/ANG. ``session`` is a speaker group
``g1..g5`` balanced over the kept utterances.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ser_common.manifest import ManifestRecord

from .audio_files import list_audio
from .named_files import MalformedName, NamedFile, audio_folder, build_from_names

CORPUS = "crema-d"

SENTENCES: dict[str, str] = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
"""The twelve carrier sentences, by sentence code."""

INTENSITIES: dict[str, str] = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}

NAME = re.compile(r"(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<intensity>[A-Z]{2})")


def parse_name(path: Path) -> NamedFile:
    """Read actor, sentence, emotion and intensity from a CREMA-D file name such as ``1001_DFA_ANG_XX.wav``.

    Raises :class:`~data_manifests.named_files.MalformedName` for another shape, an unknown sentence code or
    an unknown intensity.
    """
    m = NAME.fullmatch(path.stem)
    if m is None:
        raise MalformedName("expected <actor 4 digits>_<sentence>_<emotion>_<intensity>, e.g. 1001_DFA_ANG_XX")
    if m["sentence"] not in SENTENCES:
        raise MalformedName(f"unknown sentence code {m['sentence']!r}; known: {sorted(SENTENCES)}")
    if m["intensity"] not in INTENSITIES:
        raise MalformedName(f"unknown intensity {m['intensity']!r}; known: {sorted(INTENSITIES)}")
    return NamedFile(utt_id=path.stem, speaker=m["actor"], code=m["emotion"], transcript=SENTENCES[m["sentence"]],
                     extra={"sentence": m["sentence"], "intensity": INTENSITIES[m["intensity"]]})


def build_crema_d(root: str | os.PathLike, scheme: str = "4class", *, n_groups: int = 5,
                  skip_invalid: bool = False) -> list[ManifestRecord]:
    """CREMA-D manifest records under label ``scheme`` (``4class`` or ``all``), sorted by utterance id.

    Speakers are the 4-digit actor ids; ``session`` is a speaker group ``g1..g<n_groups>`` balanced over the
    kept utterances; ``duration`` is in seconds; ``extra`` holds ``sentence`` (code) and ``intensity``. Raises
    :class:`CorpusError` naming malformed, unreadable or empty files (``skip_invalid``: warn and leave them
    out).
    """
    folder = audio_folder(root, "CREMA-D", "AudioWAV")
    return build_from_names(CORPUS, folder, list_audio(folder), parse_name, scheme, n_groups, skip_invalid)
