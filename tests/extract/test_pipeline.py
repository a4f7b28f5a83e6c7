import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from extract.cli import main as cli
from extract.batching import length_batches
from extract.config import ExtractConfig
from extract.pipeline import ExtractionError, extract_all, extract_feature
from ser_common.manifest import ManifestRecord, read_manifest, write_manifest
from ser_common.store import FeatureStore, StoreError, partial_path
from tests.extract.conftest import run_until_commits, slow_extraction_script, write_corpus



def _cfg(**kw):
    return ExtractConfig(workers=0, progress=False, device="cpu", **kw)


def _store_dict(path):
    """utt_id -> (frames, label, speaker, session, duration, manifest_index) of a store."""
    with FeatureStore(path) as s:
        return {u: (s.frames(i).copy(), s.labels[i], s.speakers[i], s.sessions[i], float(s.durations[i]),
                    int(s.manifest_index[i])) for i, u in enumerate(s.utt_ids)}, s.provenance


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for u in a:
        np.testing.assert_array_equal(a[u][0], b[u][0])
        assert a[u][1:] == b[u][1:]


def test_lld_store_from_manifest(corpus, tmp_path):
    [rep] = extract_all(corpus, ["lld"], tmp_path / "stores", _cfg())
    assert rep.status == "done" and rep.n_written == 12 and rep.n_skipped == 0
    records = read_manifest(corpus)
    with FeatureStore(tmp_path / "stores" / "lld.h5") as s:
        assert len(s) == 12 and s.dims == 34 and s.provenance["dtype"] == "float16"
        prov = s.provenance
        assert prov["crop_s"] == 5.0 and prov["frame_rate_hz"] == 40.0 and prov["manifest_sha256"]
        assert "numpy" in prov["package_versions"]
        for i, u in enumerate(s.utt_ids):
            rec = records[int(s.manifest_index[i])]
            assert rec.utt_id == u and s.labels[i] == rec.label and s.sessions[i] == rec.session
            assert s.n_frames[i] == (round(rec.duration * 16000) - 800) // 400 + 1
    # idempotent: a complete store is not recomputed
    [again] = extract_all(corpus, ["lld"], tmp_path / "stores", _cfg())
    assert again.status == "up to date"


def test_worker_processes_equal_in_process(corpus, tmp_path):
    extract_feature(corpus, "lld", tmp_path / "a", _cfg())
    extract_feature(corpus, "lld", tmp_path / "b", ExtractConfig(workers=2, progress=False, device="cpu"))
    _assert_same(_store_dict(tmp_path / "a" / "lld.h5")[0], _store_dict(tmp_path / "b" / "lld.h5")[0])


