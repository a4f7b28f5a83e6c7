"""Join shard stores (``ser-extract --shard i/N``) into one store, in manifest order."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .identity import format_diff
from .store import FeatureStore, StoreError, StoreWriter, UtteranceMeta


def merge_stores(paths: Sequence[str | os.PathLike], out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Merge complete shard stores into ``out``, ordered by manifest index.

    Refuses (:class:`StoreError`) shards whose :class:`~ser_common.identity.FeatureIdentity` differs (feature,
    weights, layer, crop, manifest, dtypes, settings, …; the shard itself is bookkeeping), shards that
    overlap, or a missing/incomplete shard. Skipped utterances keep their source signatures.
    """
    if not paths:
        raise StoreError("merge: no shard stores given")
    stores: list[FeatureStore] = []
    try:
        for p in paths:
            stores.append(FeatureStore(p))
        for s in stores[1:]:
            diff = stores[0].identity.diff(s.identity)
            if diff:
                raise StoreError(f"merge: {s.path} holds other features than {stores[0].path} "
                                 f"({format_diff(diff, stores[0].path.name, s.path.name)}); extract every shard "
                                 f"with the same settings and manifest")
        ids = np.concatenate([s.utt_ids for s in stores])
        if len(set(ids.tolist())) != len(ids):
            raise StoreError("merge: shards overlap (an utterance appears in more than one shard)")
        order = sorted(((int(s.manifest_index[i]), k, i) for k, s in enumerate(stores) for i in range(len(s))))
        prov = dict(stores[0].provenance)
        prov["shard"] = None
        prov["merged_from"] = [str(p) for p in paths]
        for key in ("dims", "dtype", "format_version"):
            prov.pop(key, None)
        skipped, sources = {}, {}
        for s in stores:
            skipped.update(s.skipped)
            sources.update(s.skip_sources)
        writer = StoreWriter(out, dims=stores[0].dims, provenance=prov, dtype=stores[0].provenance["dtype"],
                             text=stores[0].is_text, overwrite=overwrite)
        with writer:
            batch: list[tuple[int, int]] = []
            for _, k, i in order:
                batch.append((k, i))
                if len(batch) == 256:
                    _copy(writer, stores, batch)
                    batch = []
            _copy(writer, stores, batch)
            writer.add_skips(skipped, sources)
            return writer.finalize()
    finally:
        for s in stores:
            s.close()


def _copy(writer: StoreWriter, stores: list[FeatureStore], batch: list[tuple[int, int]]) -> None:
    if not batch:
        return
    metas, frames, tokens = [], [], []
    for k, i in batch:
        s = stores[k]
        metas.append(UtteranceMeta(
            utt_id=s.utt_ids[i], label=s.labels[i] or None, speaker=s.speakers[i], session=s.sessions[i],
            duration=float(s.durations[i]), manifest_index=int(s.manifest_index[i]),
            transcript=s.transcripts[i] or None))
        frames.append(s.frames(i))
        if s.is_text:
            tokens.append(s.tokens(i))
    writer.append(metas, frames, tokens if writer.text else None)
