import numpy as np
import pytest
import soundfile as sf

from extract.audio import AudioError, load_audio


def test_resamples_and_downmixes_stereo_44k(tmp_path, tone):
    path = tmp_path / "st.wav"
    sf.write(path, tone(1.0, sr=44_100, channels=2), 44_100)
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(x.shape[0] - 16_000) <= 1


def test_crop_reads_first_seconds_only(tmp_path, tone):
    path = tmp_path / "long.flac"
    sig = tone(3.0, sr=48_000)
    sf.write(path, sig, 48_000)
    x = load_audio(path, crop_s=1.25)
    assert abs(x.shape[0] - 20_000) <= 1
    full = load_audio(path)
    assert abs(full.shape[0] - 48_000) <= 1


def test_segment_start_end(tmp_path, tone):
    path = tmp_path / "seg.wav"
    sf.write(path, tone(2.0), 16_000)
    x = load_audio(path, start=0.5, end=1.5)
    assert x.shape[0] == 16_000
    np.testing.assert_allclose(x, sf.read(path, dtype="float32")[0][8000:24000], atol=1e-4)


@pytest.mark.parametrize("case,message", [
    ("missing", "not found"), ("garbage", "unreadable"), ("empty", "empty"), ("nan", "NaN"), ("short", "too short"),
])
def test_bad_audio_names_the_file(tmp_path, tone, case, message):
    path = tmp_path / f"{case}.wav"
    if case == "garbage":
        path.write_bytes(b"RIFF not really a wave file" * 10)
    elif case == "empty":
        sf.write(path, np.zeros(0, np.float32), 16_000)
    elif case == "nan":
        x = tone(0.5)
        x[100] = np.nan
        sf.write(path, x, 16_000, subtype="FLOAT")
    elif case == "short":
        sf.write(path, tone(0.01), 16_000)
    with pytest.raises(AudioError, match=message) as err:
        load_audio(path, min_samples=800)
    assert str(path) in str(err.value)
