"""Join shard stores (``ser-extract --shard i/N``) into one store, in manifest order."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .store import FeatureStore, StoreError, StoreWriter, UtteranceMeta

_SHARD_KEYS = ("shard", "created_utc", "finalized_utc")


def _comparable(prov: dict) -> dict:
    return {k: v for k, v in prov.items() if k not in _SHARD_KEYS and k != "package_versions"}


def merge_stores(paths: Sequence[str | os.PathLike], out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Merge complete shard stores into ``out``, ordered by manifest index.

    Refuses (:class:`StoreError`) shards whose provenance differs in anything but the shard itself (feature,
    weights, layer, crop, manifest, dtype, …), shards that overlap, or a missing/incomplete shard.
    """
    if not paths:
        raise StoreError("merge: no shard stores given")
    stores = [FeatureStore(p) for p in paths]
    try:
        ref = _comparable(stores[0].provenance)
        for s in stores[1:]:
            diff = {k for k in set(ref) | set(s.provenance)
                    if k not in _SHARD_KEYS and k != "package_versions" and ref.get(k) != s.provenance.get(k)}
            if diff:
                raise StoreError(f"merge: {s.path} differs from {stores[0].path} in {sorted(diff)}")
        ids = np.concatenate([s.utt_ids for s in stores])
        if len(set(ids.tolist())) != len(ids):
            raise StoreError("merge: shards overlap (an utterance appears in more than one shard)")
        order = sorted(((int(s.manifest_index[i]), k, i) for k, s in enumerate(stores) for i in range(len(s))))
        prov = dict(stores[0].provenance)
        prov["shard"] = None
        prov["merged_from"] = [str(p) for p in paths]
        for key in ("dims", "dtype", "format_version"):
            prov.pop(key, None)
        skipped = {}
        for s in stores:
            skipped.update(s.skipped)
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
            for u, why in skipped.items():
                writer.skip(u, why)
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
