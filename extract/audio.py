"""Audio decoding: any wav/flac -> 16 kHz mono float32, cropped, with clear errors for bad input.

Decoding reads only what is needed: the crop (first ``crop_s`` seconds of the utterance, or of its segment
``start``..``end``) is cut at the file's own sample rate before resampling, so a 5 s crop of a long file
costs 5 s of decoding. Resampling uses soxr (``HQ``). Stereo and multi-channel audio is averaged to mono.

Resource limits: the header is checked before anything is decoded, so a corrupt or hostile file cannot make
a worker allocate gigabytes or spin on a 10 MHz resample. Refused with :class:`AudioError`:

* a sample rate outside :data:`MIN_SAMPLE_RATE` … :data:`MAX_SAMPLE_RATE` (1 kHz … 768 kHz);
* more than :data:`MAX_CHANNELS` (64) channels, or none;
* more than :data:`MAX_DURATION_S` (4 h) of frames;
* a frame count that cannot fit the file's bytes: for uncompressed formats (WAV, AIFF, AU, CAF, …) the
  frames times the bytes per frame must fit the file, and for RIFF/WAVE files the ``data`` chunk's
  declared size must fit what the file holds (a truncated download, or a header claiming 4 GB in a
  1 kB file; libsndfile would silently read what is there).
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from .feature_set import SAMPLE_RATE  # the rate every waveform handed to a feature set has (the default here)

MIN_SAMPLE_RATE = 1_000
"""Lowest sample rate (Hz) a header may claim; below it the file is corrupt or not speech audio."""
MAX_SAMPLE_RATE = 768_000
"""Highest sample rate (Hz) a header may claim (the fastest rate of studio converters)."""
MAX_CHANNELS = 64
"""Most channels a header may claim."""
MAX_DURATION_S = 4 * 3600.0
"""Longest file (seconds of frames at the file's own rate) accepted; longer recordings must be cut first."""

_BYTES_PER_SAMPLE = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8,
                     "ULAW": 1, "ALAW": 1}
"""Fixed sample sizes (bytes) of uncompressed subtypes: their frame count must fit the file's byte size."""
_UNCOMPRESSED_FORMATS = {"WAV", "WAVEX", "W64", "RF64", "AIFF", "AU", "CAF", "RAW", "IRCAM", "NIST", "SVX"}
"""Containers whose samples are stored as they are (FLAC/OGG/MP3 report PCM subtypes but compress)."""
_REENCODE = "re-export it from the original (e.g. `ffmpeg -i in.wav -ar 16000 -ac 1 out.flac`)"


class AudioError(ValueError):
    """An utterance whose audio cannot be used; the message names the file and the problem."""


def _riff_data_claim(path: Path, file_size: int) -> tuple[int, int] | None:
    """(declared, available) bytes of a RIFF/WAVE file's ``data`` chunk, or ``None`` when not RIFF/WAVE.

    Walks the chunk headers only (at most 64 chunks, a few bytes each); the samples are never read.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            pos = 12
            for _ in range(64):
                f.seek(pos)
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"data":
                    return size, max(0, file_size - pos - 8)
                pos += 8 + size + (size & 1)
                if pos >= file_size:
                    return None
    except OSError:
        return None
    return None


def check_header(path: Path, info: Any) -> None:
    """Refuse a header whose rate, channels or length is absurd, before any sample is decoded.

    Args:
        path: the audio file (for its byte size and, for RIFF/WAVE, its ``data`` chunk header).
        info: ``soundfile.info(path)``.

    Raises:
        AudioError: naming the file, what the header claims, the accepted range, and the fix.
    """
    file_sr, channels, frames = int(info.samplerate), int(info.channels), int(info.frames)
    if not MIN_SAMPLE_RATE <= file_sr <= MAX_SAMPLE_RATE:
        raise AudioError(f"{path}: header claims a sample rate of {file_sr} Hz, outside the accepted "
                         f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz; the file is corrupt or not audio: {_REENCODE}")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"{path}: header claims {channels} channels, outside the accepted 1-{MAX_CHANNELS}; "
                         f"the file is corrupt, or mix it down first (e.g. `ffmpeg -i in.wav -ac 1 out.flac`)")
    if frames < 0 or frames > MAX_DURATION_S * file_sr:
        hours = frames / file_sr / 3600
        raise AudioError(f"{path}: header claims {frames} frames ({hours:.1f} h at {file_sr} Hz), more than the "
                         f"accepted {MAX_DURATION_S / 3600:g} h; the header is corrupt, or cut the recording into "
                         f"files of at most {MAX_DURATION_S / 3600:g} h (e.g. `ffmpeg -i in.wav -f segment "
                         f"-segment_time 3600 out%03d.flac`)")
    size = path.stat().st_size
    sample_bytes = _BYTES_PER_SAMPLE.get(str(info.subtype))
    if str(info.format) in _UNCOMPRESSED_FORMATS and sample_bytes:
        need = frames * channels * sample_bytes
        if need > size:
            raise AudioError(f"{path}: header claims {frames} frames of {channels} x {info.subtype} "
                             f"({need} bytes) but the file has only {size} bytes; the file is truncated or its "
                             f"header is corrupt: download it again or {_REENCODE}")
    claim = _riff_data_claim(path, size)
    if claim is not None and claim[0] > claim[1]:
        declared, available = claim
        per_frame = channels * (sample_bytes or 1)
        raise AudioError(f"{path}: WAV header claims {declared} bytes of audio ({declared // per_frame} frames, "
                         f"{declared // per_frame / file_sr / 3600:.2f} h at {file_sr} Hz) but the file holds only "
                         f"{available} bytes after the header; the file is truncated or its header is corrupt: "
                         f"download it again or {_REENCODE}")


def _check_segment(path: Path, start: float | None, end: float | None) -> None:
    """Refuse a segment bound that is negative (soundfile would count it from the end) or not finite."""
    for key, v in (("start", start), ("end", end)):
        if v is None:
            continue
        try:
            ok = not isinstance(v, bool) and math.isfinite(float(v)) and float(v) >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise AudioError(f"{path}: segment {key}={v!r} is not a finite, non-negative number of seconds; "
                             "fix the manifest's start/end")


def load_audio(path: str | os.PathLike, sr: int = SAMPLE_RATE, crop_s: float | None = None,
               start: float | None = None, end: float | None = None, min_samples: int = 1) -> np.ndarray:
    """Decode ``path`` to a mono float32 waveform in [-1, 1] at ``sr`` Hz, shape ``[samples]``.

    Args:
        path: wav/flac (anything libsndfile reads), any sample rate, any number of channels.
        sr: output sample rate in Hz.
        crop_s: keep only the first ``crop_s`` seconds (after ``start``); ``None`` keeps everything.
        start, end: optional segment of the file in seconds.
        min_samples: shortest acceptable output (e.g. one analysis window of the feature set), in samples.

    Raises:
        AudioError: missing or unreadable file, a header beyond the resource limits (sample rate, channels,
            length, or a frame count the file's bytes cannot hold: see the module docstring), a negative or
            non-finite ``start``/``end``, empty audio, NaN/Inf samples, or a clip shorter than
            ``min_samples`` after cropping and resampling.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    _check_segment(path, start, end)
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError for unreadable files
        raise AudioError(f"{path}: unreadable audio ({e})") from e
    check_header(path, info)
    file_sr = int(info.samplerate)
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
