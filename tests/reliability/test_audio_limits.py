"""Audio headers beyond the resource limits are refused with AudioError before any sample is decoded: absurd
sample rates, channel counts and lengths, and frame counts the file's bytes cannot hold. Real files written
with soundfile, and WAV headers written byte by byte."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soundfile as sf

from extract import audio
from extract.audio import (MAX_CHANNELS, MAX_DURATION_S, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, AudioError,
                           load_audio)
from extract.pipeline import ExtractConfig, extract_feature
from ser_common.manifest import ManifestRecord, write_manifest
from tests.extract.conftest import write_corpus

FIX = "re-export it from the original (e.g. `ffmpeg -i in.wav -ar 16000 -ac 1 out.flac`)"


def wav_bytes(sr: int = 16_000, channels: int = 1, bits: int = 16, data_len: int | None = None,
              payload: bytes = b"\0" * 64) -> bytes:
    """A RIFF/WAVE PCM file: 'fmt ' chunk, then a 'data' chunk declaring ``data_len`` bytes (default: the
    payload's length) followed by ``payload``."""
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, sr, sr * align, align, bits)
    size = len(payload) if data_len is None else data_len
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + payload
    return b"RIFF" + struct.pack("<I", min(len(body), 0xFFFFFFFF)) + body


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if samples are decoded: the limits must refuse from the header alone."""
    def refuse(*a, **kw):
        raise AssertionError("samples were decoded before the header was checked")

    monkeypatch.setattr(audio.sf, "read", refuse)
    monkeypatch.setattr(audio.soxr, "resample", refuse)


def _refused(path, *fragments: str) -> str:
    with pytest.raises(AudioError) as err:
        load_audio(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: "), msg
    for frag in fragments:
        assert frag in msg, msg
    return msg


def test_limits_are_named_constants():
    assert (MIN_SAMPLE_RATE, MAX_SAMPLE_RATE, MAX_CHANNELS, MAX_DURATION_S) == (1_000, 768_000, 64, 4 * 3600.0)
    for name in ("MIN_SAMPLE_RATE", "MAX_SAMPLE_RATE", "MAX_CHANNELS", "MAX_DURATION_S"):
        assert f":data:`{name}`" in audio.__doc__  # documented in the module docstring


# ---- hand-crafted headers ---------------------------------------------------------------------------------
def test_wav_header_claiming_4_gb_in_a_tiny_file(tmp_path, no_decoding):
    path = tmp_path / "huge-claim.wav"
    path.write_bytes(wav_bytes(data_len=0xFFFFFFF0))
    assert path.stat().st_size < 200
    _refused(path, "WAV header claims 4294967280 bytes of audio (2147483640 frames, 37.28 h at 16000 Hz)",
             "the file holds only 64 bytes after the header", "truncated or its header is corrupt",
             "download it again or " + FIX)


def test_wav_header_claiming_10_mhz(tmp_path, no_decoding):
    path = tmp_path / "rate.wav"
    path.write_bytes(wav_bytes(sr=10_000_000))
    _refused(path, "header claims a sample rate of 10000000 Hz, outside the accepted 1000-768000 Hz",
             "the file is corrupt or not audio: " + FIX)


def test_wav_header_claiming_1_hz(tmp_path, no_decoding):
    path = tmp_path / "one-hz.wav"
    path.write_bytes(wav_bytes(sr=1))
    _refused(path, "sample rate of 1 Hz, outside the accepted 1000-768000 Hz")


def test_wav_header_claiming_200_channels(tmp_path, no_decoding):
    path = tmp_path / "channels.wav"
    path.write_bytes(wav_bytes(channels=200, payload=b"\0" * 800))
    _refused(path, "header claims 200 channels, outside the accepted 1-64", "mix it down first")


def test_crafted_header_within_limits_still_loads(tmp_path):
    path = tmp_path / "fine.wav"
    path.write_bytes(wav_bytes(payload=struct.pack("<32h", *range(0, 3200, 100))))
    x = load_audio(path)
    assert x.shape == (32,) and x.dtype == np.float32


# ---- real files written with soundfile -----------------------------------------------------------------------
@pytest.mark.parametrize("sr,ok", [(500, False), (999, False), (1_000, True), (768_000, True), (800_000, False)])
def test_sample_rate_limits_on_real_files(tmp_path, tone, sr, ok):
    path = tmp_path / f"r{sr}.wav"
    sf.write(path, tone(0.05, sr=sr), sr)
    if ok:
        assert abs(load_audio(path).shape[0] - 800) <= 1  # 50 ms at 16 kHz
    else:
        _refused(path, f"header claims a sample rate of {sr} Hz", FIX)


@pytest.mark.parametrize("channels,ok", [(MAX_CHANNELS, True), (MAX_CHANNELS + 1, False), (100, False)])
def test_channel_limit_on_real_files(tmp_path, tone, channels, ok, request):
    path = tmp_path / f"c{channels}.wav"
    sf.write(path, tone(0.05, channels=channels), 16_000)
    if ok:
        assert load_audio(path).shape == (800,)
    else:
        request.getfixturevalue("no_decoding")
        _refused(path, f"header claims {channels} channels, outside the accepted 1-64")


def test_more_than_4_hours_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "long.flac"
    sr = 1_000  # 4 h 1 min of silence: 14.46 M frames in a few kB of FLAC
    frames = int((MAX_DURATION_S + 60) * sr)
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, format="FLAC") as f:
        block = np.zeros(1 << 20, np.float32)
        for start in range(0, frames, block.size):
            f.write(block[:frames - start])
    assert sf.info(path).frames == frames and path.stat().st_size < 1_000_000
    monkeypatch.setattr(audio.sf, "read", lambda *a, **k: (_ for _ in ()).throw(AssertionError("decoded")))
    _refused(path, f"header claims {frames} frames (4.0 h at 1000 Hz), more than the accepted 4 h",
             "cut the recording into files of at most 4 h")


def test_truncated_real_wav_is_refused(tmp_path, tone, no_decoding):
    path = tmp_path / "cut.wav"
    sf.write(path, tone(1.0), 16_000)  # 32000 bytes of PCM_16
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    _refused(path, "WAV header claims 32000 bytes of audio (16000 frames", "truncated")


def test_negative_or_non_finite_segment_bounds_are_refused(tmp_path, tone):
    path = tmp_path / "seg.wav"
    sf.write(path, tone(1.0), 16_000)
    for kw in ({"start": -0.5}, {"end": float("nan")}, {"end": float("inf")}):
        with pytest.raises(AudioError, match=r"is not a finite, non-negative number of seconds; fix the manifest"):
            load_audio(path, **kw)
    assert load_audio(path, start=np.float32(0.25), end=0.75).shape == (8000,)


def test_pipeline_skips_and_reports_refused_files(tmp_path, tone):
    manifest = write_corpus(tmp_path / "c", n=3)
    bad = {"claim": tmp_path / "claim.wav", "rate": tmp_path / "rate.wav"}
    bad["claim"].write_bytes(wav_bytes(data_len=0xFFFFFFF0))
    bad["rate"].write_bytes(wav_bytes(sr=10_000_000))
    from ser_common.manifest import read_manifest

    recs = read_manifest(manifest) + [ManifestRecord(utt_id=k, audio=str(v), corpus="test", speaker="s9",
                                                     session="g1", label="sad") for k, v in bad.items()]
    rep = extract_feature(write_manifest(recs, tmp_path / "m.jsonl"), "lld", tmp_path / "s",
                          ExtractConfig(workers=0, progress=False, device="cpu"))
    assert rep.n_written == 3 and set(rep.skipped) == {"claim", "rate"}
    assert "claim.wav" in rep.skipped["claim"] and "truncated or its header is corrupt" in rep.skipped["claim"]
    assert "rate.wav" in rep.skipped["rate"] and "10000000 Hz" in rep.skipped["rate"]


def test_uncompressed_frame_count_must_fit_the_file_bytes(tmp_path):
    """Where soundfile reports a frame count for an uncompressed format, frames x bytes/frame must fit."""
    from types import SimpleNamespace

    path = tmp_path / "tiny.aiff"
    path.write_bytes(b"\0" * 100)
    info = SimpleNamespace(samplerate=16_000, channels=2, frames=1_000, format="AIFF", subtype="PCM_24")
    with pytest.raises(AudioError) as err:
        audio.check_header(path, info)
    assert str(err.value) == (f"{path}: header claims 1000 frames of 2 x PCM_24 (6000 bytes) but the file has only "
                              f"100 bytes; the file is truncated or its header is corrupt: download it again or {FIX}")
    audio.check_header(path, SimpleNamespace(**{**vars(info), "frames": 16}))  # 96 bytes fit
    audio.check_header(path, SimpleNamespace(**{**vars(info), "format": "FLAC"}))  # compressed: not compared
