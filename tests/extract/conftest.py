"""Tiny generated corpora on disk (real wav/flac files) and their manifests."""

from __future__ import annotations

import os
import subprocess
import sys
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


ROOT = Path(__file__).resolve().parents[2]


def slow_extraction_script(manifest: Path, out: Path, *extra: str) -> str:
    """Python source of an ``ser-extract --feature lld`` run slowed down (50 ms per clip) that prints
    ``COMMITTED`` after each committed batch, so a test can kill it mid-run."""
    return (
        "import time\n"
        "import extract.lld as lld\n"
        "from ser_common.store import StoreWriter\n"
        "enc = lld.LLDFeatureSet.encode\n"
        "lld.LLDFeatureSet.encode = lambda self, w: (time.sleep(0.05), enc(self, w))[1]\n"
        "app = StoreWriter.append\n"
        "def announce(self, *a, **k):\n"
        "    app(self, *a, **k); print('COMMITTED', flush=True)\n"
        "StoreWriter.append = announce\n"
        "from extract.cli import main\n"
        f"main(['--manifest', {str(manifest)!r}, '--feature', 'lld', '--out', {str(out)!r}, '--workers', '0', '-q', "
        f"*{list(extra)!r}])\n")


def run_until_commits(script: str, commits: int, env: dict | None = None) -> subprocess.Popen:
    """Start ``script`` and return it (still running) once it has printed ``COMMITTED`` ``commits`` times."""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, **(env or {})})
    seen = 0
    for line in proc.stdout:
        seen += line.startswith("COMMITTED")
        if seen == commits:
            return proc
    raise AssertionError(f"the run ended after {seen} commits")
