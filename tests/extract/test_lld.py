import numpy as np
import pytest

from extract.lld import LLD_NAMES, LLDFeatureSet
from extract.registry import build


def test_34_descriptors_at_40_frames_per_second(tone):
    fs = build("lld")
    assert isinstance(fs, LLDFeatureSet) and fs.dims == 34 == len(LLD_NAMES) and fs.frame_rate_hz == 40.0
    for seconds in (0.05, 1.0, 2.5):
        n = int(seconds * 16_000)
        y = fs.encode([tone(seconds)])[0]
        assert y.shape == ((n - 800) // 400 + 1, 34) == (fs.n_frames(n), fs.dims) and y.dtype == np.float32
        assert np.isfinite(y).all()


def test_matches_pyaudioanalysis_directly(tone):
    from pyAudioAnalysis import ShortTermFeatures

    x = tone(1.0, freq=330)
    ref, names = ShortTermFeatures.feature_extraction(x.astype(np.float64), 16_000, 800, 400, deltas=False)
    assert names[:8] == ["zcr", "energy", "energy_entropy", "spectral_centroid", "spectral_spread",
                         "spectral_entropy", "spectral_flux", "spectral_rolloff"]
    np.testing.assert_allclose(build("lld").encode([x])[0], ref.T.astype(np.float32), rtol=1e-6)


def test_shorter_than_one_window_is_refused(tone):
    with pytest.raises(ValueError, match="shorter than one 50 ms window"):
        build("lld").encode([tone(0.04)])
    assert build("lld").n_frames(799) == 0 and build("lld").n_frames(800) == 1 and build("lld").n_frames(1199) == 1


def test_provenance_records_the_analysis():
    p = build("lld").provenance()
    assert p["window_s"] == 0.05 and p["step_s"] == 0.025 and p["deltas"] is False and len(p["columns"]) == 34


def test_reused_chroma_tables_give_pyaudioanalysis_descriptors_to_the_bit(monkeypatch):
    from pyAudioAnalysis import ShortTermFeatures

    rng = np.random.default_rng(0)
    t = np.arange(int(1.3 * 16_000)) / 16_000
    x = (0.3 * np.sin(2 * np.pi * 220 * t * (1 + t)) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    ours = build("lld").encode([x])[0]
    assert ShortTermFeatures.chroma_features_init.reuses_tables       # memoised in this process now
    monkeypatch.setattr(ShortTermFeatures, "chroma_features_init", ShortTermFeatures.chroma_features_init.original)
    ref, _ = ShortTermFeatures.feature_extraction(x.astype(np.float64), 16_000, 800, 400, deltas=False)
    assert np.array_equal(ours, np.ascontiguousarray(ref.T, dtype=np.float32))
