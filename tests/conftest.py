"""Shared fixtures: the real corpora and models in ``../shared`` (skipped when absent) and tiny generated audio."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SER_SHARED", ROOT.parent / "shared"))


def _shared(rel: str) -> Path:
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"{path} not found: the real corpora/models of ../shared are absent on this machine")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _shared("")


@pytest.fixture(scope="session")
def emodb_dir() -> Path:
    """../shared/data/emodb (wav/*.flac, 535 files)."""
    return _shared("data/emodb")


@pytest.fixture(scope="session")
def ravdess_dir() -> Path:
    """../shared/data/ravdess (Actor_XX/*.flac, 1440 files)."""
    return _shared("data/ravdess")


@pytest.fixture(scope="session")
def whisper_dir() -> Path:
    """../shared/models/whisper-base-encoder (Hugging Face format, encoder weights only)."""
    return _shared("models/whisper-base-encoder")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """../shared/models/minilm-l6-v2 (a BertModel with its WordPiece tokenizer)."""
    return _shared("models/minilm-l6-v2")


def make_tone(seconds: float, sr: int = 16_000, freq: float = 220.0, seed: int = 0, channels: int = 1) -> np.ndarray:
    """A float32 test signal: a tone plus a little noise, shape [samples] (or [samples, channels])."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    x = x.astype(np.float32)
    if channels > 1:
        x = np.stack([x * (0.5 + 0.5 * c / channels) for c in range(channels)], axis=1)
    return x


@pytest.fixture
def tone():
    """``tone(seconds, sr=16000, freq=220, seed=0, channels=1)`` -> float32 array."""
    return make_tone
