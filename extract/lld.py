"""The paper's low-level descriptors: the 34 pyAudioAnalysis short-term features.

``ShortTermFeatures.feature_extraction(x, 16000, 800, 400, deltas=False)``: 50 ms window, 25 ms step, so
40 frames/s. The 34 columns, in pyAudioAnalysis' order: zcr, energy, energy_entropy, spectral_centroid,
spectral_spread, spectral_entropy, spectral_flux, spectral_rolloff, mfcc_1..13, chroma_1..12, chroma_std.

pyAudioAnalysis is single-threaded numpy code, so the extraction pipeline runs this feature set inside its
decoding worker processes (:attr:`LLDFeatureSet.runs_in_workers`), one utterance per call.

pyAudioAnalysis 0.3.14 rebuilds its chroma bin tables (``chroma_features_init``, a pure function of the FFT
size and the sample rate) for every 50 ms frame, about half of its time. :func:`_reuse_chroma_tables`
memoises that one function (read-only arrays, the same values), so every descriptor is unchanged to the bit
(tests/extract/test_lld.py) and a clip takes about half the time.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .feature_set import SAMPLE_RATE, FeatureSet
from .registry import register

WINDOW_S = 0.050
STEP_S = 0.025


def _names() -> list[str]:
    return (["zcr", "energy", "energy_entropy", "spectral_centroid", "spectral_spread", "spectral_entropy",
             "spectral_flux", "spectral_rolloff"] + [f"mfcc_{i}" for i in range(1, 14)]
            + [f"chroma_{i}" for i in range(1, 13)] + ["chroma_std"])


LLD_NAMES: tuple[str, ...] = tuple(_names())


def _reuse_chroma_tables(short_term_features: Any) -> None:
    """Memoise ``short_term_features.chroma_features_init`` (once per process; see the module docstring)."""
    build = short_term_features.chroma_features_init
    if getattr(build, "reuses_tables", False):
        return

    @functools.lru_cache(maxsize=8)
    def tables(num_fft: int, sampling_rate: float) -> tuple[np.ndarray, np.ndarray]:
        out = build(num_fft, sampling_rate)
        for a in out:
            a.setflags(write=False)     # shared by every frame: never written (chroma_features only reads)
        return out

    tables.reuses_tables = True  # type: ignore[attr-defined]
    tables.original = build  # type: ignore[attr-defined]
    short_term_features.chroma_features_init = tables


class LLDFeatureSet(FeatureSet):
    """34 pyAudioAnalysis descriptors per 50 ms window, 25 ms step: float32 [frames, 34] at 40 frames/s.

    Frames for ``n`` samples: ``floor((n - 800) / 400) + 1`` (a clip shorter than one 50 ms window has none,
    so :attr:`min_samples` is 800).
    """

    name = "lld"
    modality = "audio"
    dims = len(LLD_NAMES)
    frame_rate_hz = 1.0 / STEP_S
    runs_in_workers = True

    def __init__(self) -> None:
        self.window = int(round(WINDOW_S * SAMPLE_RATE))
        self.step = int(round(STEP_S * SAMPLE_RATE))
        self.min_samples = self.window

    def provenance(self) -> dict[str, Any]:
        from importlib import metadata
        return {
            "feature": self.name, "spec": self.spec or self.name, "modality": self.modality,
            "encoder": "pyAudioAnalysis.ShortTermFeatures.feature_extraction",
            "encoder_class": "pyAudioAnalysis " + metadata.version("pyAudioAnalysis"),
            "weights_sha256": None, "layer": None, "window_s": WINDOW_S, "step_s": STEP_S, "deltas": False,
            "frame_rate_hz": self.frame_rate_hz, "dims": self.dims, "sample_rate": SAMPLE_RATE,
            "columns": list(LLD_NAMES),
        }

    def encode_one(self, wave: np.ndarray) -> np.ndarray:
        """``wave`` float32 [samples] at 16 kHz -> float32 [frames, 34]."""
        from pyAudioAnalysis import ShortTermFeatures

        _reuse_chroma_tables(ShortTermFeatures)
        if wave.shape[0] < self.window:
            raise ValueError(f"{wave.shape[0]} samples is shorter than one {WINDOW_S * 1000:.0f} ms window")
        feats, _ = ShortTermFeatures.feature_extraction(wave.astype(np.float64), SAMPLE_RATE, self.window,
                                                        self.step, deltas=False)
        return np.ascontiguousarray(feats.T, dtype=np.float32)

    def encode(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        return [self.encode_one(w) for w in waves]

    def n_frames(self, n_samples: int) -> int:
        """``floor((n - 800) / 400) + 1`` (0 below one 50 ms window)."""
        n = int(n_samples)
        return 0 if n < self.window else (n - self.window) // self.step + 1

    @property
    def max_batch_samples(self) -> int:
        return SAMPLE_RATE * 5 * 32


@register("lld", "the paper's 34 pyAudioAnalysis low-level descriptors (50 ms window, 25 ms step, 40 frames/s)")
def build_lld(arg: str | None) -> LLDFeatureSet:
    if arg:
        raise ValueError(f"lld takes no argument, got {arg!r}")
    return LLDFeatureSet()
