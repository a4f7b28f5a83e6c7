"""EmoDB (Berlin Database of Emotional Speech, Burkhardt et al. 2005): labels from file names.

Layout: ``ROOT/wav/*.wav|*.flac`` (the corpus as distributed) or the audio files directly in ``ROOT``; any
sample rate. A name such as ``03a01Fa`` reads: speaker ``03``, text id ``a01``, emotion letter ``F``
(W anger, L boredom, E disgust, A fear, F happiness, T sadness, N neutral), version ``a``.

4-class scheme: neutral 79 / happy 71 / sad 62 / angry 127 = 339 of the 535 utterances; 10 speakers, split
into 5 speaker groups (the ``session`` column) balanced over the kept utterances.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ser_common.manifest import ManifestRecord

from .audio_files import list_audio
from .named_files import MalformedName, NamedFile, audio_folder, build_from_names

CORPUS = "emodb"

SENTENCES: dict[str, str] = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Blatt Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
"""The ten carrier sentences, by text id."""

SPEAKER_GENDER: dict[str, str] = {
    "03": "male", "08": "female", "09": "female", "10": "male", "11": "male",
    "12": "male", "13": "female", "14": "female", "15": "male", "16": "female",
}
"""The ten speakers' genders, from the corpus documentation."""

NAME = re.compile(r"(?P<speaker>\d{2})(?P<text>[ab]\d{2})(?P<emotion>[A-Za-z])(?P<version>[a-z])")


def parse_name(path: Path) -> NamedFile:
    """Read speaker, text id, emotion letter and version from an EmoDB file name such as ``03a01Fa.flac``.

    Raises :class:`~data_manifests.named_files.MalformedName` for a name of another shape or an unknown text id.
    """
    m = NAME.fullmatch(path.stem)
    if m is None:
        raise MalformedName("expected <speaker 2 digits><text id a01..b10><emotion letter><version>, "
                            "e.g. 03a01Fa")
    text = m["text"]
    if text not in SENTENCES:
        raise MalformedName(f"unknown text id {text!r}; known: {sorted(SENTENCES)}")
    extra: dict[str, str] = {"text_id": text, "version": m["version"]}
    if m["speaker"] in SPEAKER_GENDER:
        extra["gender"] = SPEAKER_GENDER[m["speaker"]]
    return NamedFile(utt_id=path.stem, speaker=m["speaker"], code=m["emotion"], transcript=SENTENCES[text],
                     extra=extra)


def build_emodb(root: str | os.PathLike, scheme: str = "4class", *, n_groups: int = 5,
                skip_invalid: bool = False) -> list[ManifestRecord]:
    """EmoDB manifest records under label ``scheme`` (``4class`` or ``all``), sorted by utterance id.

    ``session`` is one of ``g1..g<n_groups>``, speaker groups balanced over the kept utterances; ``duration``
    is in seconds; ``extra`` holds ``text_id``, ``version`` and ``gender``. Raises :class:`CorpusError` naming
    malformed files (``skip_invalid``: warn and leave them out).
    """
    folder = audio_folder(root, "EmoDB", "wav")
    return build_from_names(CORPUS, folder, list_audio(folder), parse_name, scheme, n_groups, skip_invalid)
