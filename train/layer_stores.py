"""The layer stores of one ``@all`` extraction, found by name and stacked side by side (``--layer-sum``).

``ser-extract --feature hf:MODEL@all`` writes ``<name>-l0.h5`` … ``<name>-lL.h5``: the same utterances and
frame counts, one hidden layer each. :func:`expand_layer_paths` finds them (a glob, or one of them standing
for all), :func:`stack_layers` joins them into one :class:`~train.data.StoreData` of [total_frames × L·D]
(layer ``l`` in columns ``l·D:(l+1)·D``); :mod:`train.layers` trains on it.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ser_common.identity import FeatureIdentity, format_diff
from ser_common.store import StoreError

from .data import StoreData, load_store


def expand_layer_paths(pattern: str | os.PathLike) -> list[Path]:
    """The layer stores a ``--store`` names under ``--layer-sum``, ordered by layer.

    ``pattern`` is a glob (``stores/ravdess/hf-whisper-base-encoder-l*.h5``) or one layer store
    (``…-l4.h5``), which stands for every ``…-l<N>.h5`` beside it. Raises :class:`StoreError` when fewer
    than two layer stores are found.
    """
    text = str(pattern)
    if any(c in text for c in "*?["):
        paths = [Path(p) for p in glob.glob(text)]
    else:
        p = Path(text)
        stem, sep, layer = p.stem.rpartition("-l")
        if not sep or not layer.isdigit():
            raise StoreError(f"{p}: --layer-sum and ser-train sweep need the layer stores of an @all extraction: "
                             f"a glob such as 'stores/x/hf-<model>-l*.h5' or one of them (named …-l<N>.h5)")
        paths = [q for q in p.parent.glob(f"{stem}-l*.h5") if q.stem[len(stem) + 2:].isdigit()]
    paths = sorted((q for q in paths if q.suffix == ".h5" and ".shard-" not in q.name), key=_layer_of_name)
    if len(paths) < 2:
        raise StoreError(f"{text}: --layer-sum and ser-train sweep need at least two layer stores, found "
                         f"{', '.join(map(str, paths)) or 'none'}; extract every layer with "
                         f"ser-extract --feature hf:MODEL@all")
    return paths


def _layer_of_name(p: Path) -> tuple[int, str]:
    _, _, layer = p.stem.rpartition("-l")
    return (int(layer) if layer.isdigit() else 1 << 30, p.name)


def stack_layers(stores: Sequence[StoreData]) -> StoreData:
    """The layer stores of one extraction side by side: frames [total_frames × L·D], in the given order.

    Refused (:class:`StoreError`, naming both files and the fix): stores whose identities differ in anything
    but ``layer`` (another encoder, crop, manifest, dtype …), two stores of one layer, or stores whose
    utterances or frame counts differ. The result's provenance is the first store's with ``layer`` set to
    ``None`` and ``layer_sum`` to the list of layers (an identity setting: a layer-sum model only meets the
    same stack of layers), ``stacked_from`` to the paths (bookkeeping-like, kept for run records).
    """
    stores = list(stores)
    if len(stores) < 2:
        raise StoreError("a layer sum needs at least two layer stores")
    ref = stores[0]
    ref_id = FeatureIdentity.from_provenance(ref.provenance)
    layers: list[int | None] = [ref_id.layer]
    for s in stores[1:]:
        ident = FeatureIdentity.from_provenance(s.provenance)
        diff = {k: v for k, v in ref_id.diff(ident, scope="store").items() if k != "layer"}
        if diff:
            raise StoreError(f"{s.path}: not a layer of the same extraction as {ref.path} "
                             f"({format_diff(diff, ref.path.name, s.path.name)}); --layer-sum stacks the layer "
                             f"stores of one @all extraction")
        if ident.layer in layers:
            raise StoreError(f"{s.path}: layer {ident.layer} is given twice; give each layer store once")
        if not np.array_equal(s.utt_ids, ref.utt_ids) or not np.array_equal(s.offsets, ref.offsets):
            raise StoreError(f"{s.path} and {ref.path} hold other utterances or frame counts; re-extract both "
                             f"layers in one @all run")
        layers.append(ident.layer)
    if any(layer is None for layer in layers):
        raise StoreError(f"{ref.path}: its provenance records no layer; --layer-sum stacks hidden-layer stores "
                         f"of an hf:MODEL@all extraction")
    dtype = ref.frames.dtype if all(s.frames.dtype == ref.frames.dtype for s in stores) else torch.float32
    frames = torch.cat([s.frames.to(dtype) for s in stores], dim=1).contiguous()
    prov = {**ref.provenance, "layer": None, "layer_sum": layers, "dims": int(frames.shape[1]),
            "stacked_from": [str(s.path) for s in stores]}
    stem, _, _ = ref.path.stem.rpartition("-l")
    path = ref.path.with_name(f"{stem or ref.path.stem}-lsum{''.join(f'-{x}' for x in layers)}.h5")
    return StoreData(path=path, provenance=prov, frames=frames, offsets=ref.offsets.copy(), utt_ids=ref.utt_ids,
                     labels=ref.labels, speakers=ref.speakers, sessions=ref.sessions,
                     transcripts=ref.transcripts, is_text=ref.is_text)


def n_stacked_layers(store: StoreData) -> int:
    """How many layers a store's frame rows hold side by side (1 for a plain store)."""
    layers = store.provenance.get("layer_sum")
    return len(layers) if isinstance(layers, list) else 1


def load_stacked(pattern: str | os.PathLike) -> StoreData:
    """The layer stores ``pattern`` names (:func:`expand_layer_paths`), each read once, stacked."""
    return stack_layers([load_store(p) for p in expand_layer_paths(pattern)])
