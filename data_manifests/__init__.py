"""Corpus trees -> manifests: one small module per corpus, each a function from a root folder to records.

Every builder returns a list of :class:`ser_common.manifest.ManifestRecord` with readable labels under a label
scheme (``4class``: the paper's neutral/happy/sad/angry, other classes dropped; ``all``: every class), the
fold group in ``session`` (IEMOCAP's sessions, or balanced speaker groups ``g1..g5``) and each file's
``duration`` in seconds, read from its header. Write them with :func:`ser_common.manifest.write_manifest`, or
use the ``ser-manifest`` CLI (:mod:`data_manifests.cli`).

    >>> from data_manifests import CORPORA
    >>> records = CORPORA["emodb"]("../shared/data/emodb", scheme="4class")   # doctest: +SKIP

A folder of audio (a labelling team's pool, or a corpus nobody here prepared: a folder per emotion, speaker
codes in the file names) is :func:`data_manifests.folder.build_folder`; a transcript table (CSV, with or
without audio) is :func:`data_manifests.transcript_table.build_csv`.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from ser_common.manifest import ManifestRecord

from .crema_d import build_crema_d
from .emodb import build_emodb
from .folder import build_folder
from .iemocap import build_iemocap
from .problems import CorpusError, CorpusWarning, FoldWarning
from .ravdess import build_ravdess
from .transcript_table import build_csv

Builder = Callable[..., list[ManifestRecord]]
"""``build_<corpus>(root, scheme='4class', *, skip_invalid=False, …) -> list[ManifestRecord]``."""

CORPORA: dict[str, Builder] = {
    "iemocap": build_iemocap,
    "emodb": build_emodb,
    "ravdess": build_ravdess,
    "crema-d": build_crema_d,
}
"""Corpus name (as in the CLI and in ``ManifestRecord.corpus``) -> builder."""


def build_manifest(corpus: str, root: str | os.PathLike, scheme: str = "4class",
                   **options: Any) -> list[ManifestRecord]:
    """Records of ``corpus`` (a key of :data:`CORPORA`) found under ``root``; ``options`` go to its builder."""
    if corpus not in CORPORA:
        raise ValueError(f"unknown corpus {corpus!r}; known: {sorted(CORPORA)} (or build_folder for your own audio)")
    return CORPORA[corpus](root, scheme, **options)


__all__ = ["CORPORA", "Builder", "CorpusError", "CorpusWarning", "FoldWarning", "build_crema_d", "build_csv",
           "build_emodb", "build_folder", "build_iemocap", "build_manifest", "build_ravdess"]
