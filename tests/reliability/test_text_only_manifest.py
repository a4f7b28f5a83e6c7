"""A manifest without audio (a transcript table) gives text stores, and is refused for audio features."""

from __future__ import annotations

import pytest

from extract.pipeline import ExtractConfig, extract_all
from ser_common.manifest import ManifestError, ManifestRecord, write_manifest
from ser_common.store import FeatureStore


def _text_only(tmp_path):
    recs = [ManifestRecord(utt_id=f"t{i}", audio=None, corpus="calls", speaker=f"s{i % 3}", session=f"g{i % 3}",
                           label=("happy", "sad")[i % 2], transcript=f"this is sentence number {i}")
            for i in range(6)]
    return write_manifest(recs, tmp_path / "text.jsonl")


def test_text_only_manifest_gives_a_text_store(tmp_path, minilm_dir):
    manifest = _text_only(tmp_path)
    [rep] = extract_all(manifest, [f"bert:{minilm_dir}"], tmp_path / "s",
                        ExtractConfig(workers=0, progress=False, device="cpu"))
    assert rep.n_written == 6
    with FeatureStore(rep.stores[0]) as s:
        assert s.is_text and len(s) == 6 and s.identity.modality == "text"


def test_text_only_manifest_is_refused_for_audio_features(tmp_path):
    manifest = _text_only(tmp_path)
    with pytest.raises(ManifestError, match=r"(?s)6 record\(s\) without audio.*audio feature sets lld need an audio file"):
        extract_all(manifest, ["lld"], tmp_path / "s", ExtractConfig(workers=0, progress=False, device="cpu"))
