"""Where each utterance's audio is: read from the manifest a store was extracted from.

Stores hold features, not audio paths. Their provenance names the manifest (``manifest``, the path as given
to ``ser-extract``, often relative to the folder it ran in) and its sha256 (``manifest_sha256``). That path
is looked up as given (relative to the current folder) and then relative to the store's folder and each
folder above it (extraction usually runs in a folder above the stores); the first file whose sha256 matches
is used, else the first that exists (with a note that it changed since the extraction). ``--manifest``
overrides the lookup. Relative audio paths in a manifest were read by ``ser-extract`` relative to the folder
it ran in; that folder is guessed (:func:`read_audio_paths`); every path returned is absolute.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ser_common.manifest import ManifestError, manifest_sha256, read_manifest

from .data import StoreData

FILL_HINT = "pass --manifest PATH (the manifest the store was extracted from; one per --store, in order)"


def find_manifest(store: StoreData) -> tuple[Path | None, Path | None, str | None]:
    """The manifest ``store`` was extracted from: ``(path, base, note)``.

    ``path``: the manifest file found (absolute), or ``None``; ``base``: the folder its recorded relative
    path resolved from (``None`` for an absolute one); ``note``: why none was found, or that the file found
    differs from the one extracted (sha256), else ``None``.
    """
    recorded = store.provenance.get("manifest")
    if not recorded:
        return None, None, f"{store.path}: its provenance names no manifest"
    rec = Path(str(recorded))
    bases: list[Path | None] = [None] if rec.is_absolute() else [Path.cwd(), *[store.path.resolve().parent,
                                                                              *store.path.resolve().parent.parents]]
    found = [(b, (rec if b is None else b / rec).resolve()) for b in bases]
    found = [(b, p) for b, p in found if p.is_file()]
    if not found:
        return None, None, f"{store.path}: the manifest it was extracted from ({recorded}) is not on this machine"
    want = store.provenance.get("manifest_sha256")
    for b, p in found:
        if want and manifest_sha256(p) == want:
            return p, b, None
    b, p = found[0]
    note = (f"{store.path}: {p} has changed since the store was extracted (sha256 differs); its audio paths "
            f"are used where the ids match") if want else None
    return p, b, note


def read_audio_paths(manifest: str | os.PathLike, base: Path | None = None) -> dict[str, str]:
    """utt_id -> absolute audio path of every record of ``manifest`` that has audio (raises
    :class:`~ser_common.manifest.ManifestError` naming the file for a malformed manifest).

    Relative audio paths are joined to the first of ``base``, the current folder, the manifest's folder and
    the folders above it under which the first five of them exist (else to the first of these).
    """
    manifest = Path(manifest).resolve()
    records = [r for r in read_manifest(manifest, check_audio=False) if r.audio is not None]
    relative = [Path(r.audio).expanduser() for r in records if not Path(r.audio).expanduser().is_absolute()]
    bases = [b for b in (base, Path.cwd(), manifest.parent, *manifest.parent.parents) if b is not None]
    probe = relative[:5]
    root = next((b for b in bases if probe and all((b / a).exists() for a in probe)), bases[0])
    return {r.utt_id: os.path.abspath(root / Path(r.audio).expanduser()) for r in records}


def audio_paths(stores: Sequence[StoreData], manifests: Sequence[str | os.PathLike] | None = None,
                prefixes: Sequence[str] | None = None) -> tuple[dict[str, str], list[str]]:
    """utt_id -> absolute audio path for the utterances of ``stores``, and notes for the user.

    Args:
        stores: the stores as loaded (before :func:`~train.data.combine_stores`).
        manifests: one manifest per store (``--manifest``) or ``None`` to find them (:func:`find_manifest`).
        prefixes: the ``<corpus>`` names :func:`~train.data.combine_stores` gave the stores (its provenance's
            ``corpora``) when several were joined; ids are then returned as ``<corpus>/<utt_id>``.

    Raises ``ValueError`` naming the file for a given manifest that cannot be read or shares no utt_id with
    its store. A store whose manifest cannot be found gets a note (its ids are absent from the mapping).
    """
    if manifests is not None and len(manifests) != len(stores):
        raise ValueError(f"{len(manifests)} --manifest for {len(stores)} --store: give one manifest per store, "
                         f"in the same order")
    out: dict[str, str] = {}
    notes: list[str] = []
    missing_files = 0
    for i, store in enumerate(stores):
        ids = [str(u) for u in store.utt_ids]
        if manifests is not None:
            path, base = Path(manifests[i]), None
            try:
                paths = read_audio_paths(path)
            except ManifestError as e:
                raise ValueError(str(e).splitlines()[0] + " (--manifest)") from None
            if not set(ids) & set(paths):
                raise ValueError(f"{path}: none of the {len(ids)} utterances of {store.path} is in this manifest; "
                                 f"give the manifest the store was extracted from (--manifest, one per --store)")
        else:
            path, base, note = find_manifest(store)
            if note:
                notes.append(note + ("" if path else f"; the audio column is empty: {FILL_HINT}"))
            if path is None:
                continue
            try:
                paths = read_audio_paths(path, base)
            except ManifestError as e:
                notes.append(f"{str(e).splitlines()[0]}; the audio column is empty for {store.path}: {FILL_HINT}")
                continue
        prefix = f"{prefixes[i]}/" if prefixes else ""
        lacking = [u for u in ids if u not in paths]
        if lacking:
            notes.append(f"{path}: {len(lacking)} of the {len(ids)} utterances of {store.path} are not in it (e.g. "
                         f"{lacking[0]!r}); their audio cells are empty")
        for u in ids:
            if u in paths:
                out[prefix + u] = paths[u]
                missing_files += not os.path.isfile(paths[u])
    if missing_files:
        notes.append(f"{missing_files} audio files named by the manifest(s) do not exist on this machine (the "
                     f"paths are written as recorded)")
    return out, notes
