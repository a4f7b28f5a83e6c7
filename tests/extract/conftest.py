"""Tiny generated corpora on disk (real wav/flac files) and their manifests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser_common.manifest import ManifestRecord, write_manifest
from tests.conftest import make_tone

LABELS = ("neutral", "happy", "sad", "angry")


def write_corpus(root: Path, n: int = 12, seconds=(0.6, 1.6), sr: int = 16_000, fmt: str = "flac",
                 seed: int = 0) -> Path:
    """``n`` utterances of 0.6-1.6 s tones at ``sr`` Hz in ``root/audio``; returns the manifest path."""
    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    recs = []
    for i in range(n):
        dur = float(rng.uniform(*seconds))
        path = root / "audio" / f"u{i:03d}.{fmt}"
        sf.write(path, make_tone(dur, sr=sr, freq=150 + 20 * i, seed=i), sr)
        recs.append(ManifestRecord(utt_id=f"u{i:03d}", audio=str(path), corpus="test", speaker=f"s{i % 5}",
                                   session=f"g{i % 5 + 1}", label=LABELS[i % 4],
                                   transcript=f"utterance number {i}", duration=sf.info(path).duration))
    return write_manifest(recs, root / "manifest.jsonl")


@pytest.fixture
def corpus(tmp_path) -> Path:
    """Manifest of 12 short 16 kHz flac tones with labels, speakers, sessions and transcripts."""
    return write_corpus(tmp_path)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread: tiny forward passes are far faster without thread contention on shared CPUs."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
