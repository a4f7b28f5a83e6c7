"""The provenance hash of model weights: which files a model was loaded from, and their sha256.

A store records ``weights_sha256`` so that the same weights are recognised under any path (``--like``,
bundles); hashing a few hundred MB takes seconds, so digests are cached per (file, size, mtime) for the
life of the process (:func:`ser_common.provenance.sha256_file_cached`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ser_common.provenance import sha256_file_cached

from .hub import resolve_model_dir

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def weight_files(model_dir: str | os.PathLike) -> list[Path]:
    """The weights files transformers loads from ``model_dir``, sorted by name (safetensors preferred).

    Sharded checkpoints are read from their ``*.index.json``; an empty list when there are none.
    """
    d = Path(model_dir)
    for single in _WEIGHT_FILES:
        index = d / f"{single}.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [d / s for s in shards]
        if (d / single).is_file():
            return [d / single]
    return sorted(d.glob("*.safetensors"))


def weights_sha256(model_dir_or_resolved: Any) -> str | None:
    """sha256 (hex) of the weights a model was loaded from, for provenance.

    ``model_dir_or_resolved``: a model directory, a cached hub id, or a loaded model (its ``name_or_path``).
    One file (``model.safetensors`` or ``pytorch_model.bin``): its sha256. Several shards: the sha256 of the
    concatenated per-shard hex digests, in file-name order. ``None`` for random models (no directory, no
    weights file). Hashes are cached per (file, size, mtime).
    """
    d = resolve_model_dir(model_dir_or_resolved)
    if d is None:
        return None
    files = weight_files(d)
    if not files:
        return None
    digests = [sha256_file_cached(f) for f in files]
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("".join(digests).encode("ascii")).hexdigest()
