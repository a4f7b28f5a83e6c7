"""Fold groups for corpora without sessions: speakers assigned to balanced groups, written into ``session``."""

from __future__ import annotations

import dataclasses

from ser_common.folds import speaker_groups
from ser_common.manifest import ManifestRecord


def assign_speaker_groups(records: list[ManifestRecord], n_groups: int = 5) -> list[ManifestRecord]:
    """Copies of ``records`` with ``session`` set to the speaker's group ``g1..gN``.

    Groups come from :func:`ser_common.folds.speaker_groups` over exactly these records, so call it after the
    label-scheme filter: the folds are then balanced on what is trained. Raises ``ValueError`` when there are
    fewer than ``n_groups`` speakers.
    """
    groups = speaker_groups([r.speaker for r in records], n_groups)
    return [dataclasses.replace(r, session=groups[r.speaker]) for r in records]
