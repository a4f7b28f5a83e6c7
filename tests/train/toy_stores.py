"""Tiny generated stores for the training tests: 5 sessions × 2 speakers × 12 utterances, 4 classes.

Frames of class ``c`` have a class-dependent mean (so every head can learn), variable lengths (5-40
frames), 8 dims; a matching text store has 3-9 token rows of 6 dims each with a class-dependent mean.
A few unlabelled rows are added to check they stay out of CV. :func:`relabel` makes degenerate label sets
(one class, a class missing from a session, labels outside the four), :func:`poison` writes NaN/Inf into a
finished store.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ser_common.labels import FOUR_CLASSES
from ser_common.store import StoreWriter, UtteranceMeta

AUDIO_PROV = {"feature": "toy", "modality": "audio", "encoder": "toy-encoder", "weights_sha256": "abc",
              "layer": 3, "crop_s": 5.0, "frame_rate_hz": 50.0, "sample_rate": 16000,
              "compute_dtype": "float32"}
LLD_PROV = {"feature": "lld", "modality": "audio", "encoder": "pyAudioAnalysis.ShortTermFeatures.feature_extraction",
            "weights_sha256": None, "layer": None, "crop_s": 5.0, "frame_rate_hz": 40.0, "sample_rate": 16000}
TEXT_PROV = {"feature": "bert-toy", "modality": "text", "encoder": "toy-bert", "weights_sha256": "def",
             "layer": None, "crop_s": None, "frame_rate_hz": None, "sample_rate": None}


def toy_rows(n_unlabelled: int = 4):
    rows = []
    i = 0
    for sess in range(5):
        for spk in range(2):
            for u in range(12):
                rows.append((f"S{sess + 1}_{spk}_{u:02d}", FOUR_CLASSES[(u + spk) % 4], f"spk{sess}{spk}",
                             f"Ses0{sess + 1}", i))
                i += 1
    for u in range(n_unlabelled):
        rows.append((f"U_{u:02d}", "", f"spk{u % 5}0", f"Ses0{u % 5 + 1}", i))
        i += 1
    return rows


def _class_index(label: str) -> int:
    """Position of ``label`` in FOUR_CLASSES; other labels get a fixed index after them (by name)."""
    if label in FOUR_CLASSES:
        return FOUR_CLASSES.index(label)
    return len(FOUR_CLASSES) + sum(map(ord, label))


def relabel(mapping: dict[str, str], rows=None, where=lambda row: True):
    """:func:`toy_rows` (or ``rows``) with labels replaced by ``mapping`` on the rows where ``where(row)``."""
    rows = toy_rows() if rows is None else rows
    return [(u, mapping.get(lab, lab) if where((u, lab, s, g, i)) else lab, s, g, i) for (u, lab, s, g, i) in rows]


def poison(path: Path, utt_index: int, frame: int = 0, dim: int = 0, value: float = float("nan")) -> Path:
    """Overwrite one value of a written store's ``/data`` (``StoreWriter`` refuses NaN/Inf, so this goes
    through h5py): frame ``frame``, dim ``dim`` of utterance number ``utt_index``."""
    import h5py

    with h5py.File(path, "r+") as f:
        row = int(f["offsets"][utt_index]) + frame
        f["data"][row, dim] = value
    return path


def write_toy_store(path: Path, dims: int = 8, seed: int = 0, sep: float = 1.0, provenance: dict | None = None,
                    text: bool = False, rows=None, scale: np.ndarray | None = None, dtype: str = "float16") -> Path:
    """Write a toy store; class ``c`` frames ~ N(sep · e_c, 1) (+ label-free noise for unlabelled rows)."""
    rng = np.random.default_rng(seed)
    rows = toy_rows() if rows is None else rows
    prov = dict(provenance or (TEXT_PROV if text else AUDIO_PROV))
    metas, frames, tokens = [], [], []
    for utt, label, spk, sess, idx in rows:
        n = int(rng.integers(3, 10)) if text else int(rng.integers(5, 41))
        mu = np.zeros(dims, np.float32)
        if label:
            mu[_class_index(label) % dims] = sep
        x = rng.standard_normal((n, dims)).astype(np.float32) + mu
        if scale is not None:
            x = x * scale
        metas.append(UtteranceMeta(utt_id=utt, label=label, speaker=spk, session=sess, duration=n / 50,
                                   manifest_index=idx, transcript=f"words of {utt}"))
        frames.append(x)
        tokens.append([f"tok{j}" for j in range(n)])
    with StoreWriter(path, dims=dims, provenance=prov, dtype=dtype, text=text) as w:
        w.append(metas, frames, tokens if text else None)
        return w.finalize()




def write_toy_folder(d: Path, lld_scale: np.ndarray | None = None) -> Path:
    """A stores folder like ``tables`` reads: lld.h5 (optionally scaled per dim), wav2vec-toy.h5 (pre-trained),
    bert-toy.h5 (text, 6 dims)."""
    write_toy_store(d / "lld.h5", seed=1, sep=0.7, provenance=LLD_PROV, scale=lld_scale, dtype="float32")
    write_toy_store(d / "wav2vec-toy.h5", seed=2, sep=1.2)
    write_toy_store(d / "bert-toy.h5", dims=6, seed=3, sep=1.5, text=True)
    return d