def test_crop_is_applied_and_recorded(tmp_path):
    manifest = write_corpus(tmp_path, n=3, seconds=(2.0, 2.5))
    extract_feature(manifest, "lld", tmp_path / "s", _cfg(crop_s=1.0))
    with FeatureStore(tmp_path / "s" / "lld.h5") as s:
        assert set(s.n_frames.tolist()) == {(16000 - 800) // 400 + 1}
        assert s.provenance["crop_s"] == 1.0


def _bad_corpus(tmp_path, tone):
    manifest = write_corpus(tmp_path, n=6)
    records = read_manifest(manifest)
    bad = {}
    p = tmp_path / "audio" / "short.wav"
    sf.write(p, tone(0.02), 16_000)
    bad["short"] = p
    p = tmp_path / "audio" / "garbage.wav"
    p.write_bytes(b"not audio at all" * 50)
    bad["garbage"] = p
    p = tmp_path / "audio" / "nan.wav"
    x = tone(0.5)
    x[10] = np.nan
    sf.write(p, x, 16_000, subtype="FLOAT")
    bad["nan"] = p
    p = tmp_path / "audio" / "stereo48k.wav"
    sf.write(p, tone(1.0, sr=48_000, channels=2), 48_000)
    extra = [ManifestRecord(utt_id=k, audio=str(v), corpus="test", speaker="s9", session="g1", label="sad")
             for k, v in bad.items()]
    extra.append(ManifestRecord(utt_id="stereo48k", audio=str(p), corpus="test", speaker="s9", session="g1",
                                label="sad", duration=1.0))
    return write_manifest(records + extra, tmp_path / "bad.jsonl")


def test_bad_audio_is_skipped_and_reported(tmp_path, tone):
    manifest = _bad_corpus(tmp_path, tone)
    rep = extract_feature(manifest, "lld", tmp_path / "s", _cfg())
    assert rep.n_written == 7 and set(rep.skipped) == {"short", "garbage", "nan"}
    assert "too short" in rep.skipped["short"] and "short.wav" in rep.skipped["short"]
    assert "NaN" in rep.skipped["nan"] and "unreadable" in rep.skipped["garbage"]
    with FeatureStore(tmp_path / "s" / "lld.h5") as s:
        assert "stereo48k" in s.utt_ids and set(s.skipped) == {"short", "garbage", "nan"}
        assert s.n_frames[s.index("stereo48k")] == (16000 - 800) // 400 + 1


def test_fail_mode_stops_without_half_writes_and_resumes(tmp_path, tone):
    manifest = _bad_corpus(tmp_path, tone)
    out = tmp_path / "s"
    with pytest.raises(ExtractionError, match=r"(short|garbage|nan)\.wav"):
        extract_feature(manifest, "lld", out, _cfg(on_error="fail"))
    assert not (out / "lld.h5").exists() and partial_path(out / "lld.h5").exists()
    with FeatureStore(partial_path(out / "lld.h5"), allow_partial=True) as s:
        before = len(s)
    rep = extract_feature(manifest, "lld", out, _cfg(on_error="skip"))
    assert before + rep.n_written == 7 and rep.n_skipped == 3
    ref, _ = _store_dict(out / "lld.h5")
    extract_feature(manifest, "lld", tmp_path / "fresh", _cfg())
    _assert_same(ref, _store_dict(tmp_path / "fresh" / "lld.h5")[0])


def test_resume_after_sigkill_equals_uninterrupted(tmp_path):
    manifest = write_corpus(tmp_path, n=30, seconds=(0.5, 0.8))
    out = tmp_path / "killed"
    proc = run_until_commits(slow_extraction_script(manifest, out), 2)
    proc.kill()
    proc.wait(timeout=30)
    assert proc.returncode != 0
    partial = partial_path(out / "lld.h5")
    assert partial.exists() and not (out / "lld.h5").exists()
    with pytest.raises(StoreError, match="incomplete"):
        FeatureStore(partial)
    with FeatureStore(partial, allow_partial=True) as s:
        assert 0 < len(s) < 30
        done_before = len(s)
    rep = extract_feature(manifest, "lld", out, _cfg())
    assert rep.n_written == 30 - done_before
    extract_feature(manifest, "lld", tmp_path / "fresh", _cfg())
    _assert_same(_store_dict(out / "lld.h5")[0], _store_dict(tmp_path / "fresh" / "lld.h5")[0])


def test_resume_refuses_different_settings(corpus, tmp_path):
    out = tmp_path / "s"

    class Boom(KeyboardInterrupt):  # an interrupt, not a per-utterance error
        pass

    import extract.lld as lld
    calls = {"n": 0}
    orig = lld.LLDFeatureSet.encode

    def flaky(self, waves):
        calls["n"] += 1
        if calls["n"] > 3:
            raise Boom()
        return orig(self, waves)

    lld.LLDFeatureSet.encode = flaky
    try:
        with pytest.raises(Boom):
            extract_feature(corpus, "lld", out, _cfg())
    finally:
        lld.LLDFeatureSet.encode = orig
    with pytest.raises(StoreError, match="cannot resume.*crop_s"):
        extract_feature(corpus, "lld", out, _cfg(crop_s=2.0))
    assert extract_feature(corpus, "lld", out, _cfg()).n_written == 12 - 3


def test_three_shards_merged_equal_single_process(tmp_path):
    manifest = write_corpus(tmp_path, n=14)
    assert extract_feature(manifest, "lld", tmp_path / "single", _cfg()).n_written == 14
    shard_dir = tmp_path / "shards"
    for i in range(3):
        rep = extract_feature(manifest, "lld", shard_dir, _cfg(shard=(i, 3)))
        assert rep.n_written == len(range(i, 14, 3))
    res = CliRunner().invoke(cli, ["merge", str(shard_dir)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in shard_dir.glob("*.h5")) == ["lld.h5"]
    a, prov_a = _store_dict(tmp_path / "single" / "lld.h5")
    b, prov_b = _store_dict(shard_dir / "lld.h5")
    _assert_same(a, b)
    ignore = {"shard", "merged_from", "package_versions"}
    assert {k: v for k, v in prov_a.items() if k not in ignore} == {k: v for k, v in prov_b.items() if k not in ignore}
    with FeatureStore(shard_dir / "lld.h5") as s:  # merged in manifest order
        assert list(s.manifest_index) == list(range(14))


def test_list_names_every_builtin_prefix():
    res = CliRunner().invoke(cli, ["list"])
    assert res.exit_code == 0, res.output
    assert [line.split()[0] for line in res.output.splitlines()] == ["bert", "hf", "lld", "wav2vec"]
    assert "34 pyAudioAnalysis" in res.output and "checkpoint path or URL" in res.output


def test_merge_refuses_missing_shard(tmp_path):
    manifest = write_corpus(tmp_path, n=6)
    extract_feature(manifest, "lld", tmp_path / "sh", _cfg(shard=(0, 2)))
    res = CliRunner().invoke(cli, ["merge", str(tmp_path / "sh")])
    assert res.exit_code != 0 and "misses shard(s) [1] of 2" in res.output


def test_cli_default_command_and_report(corpus, tmp_path):
    out = tmp_path / "stores"
    res = CliRunner().invoke(cli, ["--manifest", str(corpus), "--feature", "lld", "--out", str(out),
                                   "--workers", "0", "--crop", "1.0", "-q"])
    assert res.exit_code == 0, res.output
    assert "lld" in res.output and "done" in res.output
    log = [json.loads(line) for line in (out / "extract_log.jsonl").read_text().splitlines()]
    assert log[-1]["n_written"] == 12
    res = CliRunner().invoke(cli, ["info", str(out)])
    assert "12 utterances" in res.output and "crop_s" in res.output
    res = CliRunner().invoke(cli, ["--manifest", str(corpus), "--feature", "nope", "--out", str(out)])
    assert res.exit_code != 0 and "unknown feature spec" in res.output


def test_cli_rejects_bad_manifest(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text('{"utt_id": "a", "audio": "/nonexistent.wav", "corpus": "test", "speaker": "s", "session": "g"}\n')
    res = CliRunner().invoke(cli, ["--manifest", str(m), "--feature", "lld", "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "missing audio" in res.output and "/nonexistent.wav" in res.output


def test_length_batches_respect_budget():
    lengths = {i: float(100 + 10 * i) for i in range(50)}
    batches = length_batches(list(range(50)), lengths, budget=2000)
    assert sorted(p for b in batches for p in b) == list(range(50))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[p] for p in b) <= 2000


def test_workers_auto_is_the_default_and_nonsense_is_refused(corpus, tmp_path):
    from ser_common.cpus import auto_workers

    assert ExtractConfig().workers == auto_workers()
    out = tmp_path / "stores"
    r = CliRunner().invoke(cli, ["--manifest", str(corpus), "--feature", "lld", "--out", str(out), "--workers", "two"])
    assert r.exit_code == 2 and "must be 'auto' or an integer >= 0, got 'two'" in r.output
    assert not out.exists()
