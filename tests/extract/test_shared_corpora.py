"""ser-extract on real EmoDB and RAVDESS subsets with all four feature sets (CPU; skipped without ../shared)."""

from pathlib import Path

import numpy as np
import pytest

from data_manifests import build_manifest
from extract.config import ExtractConfig
from extract.pipeline import extract_all
from ser_common.manifest import write_manifest
from ser_common.store import FeatureStore

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "wav2vec" / "large.pt"


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("corpus", ["emodb", "ravdess"])
def test_four_feature_sets_on_real_corpus(corpus, shared_dir, whisper_dir, minilm_dir, tmp_path):
    records = build_manifest(corpus, shared_dir / "data" / corpus)
    subset = [next(r for r in records if r.label == c) for c in ("neutral", "happy", "sad", "angry")]
    manifest = write_manifest(subset, tmp_path / f"{corpus}.jsonl")
    specs = ["lld", f"wav2vec:{FIXTURE}", f"bert:{minilm_dir}", f"hf:{whisper_dir}@4"]
    reports = extract_all(manifest, specs, tmp_path / "stores", ExtractConfig(workers=0, progress=False, device="cpu"))
    assert [r.n_written for r in reports] == [4, 4, 4, 4]
    names = {Path(r.stores[0]).stem: r for r in reports}
    assert set(names) == {"lld", "wav2vec", "bert-minilm-l6-v2", "hf-whisper-base-encoder-l4"}
    for name, (dims, rate) in {"lld": (34, 40.0), "wav2vec": (16, 100.0), "bert-minilm-l6-v2": (384, None),
                               "hf-whisper-base-encoder-l4": (512, 50.0)}.items():
        with FeatureStore(tmp_path / "stores" / f"{name}.h5") as s:
            assert len(s) == 4 and s.dims == dims and s.provenance["frame_rate_hz"] == rate
            assert sorted(s.labels) == sorted(["neutral", "happy", "sad", "angry"])
            assert np.isfinite(s.load(np.float32)).all()
            for i in range(4):
                seconds = min(5.0, float(s.durations[i]))
                if rate is None:  # one row per WordPiece token of the transcript
                    assert s.tokens(i) and s.n_frames[i] == len(s.tokens(i))
                else:
                    assert abs(s.n_frames[i] - seconds * rate) <= 20
