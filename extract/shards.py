"""Shards of one extraction (``--shard i/N``): which manifest positions a shard takes, its store's name, and
finding the complete sets of shard stores in a folder for ``ser-extract merge``.

A shard ``(i, n)`` processes the records whose manifest position ``p`` has ``p % n == i`` and writes
``<name>.shard-<i>-of-<n>.h5``; :func:`find_shards` groups such files back by ``<name>``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from ser_common.errors import StoreError
from ser_common.manifest import ManifestRecord

SHARD_FILE = re.compile(r"^(?P<name>.+)\.shard-(?P<i>\d+)-of-(?P<n>\d+)\.h5$")
"""A complete shard store's file name: ``<name>.shard-<i>-of-<n>.h5``."""


def shard_output_name(name: str, shard: tuple[int, int] | None) -> str:
    """Store name of ``name`` for a shard: ``wav2vec.shard-0-of-4`` (plain ``name`` without sharding)."""
    return name if shard is None else f"{name}.shard-{shard[0]}-of-{shard[1]}"


def merged_path(shard_path: Path) -> Path:
    """Where ``ser-extract merge`` puts the store a shard file belongs to: ``x/lld.shard-0-of-2.h5`` ->
    ``x/lld.h5`` (a path that is not a shard file is returned as is)."""
    m = SHARD_FILE.match(shard_path.name)
    return shard_path.with_name(f"{m['name']}.h5") if m else shard_path


def select_shard(records: Sequence[ManifestRecord], shard: tuple[int, int] | None) -> list[int]:
    """Manifest positions of the records this shard processes (deterministic: position mod n)."""
    if shard is None:
        return list(range(len(records)))
    i, n = shard
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"shard {i}/{n}: need 0 <= i < n")
    return [p for p in range(len(records)) if p % n == i]


def find_shards(store_dir: Path) -> dict[str, list[Path]]:
    """Shard stores in a folder grouped by store name, each list in shard order ``0 … n-1``.

    Raises :class:`~ser_common.errors.StoreError` when a shard is unfinished (``.partial``), when the shards of
    a name disagree on ``n``, or when some are missing.
    """
    groups: dict[str, dict[int, Path]] = defaultdict(dict)
    counts: dict[str, set[int]] = defaultdict(set)
    for p in sorted(store_dir.glob("*.shard-*-of-*.h5*")):
        m = SHARD_FILE.match(p.name.removesuffix(".partial"))
        if not m:
            continue
        if p.name.endswith(".partial"):
            raise StoreError(f"{p}: shard is unfinished; rerun its extraction to resume before merging")
        groups[m["name"]][int(m["i"])] = p
        counts[m["name"]].add(int(m["n"]))
    out = {}
    for name, shards in groups.items():
        if len(counts[name]) != 1:
            raise StoreError(f"{store_dir}: shards of {name} disagree on N: {sorted(counts[name])}")
        n = counts[name].pop()
        missing = sorted(set(range(n)) - set(shards))
        if missing:
            raise StoreError(f"{store_dir}: {name} misses shard(s) {missing} of {n}")
        out[name] = [shards[i] for i in range(n)]
    return out
