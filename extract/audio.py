"""Audio decoding: any wav/flac -> 16 kHz mono float32, cropped, with clear errors for bad input.

Decoding reads only what is needed: the crop (first ``crop_s`` seconds of the utterance, or of its segment
``start``..``end``) is cut at the file's own sample rate before resampling, so a 5 s crop of a long file
costs 5 s of decoding. Resampling uses soxr (``HQ``). Stereo and multi-channel audio is averaged to mono.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

TARGET_SR = 16_000
"""Sample rate (Hz) of every waveform handed to a feature set."""


class AudioError(ValueError):
    """An utterance whose audio cannot be used; the message names the file and the problem."""


def load_audio(path: str | os.PathLike, sr: int = TARGET_SR, crop_s: float | None = None,
               start: float | None = None, end: float | None = None, min_samples: int = 1) -> np.ndarray:
    """Decode ``path`` to a mono float32 waveform in [-1, 1] at ``sr`` Hz, shape ``[samples]``.

    Args:
        path: wav/flac (anything libsndfile reads), any sample rate, any number of channels.
        sr: output sample rate in Hz.
        crop_s: keep only the first ``crop_s`` seconds (after ``start``); ``None`` keeps everything.
        start, end: optional segment of the file in seconds.
        min_samples: shortest acceptable output (e.g. one analysis window of the feature set), in samples.

    Raises:
        AudioError: missing or unreadable file, empty audio, NaN/Inf samples, or a clip shorter than
            ``min_samples`` after cropping and resampling.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError for unreadable files
        raise AudioError(f"{path}: unreadable audio ({e})") from e
    file_sr = int(info.samplerate)
    if file_sr <= 0:
        raise AudioError(f"{path}: invalid sample rate {file_sr}")
    first = int(round((start or 0.0) * file_sr))
    last = info.frames if end is None else min(info.frames, int(round(end * file_sr)))
    if crop_s is not None:
        if crop_s <= 0:
            raise ValueError(f"crop_s must be positive, got {crop_s}")
        last = min(last, first + int(round(crop_s * file_sr)))
    if last <= first:
        raise AudioError(f"{path}: empty audio (0 samples in the requested segment; file has {info.frames})")
    try:
        x, _ = sf.read(str(path), start=first, stop=last, dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioError(f"{path}: unreadable audio ({e})") from e
    if x.size == 0:
        raise AudioError(f"{path}: empty audio")
    x = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    if not np.isfinite(x).all():
        raise AudioError(f"{path}: audio contains NaN or Inf samples")
    if file_sr != sr:
        x = soxr.resample(x, file_sr, sr, quality="HQ").astype(np.float32, copy=False)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.shape[0] < min_samples:
        raise AudioError(f"{path}: too short: {x.shape[0]} samples ({x.shape[0] / sr * 1000:.1f} ms) at {sr} Hz, "
                         f"the feature set needs at least {min_samples} ({min_samples / sr * 1000:.1f} ms)")
    return x
